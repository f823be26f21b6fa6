"""Gradient penalties (fusedgan.penalties) on every backend against the float64 reference.

Values and gradients for every norm x reduction x one_sided x dtype on odd shapes, non-contiguous
views, fp16 values near 65504 and g = 0; gradcheck / gradgradcheck in float64; a real double
backward (a small conv D, WGAN-GP and R1 steps: D's parameter gradients fused vs reference);
bitwise determinism across thread counts; opcheck of the C++ operators; bad input; the one-line
wrappers (with a GradScaler) and LazyRegularization.
"""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from fusedgan import backends, penalties, reference
from helpers import DEVICE, DTYPES, eps, fused_backends, ran_ops

BACKENDS = fused_backends() + ["reference"]
NORMS = ["sample", "pixel", "batch"]
REDUCTIONS = ["mean", "sum", "none"]
# name -> (shape, how the values are made)
CASES = {
    "1x1": ((1, 1), "randn"),
    "3x5": ((3, 5), "randn"),
    "2x3x7x5": ((2, 3, 7, 5), "randn"),
    "noncontig": ((2, 3, 7, 5), "permuted"),
    "huge": ((2, 3, 4, 5), "huge"),
    "zero": ((2, 3, 4, 5), "zero"),
}


def make_g(shape, how, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if how == "zero":
        g = torch.zeros(shape, dtype=torch.float64)
    elif how == "huge":  # magnitudes up to fp16's 65504: their squares overflow fp16, not fp32
        g = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * 6e4
    else:
        g = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3
    g = g.to(dtype).to(DEVICE)
    if how == "permuted":  # same shape, non-contiguous strides
        g = g.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        assert not g.is_contiguous()
    return g


def tol(ref: torch.Tensor, dtype: torch.dtype, k: float = 8.0) -> float:
    """k ulp (of the dtype the maths runs in, or the output's dtype) of the largest magnitude."""
    m = float(ref.abs().max()) if ref.numel() else 0.0
    return k * eps(dtype) * m + 1e-300


def run(fn, g, backend, weights_seed=1):
    """Value and d(sum(value * w))/dg, with the backend asserted."""
    x = g.detach().clone().requires_grad_(True)  # clone keeps a non-contiguous layout
    v = fn(x, backend)
    if backend != "reference":
        assert backends.last_used() == backend
    w = torch.randn(v.shape, generator=torch.Generator().manual_seed(weights_seed), dtype=torch.float64)
    (grad,) = torch.autograd.grad((v * w.to(v.dtype).to(v.device)).sum(), x)
    return v.detach(), grad


def check(fn, ref_fn, g, backend):
    v, grad = run(fn, g, backend)
    v64, grad64 = run(lambda x, b: ref_fn(x), g.double(), "reference")
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    assert v.dtype == acc and grad.dtype == g.dtype and grad.shape == g.shape
    assert torch.isfinite(v).all()
    # sums of squares, then a norm minus center: scale the error by (||g|| + center)^2 magnitudes
    assert (v.double() - v64).abs().max() <= tol(v64, acc, 64) + 64 * eps(acc), (v, v64)
    # A true gradient beyond the dtype's range (2 * g * w near 65504 in fp16) is an infinity.
    fits = grad64.abs() <= torch.finfo(g.dtype).max * (1 - eps(g.dtype))
    assert torch.isfinite(grad[fits]).all()
    assert torch.equal(grad[~fits].double(), grad64[~fits].sign() * float("inf"))
    gd, g64 = grad[fits].double(), grad64[fits]
    if g64.numel():
        assert (gd - g64).abs().max() <= tol(g64, g.dtype if g.dtype != torch.float64 else acc, 8) + \
            tol(g64, acc, 64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("one_sided", [False, True], ids=["two", "one"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_gradient_penalty(norm, reduction, one_sided, case, dtype, backend):
    shape, how = CASES[case]
    g = make_g(shape, how, dtype)
    kw = dict(norm=norm, reduction=reduction, one_sided=one_sided)
    check(lambda x, b: fg.penalties.gradient_penalty(x, backend=b, **kw),
          lambda x: reference.gradient_penalty(x, **kw), g, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fn", ["r1", "r2"])
def test_r1_r2(fn, case, dtype, backend):
    shape, how = CASES[case]
    g = make_g(shape, how, dtype)
    fused = getattr(penalties, f"{fn}_penalty")
    check(lambda x, b: fused(x, 3.0, backend=b), lambda x: reference.r1_penalty(x, 3.0), g, backend)


def test_zero_gradient_has_no_nan():
    for backend in BACKENDS:
        g = torch.zeros(3, 4, 5, requires_grad=True, device=DEVICE)
        v = fg.penalties.gradient_penalty(g, backend=backend)
        v.backward()
        assert float(v.detach()) == 1.0 and torch.equal(g.grad, torch.zeros_like(g))


@pytest.mark.parametrize("backend", fused_backends())
def test_fp16_squares_do_not_overflow(backend):
    g = torch.full((2, 3, 8, 8), 65504.0, dtype=torch.float16, device=DEVICE)
    assert torch.isinf(g.square().sum()), "torch's own fp16 sum of squares overflows here"
    v = fg.penalties.gradient_penalty(g, backend=backend)
    expect = (65504.0 * (3 * 64) ** 0.5 - 1) ** 2
    assert abs(float(v) - expect) <= 1e-6 * expect


@pytest.mark.parametrize("backend", fused_backends())
def test_empty_batch(backend):
    g = torch.zeros(0, 3, 4, device=DEVICE, requires_grad=True)
    for fn in (lambda x: fg.penalties.gradient_penalty(x, backend=backend), lambda x: fg.penalties.r1_penalty(x, backend=backend)):
        v = fn(g)
        assert torch.isnan(v)  # the mean of nothing, as in torch
        (grad,) = torch.autograd.grad(v, g)
        assert grad.shape == g.shape


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck_and_gradgradcheck(norm, backend):
    g = torch.randn(3, 2, 3, 2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    for red in REDUCTIONS:
        fn = lambda x: fg.penalties.gradient_penalty(x, norm=norm, reduction=red, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (g,))
        assert torch.autograd.gradgradcheck(fn, (g,))
    fn = lambda x: fg.penalties.r1_penalty(x, 2.5, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (g,)) and torch.autograd.gradgradcheck(fn, (g,))


# ---------------------------------------------------------------------------------------------
# A real double backward: D's parameter gradients through the penalty.


def small_d(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(8, 8, 4, stride=2, padding=1), torch.nn.LeakyReLU(0.2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 1),
    ).double().to(DEVICE)


def param_grads(D, loss):
    return torch.autograd.grad(loss, list(D.parameters()))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("term", ["wgan_gp", "r1", "dragan", "pixel_gp"])
def test_double_backward_conv_d(term, backend):
    D = small_d()
    real = torch.randn(4, 3, 8, 8, dtype=torch.float64, device=DEVICE)
    fake = torch.randn(4, 3, 8, 8, dtype=torch.float64, device=DEVICE)

    def d_loss(b):
        torch.manual_seed(1)  # the same interpolation / perturbation for both backends
        adv = D(fake).mean() - D(real).mean()
        if term == "wgan_gp":
            pen = fg.penalties.wgan_gp(D, real, fake, 10.0, backend=b)
        elif term == "r1":
            pen = fg.penalties.r1(D, real, 10.0, backend=b)
        elif term == "dragan":
            pen = fg.penalties.dragan(D, real, 10.0, backend=b)
        else:
            pen = fg.penalties.wgan_gp(D, real, fake, 10.0, norm="pixel", backend=b)
        assert backends.last_used() == b
        return adv + pen

    ref = param_grads(D, d_loss("reference"))
    got = param_grads(D, d_loss(backend))
    for p, r in zip(got, ref):
        assert torch.allclose(p, r, rtol=1e-10, atol=1e-12), float((p - r).abs().max())
    assert any(float(r.abs().max()) > 0 for r in ref)


@pytest.mark.parametrize("backend", fused_backends())
def test_triple_backward_recomputes_through_reference(backend):
    g = torch.randn(3, 4, 2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    v = fg.penalties.gradient_penalty(g, backend=backend)
    (d1,) = torch.autograd.grad(v, g, create_graph=True)
    (d2,) = torch.autograd.grad(d1.square().sum(), g)
    v_r = reference.gradient_penalty(g)
    (e1,) = torch.autograd.grad(v_r, g, create_graph=True)
    (e2,) = torch.autograd.grad(e1.square().sum(), g)
    assert torch.allclose(d1, e1) and torch.allclose(d2, e2)


# ---------------------------------------------------------------------------------------------
# The C++ operators.

native = pytest.mark.skipif("cpu" not in fused_backends("cpu") or not fg.ops.has_kernel("group_penalty", "CPU"),
                            reason="fusedgan._C with the CPU penalty kernels is not built")


@native
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", [(4, 3, 1), (2, 3, 35), (1, 105, 1), (3, 20000, 1), (2, 40, 300)])
def test_ops_match_definition_and_opcheck(layout, dtype):
    A, C, B = layout
    g = make_g((A, C, B), "randn", dtype, seed=3)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    s = torch.ops.fusedgan.group_sumsq(g, A, C, B)
    ref = g.double().square().sum(1)
    assert s.dtype == acc and s.shape == (A, B)
    assert (s.double() - ref).abs().max() <= tol(ref, acc, 16)
    scale = torch.rand(A, B, dtype=acc)
    go = torch.tensor(-0.75, dtype=acc)
    out = torch.ops.fusedgan.group_scale_mul(g, scale, go, A, C, B)
    ref = scale.double().unsqueeze(1) * g.double() * -0.75
    assert out.dtype == dtype and out.shape == g.shape
    assert (out.double() - ref).abs().max() <= tol(ref, dtype if dtype != torch.float64 else acc, 2)
    torch.library.opcheck(torch.ops.fusedgan.group_sumsq, (g, A, C, B))
    torch.library.opcheck(torch.ops.fusedgan.group_scale_mul, (g, scale, go, A, C, B))


@native
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
# (2, 3, 2500): several column tiles with a tail; (2, 9, 1500): more rows than one column task holds
@pytest.mark.parametrize("layout", [(4, 3, 1), (2, 3, 35), (1, 105, 1), (3, 20000, 1), (0, 5, 1), (2, 0, 3),
                                    (2, 3, 2500), (2, 9, 1500)])
@pytest.mark.parametrize("kind, reduction", [(k, r) for k in ("gp", "gp-one-sided") for r in REDUCTIONS]
                         + [("r1", "mean")])  # r1 has one reduction: the batch mean
def test_group_penalty_kernel_matches_reference_and_opcheck(kind, reduction, layout, dtype):
    """The CPU kernel (sums of squares, then its scalar epilogue) against the fp64 reference op."""
    A, C, B = layout
    if kind == "r1":
        A, C, B = 1, A * C * B, 1
    g = make_g((A, C, B), "randn", dtype, seed=4) * 2
    if g.numel():
        g[0, :, 0] = 0  # a group with ||g|| = 0
    code = int(fg.kinds.reduction_code(reduction))
    args = (g, A, C, B, 1 if kind == "r1" else 0, 1.0, kind == "gp-one-sided", code, 10.0, max(layout[0], 1))
    value, scale = torch.ops.fusedgan.group_penalty(*args)
    ref_value, ref_scale = fg.ops.reference_group_penalty(g.double(), *args[1:])
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert value.dtype == scale.dtype == acc and value.shape == ref_value.shape and scale.shape == (A, B)
    # value and scale = 2 (||g|| - center) / ||g|| / groups: the cancellation in ||g|| - center
    # costs a few ulp of (||g|| + center), relative to which the two roundings are compared.
    s = g.double().square().sum(1)
    vbound = float(((s.sqrt() + 1) ** 2).sum()) if g.numel() else 0.0
    torch.testing.assert_close(value.double(), ref_value, rtol=8 * eps(acc), atol=16 * eps(acc) * vbound,
                               equal_nan=True)
    bound = (2 * (s.sqrt() + 1) / s.sqrt().clamp_min(1e-30)).where(s > 0, 0.0).max() if g.numel() else 0.0
    # (rtol: the rounding of scale itself to the acc dtype, e.g. r1's gamma / batch)
    torch.testing.assert_close(scale.double(), ref_scale.reshape(A, B), rtol=2 * eps(acc),
                               atol=16 * eps(acc) * float(bound) + 1e-30, equal_nan=True)
    if not value.isnan().any():  # the mean over no groups is NaN, and opcheck compares without equal_nan
        torch.library.opcheck(torch.ops.fusedgan.group_penalty, args)


@native
def test_cpu_gradient_buffers_are_reused_only_when_free():
    """The pool hands a gradient buffer out again only once no tensor refers to it."""
    A, C, B = 4, 1 << 17, 1  # 2 MiB of float32: above the pool's 1 MiB floor
    g = torch.randn(A, C, B)
    scale, go = torch.rand(A, B), torch.tensor(2.0)
    first = torch.ops.fusedgan.group_scale_mul(g, scale, go, A, C, B)
    kept = first.view(-1)  # a view keeps the storage alive too
    second = torch.ops.fusedgan.group_scale_mul(g, scale, go, A, C, B)
    assert second.data_ptr() != first.data_ptr()
    ptr = first.data_ptr()
    del first
    third = torch.ops.fusedgan.group_scale_mul(g, scale, go, A, C, B)
    assert third.data_ptr() != ptr  # `kept` still refers to it
    del kept
    again = torch.ops.fusedgan.group_scale_mul(g, scale, go * 2, A, C, B)
    assert again.data_ptr() in (ptr, second.data_ptr(), third.data_ptr()) or fg._C.buffer_pool_bytes() == 0
    torch.testing.assert_close(again, scale.unsqueeze(1) * g * 4)
    assert torch.equal(second, third)  # reusing a buffer never touched the live ones
    torch.testing.assert_close(second, scale.unsqueeze(1) * g * 2)
    fg._C.empty_buffer_pool()
    assert fg._C.buffer_pool_bytes() == 0


@native
@pytest.mark.parametrize("shape", [(8, 3, 64, 64), (3, 70000), (2, 16, 3000)])
@pytest.mark.parametrize("norm", NORMS)
def test_bitwise_deterministic_across_thread_counts(shape, norm):
    g = torch.randn(shape)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            x = g.clone().requires_grad_(True)
            v = fg.penalties.gradient_penalty(x, norm=norm, backend="cpu")
            v.backward()
            outs.append((v.detach(), x.grad))
    finally:
        torch.set_num_threads(before)
    for v, grad in outs[1:]:
        assert torch.equal(v, outs[0][0]) and torch.equal(grad, outs[0][1])


@native
def test_cpu_backend_runs_the_operators():
    g = torch.randn(4, 3, 8, 8, requires_grad=True)
    names = ran_ops(lambda: fg.penalties.gradient_penalty(g, backend="cpu").backward())
    assert {"fusedgan::gan_penalty", "fusedgan::group_penalty", "fusedgan::group_scale_mul"} <= names
    assert "fusedgan::penalty_exact_backward" not in names  # first order: no reference recompute


@native
def test_compile_fullgraph():
    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(g):
        return fg.penalties.gradient_penalty(g, backend="cpu") + fg.penalties.r1_penalty(g, backend="cpu")

    g = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    v = step(g)
    v.backward()
    g2 = g.detach().clone().requires_grad_(True)
    (reference.gradient_penalty(g2) + reference.r1_penalty(g2)).backward()
    assert torch.allclose(g.grad, g2.grad)


# ---------------------------------------------------------------------------------------------
# Arguments.


def test_bad_input():
    g = torch.randn(2, 3)
    with pytest.raises(TypeError, match="g"):
        fg.penalties.gradient_penalty(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="g"):
        fg.penalties.r1_penalty([[1.0]])
    with pytest.raises(ValueError, match="norm"):
        fg.penalties.gradient_penalty(g, norm="l1")
    with pytest.raises(ValueError, match="reduction"):
        fg.penalties.gradient_penalty(g, reduction="max")
    for norm in ("sample", "pixel"):
        with pytest.raises(ValueError, match="g"):
            fg.penalties.gradient_penalty(torch.randn(5), norm=norm)
    fg.penalties.gradient_penalty(torch.randn(5), norm="batch")  # any shape
    with pytest.raises(ValueError, match="gamma"):
        fg.penalties.r1_penalty(g, gamma=-1.0)
    with pytest.raises(TypeError, match="gamma"):
        fg.penalties.r1_penalty(g, gamma="10")
    with pytest.raises(ValueError, match="center"):
        fg.penalties.gradient_penalty(g, center=float("nan"))
    with pytest.raises(ValueError, match="backend"):
        fg.penalties.gradient_penalty(g, backend="tpu")
    with pytest.raises(ValueError, match="interval"):
        fg.penalties.LazyRegularization(0)


# ---------------------------------------------------------------------------------------------
# Wrappers.


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaler_recipe_matches_unscaled(backend):
    D = small_d().float()
    real = torch.randn(4, 3, 8, 8, device=DEVICE)
    fake = torch.randn(4, 3, 8, 8, device=DEVICE)
    scaler = torch.amp.GradScaler(DEVICE, init_scale=2.0 ** 12)
    for fn in (lambda s: fg.penalties.wgan_gp(D, real, fake, scaler=s, backend=backend),
               lambda s: fg.penalties.dragan(D, real, scaler=s, backend=backend),
               lambda s: fg.penalties.r1(D, real, scaler=s, backend=backend)):
        torch.manual_seed(5)
        plain = fn(None)
        torch.manual_seed(5)
        scaled = fn(scaler)
        assert torch.allclose(plain, scaled, rtol=1e-5), (plain, scaled)
        assert scaled.requires_grad


def test_wgan_gp_interpolates_per_sample():
    seen = []

    def D(x):
        seen.append(x.detach())
        return x.flatten(1).sum(1)

    real, fake = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    v = fg.penalties.wgan_gp(D, real, fake, weight=1.0)
    x = seen[0]
    assert torch.equal(x, x[:, :1, :1].expand_as(x))  # one u per sample, in [0, 1)
    assert ((x >= 0) & (x < 1)).all()
    assert torch.allclose(v, torch.tensor((2.0 - 1.0) ** 2))  # ||grad|| = sqrt(4) for D = sum


def test_lazy_regularization():
    lr = fg.penalties.LazyRegularization(16)
    assert lr.gain == 16 and lr.should_apply(0) and lr.should_apply(32) and not lr.should_apply(5)
    new_lr, (b1, b2) = lr.adam_hparams(0.002, (0.0, 0.99))
    c = 16 / 17
    assert new_lr == pytest.approx(0.002 * c) and b1 == 0.0 and b2 == pytest.approx(0.99 ** c)
