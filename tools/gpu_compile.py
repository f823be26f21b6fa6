"""Compile every Triton kernel variant fusedgan launches, ahead of time for sm_90 (no GPU needed).

    python tools/gpu_compile.py [--jobs N] [--json OUT] [--limit K]

1. **Record** (a subprocess with ``TRITON_INTERPRET=1``): run the library's Triton launchers on
   small CPU tensors (every dtype, element function, statistics switch, operand mode, size class
   and penalty layout the public API reaches; the size thresholds of fusedgan/triton/__init__.py
   are lowered so that the large-block path runs on small inputs, the block sizes themselves are
   the library's) and record each launch: kernel, argument types, constexprs, ``num_warps``.
2. **Specialise** each launch as Triton would on an sm_90 GPU (Triton's own binder, with
   ``MockTensor`` pointers: 16-byte aligned like CUDA allocations), keep the distinct ones.
3. **Compile** each for ``GPUTarget("cuda", 90, 32)`` and read the cubin's resource usage
   (``cuobjdump --dump-resource-usage``): registers, local memory (spills), shared memory; print
   the table with an occupancy bound (blocks per SM from registers, shared memory and threads).

It fails (exit 1) on

* any local memory (a register spill or a stack frame),
* registers above the kernel's budget (``BUDGETS`` below),
* a kernel parameter whose annotation Triton specialises as anything but the annotated type (the
  quoted ``"fp64"`` under ``from __future__ import annotations`` that becomes ``fp32``),
* any ``ex2.approx`` / ``lg2.approx`` in the PTX (``tl.exp`` / ``tl.log`` on float32: 1e-6
  relative error; the kernels use fusedgan/triton/fastmath.py).

Table columns: registers per thread, the budget, spilled bytes (local + stack), shared memory
(bytes), warps, the occupancy bound, ``apx`` (approximate exp2 / log2 instructions).

Budgets (registers per thread).  An H100/H200 SM has 65,536 registers and 2,048 threads: at most
32 registers per thread for 100% occupancy, 64 for 50%.  The memory-bound kernels that run with a
grid over the data (the loss kernel's multi-program path, ``loss_grads``, the penalty's first
stage and ``scale_mul``) get 64: at least 50% occupancy.  The one-program kernels (the loss
kernel's ``SINGLE`` path for launch-bound sizes, the finishing reductions) run one block on one SM,
so occupancy means nothing for them; their budget is 128 (no spills is what matters, and more
than 128 would halve the block's latency hiding).  See ``budget()``.

Variants are distinct kernels, pointer / float types, launcher constexprs and launch options;
integer arguments that Triton specialises by value (== 1, divisible by 16) are not told apart.
Measured with Triton 3.8 (250 variants from 1,276 recorded launches, under a minute with a warm
Triton cache): grid kernels 10-63 registers (loss kernel <= 63, >= 50% occupancy), one-program
kernels <= 95, no spills, no approximate exp / log.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ARCH = 90
GRID_BUDGET = 64  # memory-bound kernels with a grid over the data: >= 50% occupancy
ONE_PROGRAM_BUDGET = 128  # one-program kernels: only spill-freedom matters
SM_REGS, SM_THREADS, SM_BLOCKS, SM_SMEM = 65536, 2048, 32, 228 * 1024
SMEM_PER_BLOCK_RESERVED = 1024

MODULES = ("fusedgan.triton.kernels", "fusedgan.triton.penalty")


def budget(name: str, constexprs: Dict[str, Any]) -> int:
    """The register budget of one kernel variant (see the module docstring)."""
    if name == "_loss_kernel" and constexprs.get("SINGLE"):
        return ONE_PROGRAM_BUDGET
    if name in ("_finish_kernel", "_combine_kernel", "_penalty_finish_kernel"):
        return ONE_PROGRAM_BUDGET
    return GRID_BUDGET


# ---------------------------------------------------------------------------------------------
# Recording (under TRITON_INTERPRET=1).


def _desc(v):
    import torch

    if isinstance(v, torch.Tensor):
        return {"tensor": str(v.dtype).removeprefix("torch.")}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot record kernel argument of type {type(v)}")


class Recorder:
    """Records every interpreted Triton launch while active (a context manager)."""

    def __init__(self):
        self.launches: List[dict] = []

    def __enter__(self):
        from triton.runtime.interpreter import InterpretedFunction

        self._cls = InterpretedFunction
        self._orig = InterpretedFunction.run
        rec = self

        def run(fn_self, *args, grid, warmup, **kwargs):
            fn = fn_self.fn
            rec.launches.append({"module": fn.__module__, "name": fn.__name__,
                                 "args": [_desc(a) for a in args],
                                 "kwargs": {k: _desc(v) for k, v in kwargs.items()}})
            return rec._orig(fn_self, *args, grid=grid, warmup=warmup, **kwargs)

        InterpretedFunction.run = run
        return self

    def __exit__(self, *exc):
        self._cls.run = self._orig
        return False


def workload(quick: bool = False) -> None:
    """Every kind of call the library makes on the Triton backend, on small CPU tensors."""
    import fusedgan as fg
    import fusedgan.triton as ft

    large_from = ft.LARGE_FROM
    ft.LARGE_FROM = 8192  # the large block config on 10,000 elements (same blocks, lower threshold)
    try:
        _workload(fg, quick)
    finally:
        ft.LARGE_FROM = large_from


def _workload(fg, quick: bool) -> None:
    import torch

    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    sizes = [(64, 48), (2500, 2100), (5000, 5000)]  # single program, medium block, large block
    if quick:
        dtypes, sizes = dtypes[:2], sizes[:2]
    gen = torch.Generator().manual_seed(0)

    def rnd(n, dt, grad=True):
        return (torch.randn(n, generator=gen, dtype=torch.float64) * 3).to(dt).requires_grad_(grad)

    T = "triton"
    for dt in dtypes:
        for na, nb in sizes:
            for kind in ("ns", "ls", "wgan", "hinge"):
                for stats in (False, True):
                    r, f = rnd(na, dt), rnd(nb, dt)
                    out = fg.discriminator_loss(r, f, kind, backend=T, return_stats=stats)
                    (out.loss if stats else out).backward()
                    g = fg.generator_loss(rnd(nb, dt), kind, backend=T)
                    g.backward()
                # rsgan: the SOFTPLUS_NEG element on the pairwise logit (equal shapes)
                fg.discriminator_loss(rnd(nb, dt), rnd(nb, dt), "rsgan", backend=T).backward()
                # per-element label and weight tensors: in the logits' dtype, and in float32 beside
                # half logits (read in their own precision: float32 pointers)
                for odt in dict.fromkeys((dt, torch.float64 if dt == torch.float64 else torch.float32)):
                    r, f = rnd(na, dt), rnd(nb, dt)
                    w = torch.rand(na, generator=gen, dtype=torch.float64).to(odt)
                    v = fg.discriminator_loss(r, f, kind="ns", reduction="none", real_weight=w,
                                              real_label=torch.full((na,), 0.9, dtype=odt), backend=T)
                    torch.autograd.grad([v[0].sum(), v[1].sum()] if isinstance(v, (tuple, list)) else v.sum(),
                                        [r, f], allow_unused=True)
            fm = fg.feature_matching_loss([rnd(300, dt)], [rnd(300, dt, False)], backend=T)
            fm.backward()
            rel = fg.discriminator_loss(rnd(600, dt), rnd(600, dt), "ragan", backend=T)
            rel.backward()
            # LeCam: SQ_RELU_ABOVE / SQ_RELU_BELOW with one-element label tensors, with the sums
            # (training) and without (eval)
            reg = fg.LeCamRegularizer()
            for training in (True, False):
                reg.train(training)
                reg(rnd(na, dt), rnd(nb, dt), backend=T).backward()
            # penalties: sample / pixel / batch norms, one and several chunks, and R1
            for shape in [(3, 5, 7, 9), (2, 3, 100, 100)] if not quick else [(3, 5, 7, 9)]:
                for norm in ("sample", "pixel", "batch"):
                    for red in ("mean", "none"):
                        g = rnd(shape[0] * shape[1] * shape[2] * shape[3], dt).detach().reshape(shape)
                        g.requires_grad_(True)
                        p = fg.penalties.gradient_penalty(g, norm=norm, reduction=red, one_sided=red == "none",
                                                          backend=T)
                        p.sum().backward()
                g = rnd(shape[0] * shape[1] * shape[2] * shape[3], dt).detach().reshape(shape).requires_grad_(True)
                fg.penalties.r1_penalty(g, 10.0, backend=T).backward()


def record(quick: bool = False) -> List[dict]:
    """Run ``workload`` under the interpreter (this process must have TRITON_INTERPRET=1)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("record() needs TRITON_INTERPRET=1 set before triton is imported")
    with Recorder() as rec:
        workload(quick)
    return rec.launches


