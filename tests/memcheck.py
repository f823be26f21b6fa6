"""The CPU kernels on the inputs of the out-of-bounds class of bugs, for valgrind (run.sh: memcheck).

Not a pytest file (no ``test_`` prefix): ``tests/run.sh``'s ``memcheck`` stage runs it under
``valgrind --tool=memcheck`` and fails on an invalid read or write, or a jump on uninitialised
memory, whose stack holds a frame of fusedgan's extension (``fusedgan/_C*.so``).  The inputs are
those of issue 17's chunk-walk read past the chunk table: every loss term empty, empty and
non-empty scales mixed, sizes around the SIMD widths and the chunk size (csrc/cpu/loss_terms_cpu.h:
``kChunk``), with every element function, reduction, dtype, label and weight operand, the
statistics, the backward, the relativistic op, the penalties and LeCam.  Two threads: the parallel
chunk walk.  Natively about 4 s (2033 kernel calls); under valgrind about 3.5 min.

    python tests/memcheck.py           # runs everything once, natively, prints a count
    python tests/memcheck.py --valgrind  # the same under valgrind; exit 1 on an error in our frames

Under ``--valgrind`` the run writes valgrind's XML log and only errors that happen in
``fusedgan/_C*.so`` (the innermost frame outside libc and valgrind's own replacements) count (every kind but leaks: InvalidRead/Write, UninitCondition/Value, ...):
errors of python, torch or OpenMP alone are counted and listed in one line but neither fail the
stage nor hide ours.  Valgrind hides AVX-512 from the program, so the kernels run their AVX2 code
(``FUSEDGAN_CPU_CAPABILITY=default`` for the scalar code).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's
import fusedgan as fg  # noqa: E402
from fusedgan.codes import Elem, Reduction  # noqa: E402

CHUNK = 16384  # csrc/cpu/loss_terms_cpu.h kChunk
SIZES = (0, 1, 7, 15, 17, 63, 65, CHUNK - 1, CHUNK, CHUNK + 1)
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")
OP = torch.ops.fusedgan


def _x(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed + n)
    return (torch.randn(n, generator=g, dtype=torch.float64) * 3).to(dtype)


def raw_ops(count):
    """Every Elem through loss_terms, loss_terms_stats and loss_grads, one term per size at once."""
    for dtype in DTYPES:
        for elem in Elem:
            xs = [_x(n, dtype, int(elem)) for n in SIZES]
            k = len(xs)
            for red in Reduction:
                # No label or weight tensor (label_values), every size in one call; then tensor labels
                # in fp32 (wider than bf16/fp16 logits) and weights, two sizes a call: with more than
                # 8 tensors in all the op fails (a reference into a growing SmallVector, left alone).
                count += _raw_call(xs, [None] * k, [None] * k, elem, red)
                for j in (0, SIZES.index(17), SIZES.index(CHUNK)):
                    pair = xs[j:j + 2]
                    labels = [torch.rand(pair[0].shape, dtype=torch.float32), torch.tensor([0.7])]
                    count += _raw_call(pair, labels, [torch.rand(x.shape, dtype=dtype) for x in pair], elem, red)
            empty = [x[:0] for x in xs[:3]]
            for red in Reduction:
                OP.loss_terms_stats(empty, [None] * 3, [None] * 3, [int(elem)] * 3, [1.0] * 3, [1.0] * 3,
                                    int(red), [True] * 3)
                count += 1
    return count


def _raw_call(xs, labels, weights, elem, red):
    k = len(xs)
    args = (xs, labels, weights, [int(elem)] * k, [0.9] * k, [1.0] * k, int(red))
    OP.loss_terms(*args, [True] * k)
    OP.loss_terms_stats(*args, [i % 2 == 0 for i in range(k)])
    gos = [torch.randn(x.shape if red == Reduction.NONE else (), dtype=x.dtype) for x in xs]
    OP.loss_grads(*args, gos)
    return 3


def public_losses(count):
    """The public losses on empty, odd and chunk-edge logits, forward and backward."""
    count += _empty_cases()
    for kind in fg.KINDS:
        for dtype in (torch.float32, torch.bfloat16):  # the raw ops above take every dtype
            for red in REDUCTIONS:
                for n in (0, 1, 7, 65, CHUNK + 1):
                    r = _x(n, dtype, 1).requires_grad_(True)
                    f = _x(n, dtype, 2).requires_grad_(True)
                    stats = red != "none"  # statistics need a reduction
                    d = fg.discriminator_loss(r, f, kind, reduction=red, return_stats=stats, backend="cpu")
                    g = fg.generator_loss(f, kind, reduction=red, backend="cpu")
                    _backward(d.loss if stats else d, g)
                    count += 2
    return count


def _backward(*outs):
    """Backward through every tensor of ``outs`` (a loss, a pair of per-element losses)."""
    flat = []
    for o in outs:
        flat.extend(o if isinstance(o, (list, tuple)) else [o])
    total = sum(t.float().sum() for t in flat if t.requires_grad)
    if torch.is_tensor(total):
        total.backward()


def _empty_cases():
    e = torch.empty(0)
    fg.generator_loss(e, backend="cpu")
    fg.discriminator_loss(e, e, backend="cpu")
    fg.discriminator_loss(e, e, return_stats=True, backend="cpu")
    six = [torch.empty(0) for _ in range(6)]
    fg.discriminator_loss(six, six, "hinge", backend="cpu")
    fg.generator_loss(six, "hinge", backend="cpu")
    mixed_r = [torch.empty(0), torch.randn(7), torch.empty(0, 3), torch.randn(CHUNK + 1)]
    mixed_f = [torch.randn(17), torch.empty(0), torch.randn(2, 3), torch.empty(0)]
    for red in ("mean", "sum"):  # lists of scales take no "none"
        fg.discriminator_loss(mixed_r, mixed_f, "ns", reduction=red, return_per_scale=True, backend="cpu")
        fg.generator_loss(mixed_f, "ls", reduction=red, return_per_scale=True, backend="cpu")
    return 9 + 4


def labels_and_weights(count):
    """Tensor labels and weights, fp32 beside bf16/fp16 logits, forward and backward."""
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for n in (0, 1, 17, CHUNK + 1):
            r = _x(n, dtype, 3).requires_grad_(True)
            f = _x(n, dtype, 4).requires_grad_(True)
            lab = torch.full((n,), 0.9, dtype=torch.float32)
            w = torch.rand(n, dtype=torch.float32)
            for kind in ("ns", "ls"):
                d = fg.discriminator_loss(r, f, kind, real_label=lab, fake_label=torch.tensor(0.1),
                                          real_weight=w, fake_weight=w.to(dtype), backend="cpu")
                g = fg.generator_loss(f, kind, target=lab, weight=w, backend="cpu")
                (d + g).backward()
                count += 2
    return count


def relativistic(count):
    for kind in fg.kinds.RELATIVISTIC:
        for dtype in DTYPES:
            for red in ("mean", "sum"):
                for n in (0, 1, 7, 65, CHUNK + 1):
                    r = _x(n, dtype, 5).requires_grad_(True)
                    f = _x(n, dtype, 6).requires_grad_(True)
                    d = fg.discriminator_loss(r, f, kind, reduction=red, backend="cpu")
                    g = fg.generator_loss(f, kind, real=r, reduction=red, backend="cpu")
                    (d + g).backward()
                    count += 2
    return count


def penalties(count):
    for dtype in DTYPES:
        for shape in ((0, 3), (1, 1), (7, 15), (3, 2, 7, 9), (2, CHUNK + 1), (0, 2, 3, 3)):
            g = torch.randn(shape, dtype=torch.float64).to(dtype).requires_grad_(True)
            for norm in ("sample", "channel"):
                for red in REDUCTIONS:
                    try:
                        p = fg.gradient_penalty(g, norm=norm, reduction=red, backend="cpu")
                    except (ValueError, RuntimeError):
                        continue  # a norm the shape does not have (channel of a 2-D batch)
                    if p.numel():
                        p.sum().backward()
                    count += 1
            fg.r1_penalty(g, 10.0, backend="cpu").backward()
            count += 1
    return count


def lecam(count):
    for dtype in (torch.float32, torch.bfloat16):
        reg = fg.LeCamRegularizer(decay=0.9)
        for n in (1, 7, 0, 65, CHUNK + 1):
            r = _x(n, dtype, 7).requires_grad_(True)
            f = _x(n, dtype, 8).requires_grad_(True)
            if n == 0:
                try:
                    reg(r, f, backend="cpu")
                except ValueError:  # empty logits are refused before any kernel
                    continue
            out = reg(r, f, backend="cpu")
            if out.requires_grad:
                out.backward()
            count += 1
    return count


OURS = re.compile(r"(^|/)fusedgan/_C[^/]*\.so$")
VALGRIND_ERROR_EXIT = 99


def _frames(err):
    for fr in err.iter("frame"):
        yield {k: (fr.findtext(k) or "") for k in ("obj", "fn", "file", "line")}


def _what(err):
    return err.findtext("what") or err.findtext("xwhat/text") or err.findtext("kind")


# Valgrind's replacements and libc: a frame there is one of its caller's (memcpy, strlen, ...).
PASS_THROUGH = re.compile(r"(^|/)(vgpreload_[^/]*|libc\.so[^/]*|libc-[^/]*|ld-linux[^/]*)$")


def _ours(err) -> bool:
    """Whether the error happened in our code: its innermost frame outside libc and valgrind's
    replacements is in fusedgan/_C*.so.  An error inside torch (or libgomp) counts as theirs
    even when our op called it: torch's own uninitialised-value jumps in at::empty or at::to
    would otherwise fail us."""
    for f in _frames(err):
        if not PASS_THROUGH.search(f["obj"]):
            return bool(OURS.search(f["obj"]))
    return False


def _format(err) -> str:
    lines = [f"  {err.findtext('kind')}: {_what(err)}"]
    for f in _frames(err):
        where = f"{f['file']}:{f['line']}" if f["file"] else f["obj"]
        lines.append(f"    {'>>' if OURS.search(f['obj']) else '  '} {f['fn'] or '???'}  ({where})")
    return "\n".join(lines[:40])


def report(xml_path: str) -> int:
    """Print the errors in our frames and count the rest; the number of ours."""
    errors = [e for e in ET.parse(xml_path).getroot().iter("error")
              if not (e.findtext("kind") or "").startswith("Leak_")]
    ours = [e for e in errors if _ours(e)]
    others = {}
    for e in errors:
        if not _ours(e):
            others[e.findtext("kind")] = others.get(e.findtext("kind"), 0) + 1
    print(f"memcheck: {len(ours)} error(s) in fusedgan/_C*.so frames; outside them (python, torch, "
          f"OpenMP; ignored): {others or 'none'}")
    for e in ours:
        print(_format(e))
    return len(ours)


def under_valgrind() -> int:
    """This script under valgrind's memcheck; 0 when no error has a frame of our extension."""
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        xml_path = os.path.join(tmp, "memcheck.xml")
        cmd = ["valgrind", "--tool=memcheck", "--track-origins=no", "--error-limit=no",
               f"--error-exitcode={VALGRIND_ERROR_EXIT}", "--xml=yes", f"--xml-file={xml_path}",
               sys.executable, os.path.abspath(__file__)]
        env = dict(os.environ, PYTHONMALLOC="malloc", FUSEDGAN_BACKEND="", FUSEDGAN_NO_TRITON="1")
        rc = subprocess.call(cmd, env=env)
        print(f"memcheck: valgrind exit {rc} after {time.time() - t0:.0f}s")
        if not os.path.exists(xml_path):
            print("memcheck FAILED: valgrind wrote no log")
            return 1
        ours = report(xml_path)
    if rc not in (0, VALGRIND_ERROR_EXIT):
        print("memcheck FAILED: the script itself failed under valgrind")
        return 1
    return 1 if ours else 0


def main() -> int:
    if sys.argv[1:] == ["--valgrind"]:
        return under_valgrind()
    torch.set_num_threads(2)
    count = 0
    for part in (raw_ops, public_losses, labels_and_weights, relativistic, penalties, lecam):
        count = part(count)
    print(f"memcheck script: {count} kernel calls ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
