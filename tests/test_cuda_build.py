"""The CUDA build of fusedgan._C: registration (any machine) and kernels against the reference (GPU).

Registration tests need an extension built with CUDA (``FUSEDGAN_BUILD_CUDA=1``; no GPU needed to
build).  Without one they skip, unless ``FUSEDGAN_EXPECT_CUDA_BUILD=1`` (set by CI), where the
missing CUDA build is a failure.  Kernel tests need a GPU and skip with a reason elsewhere; the
main suite (test_losses.py) also runs the "cuda" backend when ``FUSEDGAN_TEST_DEVICE=cuda``.
"""
from __future__ import annotations

import os
import re

import pytest
import torch

from fusedgan import _ext, ops
from fusedgan.kinds import Elem, Reduction

INFO = _ext.build_info()
EXPECT_CUDA_BUILD = os.environ.get("FUSEDGAN_EXPECT_CUDA_BUILD", "0") == "1"
HAS_GPU = torch.cuda.is_available()


def require_cuda_build():
    if INFO.get("cuda"):
        return
    why = (f"fusedgan._C not loaded ({INFO.get('error')})" if not INFO.get("loaded")
           else "fusedgan._C was built without CUDA kernels")
    if EXPECT_CUDA_BUILD:
        pytest.fail(f"FUSEDGAN_EXPECT_CUDA_BUILD=1 but {why}; build with FUSEDGAN_BUILD_CUDA=1 "
                    "(torch with CUDA, nvcc under CUDA_HOME or /usr/local/cuda)")
    pytest.skip(f"{why} (set FUSEDGAN_BUILD_CUDA=1 to build them)")