def record_subprocess(quick: bool = False) -> List[dict]:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "launches.json")
        env = dict(os.environ, TRITON_INTERPRET="1")
        cmd = [sys.executable, os.path.abspath(__file__), "--record", out] + (["--quick"] if quick else [])
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        with open(out) as f:
            return json.load(f)


# ---------------------------------------------------------------------------------------------
# Specialisation and compilation (no interpreter: real JITFunctions).


def target():
    from triton.backends.compiler import GPUTarget

    return GPUTarget("cuda", ARCH, 32)


def _jit(fn):
    """The JITFunction of a kernel (under the interpreter, a JITFunction of its Python function:
    enough for the signature, not for compiling)."""
    from triton.runtime.jit import JITFunction

    return fn if isinstance(fn, JITFunction) else JITFunction(getattr(fn, "fn", fn))


def _arg(v):
    import torch
    from triton.runtime.jit import MockTensor

    if isinstance(v, dict) and "tensor" in v:
        return MockTensor(getattr(torch, v["tensor"]))
    return v


def specialise(fn, args, kwargs):
    """(signature, constexprs, attrs, options) of launching ``fn`` with these (recorded) arguments
    on an sm_90 GPU, by Triton's own binder."""
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    jit = _jit(fn)
    backend = make_backend(target())
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    bound, spec, opts = binder(*[_arg(a) for a in args], **{k: _arg(v) for k, v in kwargs.items()})
    options, signature, constexprs, attrs = jit._pack_args(backend, opts, bound, spec, backend.parse_options(opts))
    return signature, constexprs, attrs, options


def declared_type(param) -> Optional[str]:
    """The type a non-constexpr parameter is annotated with, normalised as Triton writes it
    (``fp64``), quotes of a stringified annotation removed; None when not annotated."""
    from triton.runtime.jit import _normalize_ty

    a = param._param.annotation
    if a is param._param.empty or not a:
        return None
    if isinstance(a, str):
        a = a.strip().strip("'\"")
    ty = _normalize_ty(a)
    if "constexpr" in ty:
        return None
    return ty


def annotation_problems(fn, signature: Dict[str, str]) -> List[str]:
    """Parameters annotated with a type that ``signature`` (a launch's specialisation) does not have."""
    bad = []
    for p in _jit(fn).params:
        want = declared_type(p)
        if want is not None and signature.get(p.name) != want:
            bad.append(f"{p.name}: annotated {want}, specialised {signature.get(p.name)}")
    return bad


def _key(rec, signature, constexprs, options) -> str:
    """A variant: the kernel, its pointer and float types, the constexprs the launcher passes and the
    launch options.  Integer arguments that Triton specialises by value (== 1, divisible by 16)
    do not make a new variant: they change addressing, not the register footprint."""
    types = {k: v for k, v in signature.items() if v != "constexpr" and not v.startswith("i")}
    ce = {k: v for k, v in rec["kwargs"].items()}
    return json.dumps([rec["module"], rec["name"], types, ce, options.num_warps, options.num_stages],
                      sort_keys=True, default=str)