def native_ops() -> list[str]:
    """Every fusedgan::* operator that has a CPU kernel of its own (the C++ kernels)."""
    names = sorted({n.split(".")[0] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fusedgan::")})
    return [n for n in names if torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU")]


def test_every_native_operator_has_a_cuda_kernel():
    require_cuda_build()
    names = native_ops()
    assert "fusedgan::loss_terms" in names, names
    missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
    assert not missing, f"operators with a CPU kernel but no CUDA kernel: {missing}"
    assert _ext.HAS_CUDA


def test_build_info_reports_archs():
    require_cuda_build()
    archs = INFO["cuda_archs"]
    assert archs, "build_info()['cuda_archs'] is empty"
    for arch in re.split(r"[;\s]+", archs.strip()):
        assert re.fullmatch(r"\d+\.\d+[a-z]?(\+PTX)?", arch), f"unexpected arch {arch!r} in {archs!r}"


# -- kernels (GPU) ------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU visible: the CUDA kernels cannot run here")
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 2e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def close(a, b, dtype, what):
    if a.dtype in (torch.float32, torch.float64):  # a float32 result gets the float32 rule
        dtype = a.dtype
    a, b = a.double().cpu(), b.double().cpu()
    scale = max(float(b.abs().max()) if b.numel() else 0.0, 1.0)
    assert torch.allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale, equal_nan=True), (
        f"{what}: max abs error {float((a - b).abs().nan_to_num().max()) if a.numel() else 0.0:.3e}")


def call(op, terms, reduction, need_grad=True):
    """terms: (x, label tensor or None, weight tensor or None, elem, label_value, coef) tuples."""
    xs, labs, ws, elems, lvs, coefs = map(list, zip(*terms))
    return op(xs, labs, ws, [int(e) for e in elems], lvs, coefs, int(reduction), [need_grad] * len(xs))


def on(device, terms):
    return [tuple(v.to(device) if isinstance(v, torch.Tensor) else v for v in t) for t in terms]


def make_terms(dtype, sizes, *, offset=0, seed=0):
    """One term per (size, elem) with every operand mode: scalar label, label tensor, weights."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        elem = list(Elem)[i % len(Elem)]
        x = (torch.randn(n + offset, generator=g, dtype=torch.float64) * 3)[offset:].to(dtype)
        lab = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) if i % 3 == 1 else None
        if i % 3 == 2:
            lab = torch.tensor([0.9], dtype=dtype)
        w = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) if i % 2 else None
        out.append((x, lab, w, elem, 1.0 - 0.5 * (i % 2), 1.0 + 0.25 * i))
    return out


def check_against_reference(op_name, dtype, sizes, reduction, *, offset=0):
    terms = make_terms(dtype, sizes, offset=offset)
    got = call(getattr(torch.ops.fusedgan, op_name), on("cuda", terms), reduction)
    ref_fn = ops.reference_loss_terms_stats if op_name == "loss_terms_stats" else ops.reference_loss_terms
    t64 = [(x.double(), None if lab is None else lab.double(), None if w is None else w.double(), *rest)
           for x, lab, w, *rest in terms]
    ref = call(ref_fn, t64, reduction)
    close(got[0], ref[0], dtype, "total")
    close(got[1], ref[1], dtype, "terms")
    for i in range(len(sizes)):
        assert got[2][i].dtype == dtype and got[2][i].shape == terms[i][0].shape
        close(got[2][i], ref[2][i], dtype, f"grads[{i}]")
        close(got[3][i], ref[3][i], dtype, f"values[{i}]")
    if op_name == "loss_terms_stats":
        close(got[4], ref[4], dtype, "stats")
    return got


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", list(Reduction))
@pytest.mark.parametrize("op_name", ["loss_terms", "loss_terms_stats"])
@pytest.mark.parametrize("sizes", [(64, 100), (0, 7), (5000, 70000, 3)], ids=["single-block", "empty", "multi-block"])
def test_loss_terms_cuda_matches_reference(op_name, reduction, dtype, sizes):
    require_cuda_build()
    check_against_reference(op_name, dtype, sizes, reduction)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_terms_cuda_unaligned_many_terms_large(dtype):
    """Scalar path (storage offset 1), more terms than one launch holds, grid-stride loops."""
    require_cuda_build()
    check_against_reference("loss_terms", dtype, [33] * 20, Reduction.MEAN, offset=1)
    check_against_reference("loss_terms", dtype, [(1 << 23) + 5, 129], Reduction.SUM)


@gpu
def test_loss_terms_cuda_is_deterministic():
    require_cuda_build()
    terms = on("cuda", make_terms(torch.float32, [3_000_001, 4097]))
    a = call(torch.ops.fusedgan.loss_terms, terms, Reduction.MEAN)
    b = call(torch.ops.fusedgan.loss_terms, terms, Reduction.MEAN)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (4, 512, 4, 4), (2, 1, 1, 1), (64, 5, 200_000 // 64, 1)])
@pytest.mark.parametrize("norm", ["sample", "pixel", "batch"])
def test_penalty_helpers_cuda(dtype, shape, norm):
    require_cuda_build()
    g = (torch.randn(shape, dtype=torch.float64) * 10).to(dtype)
    a, c, b = {"sample": (shape[0], g[0].numel(), 1), "pixel": (shape[0], shape[1], g[0, 0].numel()),
               "batch": (1, g.numel(), 1)}[norm]
    ref = g.double().reshape(a, c, b).square().sum(1)
    got = torch.ops.fusedgan.group_sumsq(g.cuda(), a, c, b)
    close(got, ref, dtype, "group_sumsq")
    assert torch.equal(got, torch.ops.fusedgan.group_sumsq(g.cuda(), a, c, b)), "not deterministic"
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    scale = torch.rand(a, b, dtype=acc)
    go = torch.tensor(0.75, dtype=acc)
    got = torch.ops.fusedgan.group_scale_mul(g.cuda(), scale.cuda(), go.cuda(), a, c, b)
    ref = (scale.double().reshape(a, 1, b) * g.double().reshape(a, c, b) * 0.75).reshape(shape)
    assert got.dtype == dtype and got.shape == g.shape
    close(got, ref, dtype, "group_scale_mul")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (4, 512, 4, 4), (2, 1, 1, 1), (64, 5, 200_000 // 64, 1),
                                   (3, 2, 300, 301)])
@pytest.mark.parametrize("norm", ["sample", "pixel", "batch"])
@pytest.mark.parametrize("kind, one_sided, reduction", [("gp", False, Reduction.MEAN), ("gp", True, Reduction.SUM),
                                                        ("gp", False, Reduction.NONE), ("r1", False, Reduction.MEAN)])
def test_group_penalty_cuda_matches_reference(dtype, shape, norm, kind, one_sided, reduction):
    """The CUDA group_penalty (stage 1 sums, one finishing kernel) against the fp64 reference op."""
    require_cuda_build()
    if kind == "r1" and norm != "batch":
        pytest.skip("r1 has one group")
    g = (torch.randn(shape, dtype=torch.float64) * 10).to(dtype)
    g[0] = 0  # a group with ||g|| = 0 (every layout)
    a, c, b = {"sample": (shape[0], g[0].numel(), 1), "pixel": (shape[0], shape[1], g[0, 0].numel()),
               "batch": (1, g.numel(), 1)}[norm]
    args = (a, c, b, 1 if kind == "r1" else 0, 1.0, one_sided, int(reduction), 10.0, shape[0])
    value, scale = torch.ops.fusedgan.group_penalty(g.cuda(), *args)
    ref_value, ref_scale = ops.reference_group_penalty(g.double(), *args)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert value.dtype == scale.dtype == acc and value.shape == ref_value.shape and scale.shape == (a, b)
    close(value, ref_value, acc, "value")
    close(scale, ref_scale.reshape(a, b), acc, "scale")
    again = torch.ops.fusedgan.group_penalty(g.cuda(), *args)
    assert torch.equal(value, again[0]) and torch.equal(scale, again[1]), "not deterministic"


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", list(Reduction))
@pytest.mark.parametrize("sizes, offset", [((64, 100), 0), ((5000, 70000, 3), 0), ((33,) * 20, 1)],
                         ids=["single-block", "multi-block", "unaligned-many"])
def test_loss_grads_cuda_matches_reference(dtype, reduction, sizes, offset):
    """The one-pass CUDA loss_grads (gradient recomputed, times grad_output) against the reference."""
    require_cuda_build()
    terms = make_terms(dtype, sizes, offset=offset, seed=3)
    gen = torch.Generator().manual_seed(5)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    gos = []
    for i, (x, *_rest) in enumerate(terms):
        if i % 4 == 3:
            gos.append(None)
        elif reduction == Reduction.NONE:
            gos.append(torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype))
        else:
            gos.append(torch.randn((), generator=gen, dtype=torch.float64).to(acc))
    xs, labs, ws, elems, lvs, coefs = map(list, zip(*on("cuda", terms)))
    got = torch.ops.fusedgan.loss_grads(xs, labs, ws, [int(e) for e in elems], lvs, coefs, int(reduction),
                                        [None if go is None else go.cuda() for go in gos])
    t64 = [(x.double(), None if lab is None else lab.double(), None if w is None else w.double(), *rest)
           for x, lab, w, *rest in terms]
    xs, labs, ws, elems, lvs, coefs = map(list, zip(*t64))
    ref = ops.reference_loss_grads(xs, labs, ws, [int(e) for e in elems], lvs, coefs, int(reduction),
                                   [None if go is None else go.double() for go in gos])
    for i, go in enumerate(gos):
        if go is None:
            assert got[i].numel() == 0
            continue
        assert got[i].dtype == dtype and got[i].shape == terms[i][0].shape
        close(got[i], ref[i], dtype, f"loss_grads[{i}]")


def test_cuda_backward_recomputes_the_gradient():
    """With the CUDA loss_grads kernel registered, gan_loss's CUDA backward recomputes (3 passes)."""
    require_cuda_build()
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fusedgan::loss_grads", "CUDA")