def _cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def resource_usage(cubin: bytes) -> Dict[str, int]:
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "k.cubin")
        with open(p, "wb") as f:
            f.write(cubin)
        out = subprocess.run([_cuobjdump(), "--dump-resource-usage", p], capture_output=True, text=True,
                             check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    if not m:
        raise RuntimeError(f"no resource usage in cuobjdump output:\n{out}")
    reg, stack, shared, local = map(int, m.groups())
    return {"regs": reg, "stack": stack, "shared_static": shared, "local": local}


def occupancy(regs: int, warps: int, shared: int) -> Tuple[int, float]:
    """(blocks per SM, occupancy bound) of an sm_90 SM for this register / shared memory use."""
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256
    blocks = min(SM_BLOCKS, SM_THREADS // (32 * warps), SM_REGS // (regs_per_warp * warps))
    if shared:
        blocks = min(blocks, SM_SMEM // (shared + SMEM_PER_BLOCK_RESERVED))
    return blocks, blocks * warps / (SM_THREADS // 32)


def compile_one(item: dict) -> dict:
    """Compile one specialisation (in a worker process); returns the row of the table."""
    import triton
    from triton.compiler import ASTSource

    mod = importlib.import_module(item["module"])
    fn = getattr(mod, item["name"])
    signature, constexprs, attrs, options = specialise(fn, item["args"], item["kwargs"])
    cc = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target(), options=options.__dict__)
    use = resource_usage(cc.asm["cubin"])
    shared = max(int(cc.metadata.shared), use["shared_static"])
    warps = int(cc.metadata.num_warps)
    blocks, occ = occupancy(use["regs"], warps, shared)
    ptx = cc.asm["ptx"]
    ce = {str(k[0] if isinstance(k, tuple) and len(k) == 1 else k): v for k, v in constexprs.items()}
    return {"kernel": item["name"], "variant": item["variant"], "regs": use["regs"], "local": use["local"],
            "stack": use["stack"], "shared": shared, "warps": warps, "blocks_per_sm": blocks, "occupancy": occ,
            "budget": budget(item["name"], {_name(fn, k): v for k, v in constexprs.items()}),
            "approx": ptx.count("ex2.approx") + ptx.count("lg2.approx"), "annotation": annotation_problems(fn, signature),
            "constexprs": ce}


def _name(fn, path) -> str:
    i = path[0] if isinstance(path, tuple) else path
    return _jit(fn).params[i].name if isinstance(i, int) else str(i)


def variant_label(rec: dict) -> str:
    """A short description of a launch: dtype and the constexprs that matter."""
    kw = rec["kwargs"]
    dts = sorted({a["tensor"] for a in rec["args"] if isinstance(a, dict)})
    skip = {"num_warps", "num_stages"}
    parts = [dts[0] if dts else "-"]
    parts += [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in kw.items() if k not in skip]
    parts.append(f"w{kw.get('num_warps', 4)}")
    return " ".join(parts)


def unique_launches(launches: List[dict]) -> List[dict]:
    """The distinct sm_90 specialisations among the recorded launches (first of each kept)."""
    seen, out = set(), []
    for rec in launches:
        mod = importlib.import_module(rec["module"])
        fn = getattr(mod, rec["name"])
        signature, constexprs, attrs, options = specialise(fn, rec["args"], rec["kwargs"])
        key = _key(rec, signature, {_name(fn, k): v for k, v in constexprs.items()}, options)
        if key in seen:
            continue
        seen.add(key)
        out.append(dict(rec, variant=variant_label(rec)))
    return out


def problems(row: dict) -> List[str]:
    out = []
    if row["local"] or row["stack"]:
        out.append(f"local memory {row['local']} B, stack {row['stack']} B (register spill)")
    if row["regs"] > row["budget"]:
        out.append(f"{row['regs']} registers > budget {row['budget']}")
    out += [f"parameter {p}" for p in row["annotation"]]
    if row["approx"]:
        out.append(f"{row['approx']} ex2.approx / lg2.approx instructions (tl.exp / tl.log on float32: "
                   "use fusedgan/triton/fastmath.py)")
    return out


def print_table(rows: List[dict], file=sys.stdout) -> None:
    hdr = f"{'kernel':22s} {'regs':>4s} {'budget':>6s} {'spill':>5s} {'smem':>6s} {'warps':>5s} {'occ':>5s} {'apx':>4s}  variant"
    print(hdr, file=file)
    print("-" * len(hdr), file=file)
    for r in sorted(rows, key=lambda r: (r["kernel"], -r["regs"])):
        print(f"{r['kernel']:22s} {r['regs']:4d} {r['budget']:6d} {r['local'] + r['stack']:5d} {r['shared']:6d} "
              f"{r['warps']:5d} {r['occupancy']:5.0%} {r['approx']:4d}  {r['variant']}", file=file)


def run(launches: List[dict], jobs: int = 1, out=sys.stdout) -> Tuple[List[dict], List[str]]:
    items = unique_launches(launches)
    print(f"gpu_compile: {len(launches)} launches recorded, {len(items)} distinct sm_{ARCH} specialisations",
          file=out, flush=True)
    if jobs > 1:
        with cf.ProcessPoolExecutor(jobs) as ex:
            rows = list(ex.map(compile_one, items))
    else:
        rows = [compile_one(it) for it in items]
    print_table(rows, out)
    failures = [f"{r['kernel']} [{r['variant']}]: {p}" for r in rows for p in problems(r)]
    return rows, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", metavar="FILE", help="(internal) record launches into FILE and exit")
    ap.add_argument("--quick", action="store_true", help="fewer dtypes and sizes (for tests)")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS", "1")))
    ap.add_argument("--json", metavar="FILE", help="write the table as JSON")
    ap.add_argument("--launches", metavar="FILE", help="compile the launches recorded in FILE (skip recording)")
    ap.add_argument("--save-launches", metavar="FILE", help="also write the recorded launches to FILE")
    args = ap.parse_args(argv)
    if args.record:
        launches = record(args.quick)
        with open(args.record, "w") as f:
            json.dump(launches, f)
        return 0
    os.environ.pop("TRITON_INTERPRET", None)
    if args.launches:
        with open(args.launches) as f:
            launches = json.load(f)
    else:
        launches = record_subprocess(args.quick)
    if args.save_launches:
        with open(args.save_launches, "w") as f:
            json.dump(launches, f)
    rows, failures = run(launches, jobs=max(1, args.jobs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    if failures:
        print(f"\ngpu_compile FAILED ({len(failures)}):")
        for f in failures:
            print("  " + f)
        return 1
    print(f"\ngpu_compile: {len(rows)} kernel variants compiled for sm_{ARCH}: no spills, within budgets, "
          f"annotations specialised as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
