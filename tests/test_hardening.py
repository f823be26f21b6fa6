"""Regression tests of issue 17 (correctness and parity hardening), one section per item.

Backends: ``reference`` and every fused backend that runs here on CPU tensors (``cpu``, and
``triton`` when TRITON_INTERPRET=1: tests/test_triton_hardening.py reruns this file's tests in the
triton stage).  The yardstick is always torch's own formulas in float64 (``fusedgan.reference``,
differentiated by autograd), or a hand value.
"""
from __future__ import annotations

import math
import threading

import pytest
import torch

import fusedgan as fg
from fusedgan import backends

INF, NAN = float("inf"), float("nan")
ALL_KINDS = ("ns", "mm", "ls", "wgan", "hinge", "rsgan", "ragan", "ralsgan", "rahinge")


def cpu_backends() -> list:
    """The backends this file checks: reference and cpu; under TRITON_INTERPRET=1 (the triton
    stage, tests/test_triton_hardening.py) the Triton kernels instead."""
    if backends.triton_interpret():
        return ["triton"] if backends.can_run("triton", "cpu") else []
    return [b for b in ("reference", "cpu") if backends.can_run(b, "cpu")]


BACKENDS = cpu_backends()


def _side(side, kind, r, f, backend, reduction):
    if side == "D":
        return fg.discriminator_loss(r, f, kind, reduction=reduction, backend=backend)
    real = r if kind in fg.reference.RELATIVISTIC_KINDS else None
    return fg.generator_loss(f, kind, real=real, reduction=reduction, backend=backend)


def _flat(out):
    if isinstance(out, (tuple, list)):
        return torch.cat([o.reshape(-1).double() for o in out])
    return out.reshape(-1).double()


def _same(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, equal_nan=True, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------
# Item 1: every term empty (the CPU chunk walk read past its table; tests/run.sh's asan stage
# runs this under AddressSanitizer).


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_terms_empty(backend):
    e = torch.empty(0)
    nan = torch.tensor(NAN)
    _same(fg.generator_loss(e, backend=backend).double(), nan.double(), "G mean of empty")
    _same(fg.generator_loss(e, reduction="sum", backend=backend).double(), torch.tensor(0.0).double(), "G sum")
    assert fg.generator_loss(e, reduction="none", backend=backend).shape == (0,)
    scales = [torch.empty(0, 3) for _ in range(6)]
    out = fg.discriminator_loss(scales, scales, "hinge", backend=backend)
    assert torch.isnan(out), out
    for kind in ALL_KINDS:
        d = fg.discriminator_loss(e, e, kind, reduction="sum", backend=backend)
        assert float(d) == 0.0, (kind, d)
        x = torch.empty(0, 4, requires_grad=True)
        fg.discriminator_loss(x, x.detach(), kind, reduction="sum", backend=backend).backward()
        assert x.grad.shape == (0, 4)


# ---------------------------------------------------------------------------------------------
# Item 8 (and item 7's rsgan): NaN and +-inf follow torch's formulas (the reference) in the loss
# value and the gradient, for every kind, side and backend.

_SPECIAL = [NAN, INF, -INF, 0.5, -2.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_inf_like_torch(backend, kind, side, dtype):
    rel = kind in fg.reference.RELATIVISTIC_KINDS
    for pos in range(len(_SPECIAL)):
        # each special value alone in r (and, separately, in f), so one NaN does not hide another
        for which in ("r", "f"):
            base = torch.tensor([0.25, -0.75, 1.5, -0.1, 3.0, -3.0], dtype=torch.float64)
            r, f = base.clone(), base.flip(0).clone()
            (r if which == "r" else f)[pos] = _SPECIAL[pos]
            for red in ("none", "mean"):
                r64 = r.clone().requires_grad_(True)
                f64 = f.clone().requires_grad_(True)
                want = _side(side, kind, r64, f64, "reference", red)
                rx = r.to(dtype, copy=True).requires_grad_(True)
                fx = f.to(dtype, copy=True).requires_grad_(True)
                got = _side(side, kind, rx, fx, backend, red)
                what = f"{backend} {kind} {side} {red} {which}[{pos}]={_SPECIAL[pos]}"
                _same(_flat(got), _flat(want), what + " value")
                if red != "mean":
                    continue
                want.backward()
                got.backward()
                _same(fx.grad.double(), f64.grad, what + " d/df")
                if side == "D" or rel:
                    _same(rx.grad.double(), r64.grad, what + " d/dr")


def test_hinge_nan_gradient_hand_value():
    """torch's relu' passes the gradient at a NaN margin: d/dx mean relu(1 - x) at x = NaN is -1/N."""
    for backend in BACKENDS:
        r = torch.tensor([NAN, 0.0, 2.0], requires_grad=True)
        fg.discriminator_loss(r, torch.zeros(1), "hinge", backend=backend).backward()
        torch.testing.assert_close(r.grad, torch.tensor([-1 / 3, -1 / 3, 0.0]), msg=backend)


def test_rsgan_infinite_difference_hand_value():
    """rsgan: sp(-(r - f)) is 0 at r - f = +inf (not BCE(+inf, 1) = 0 * inf = NaN), inf at -inf."""
    r = torch.tensor([INF, 0.0, -INF])
    f = torch.tensor([0.0, -INF, 0.0])
    for backend in BACKENDS:
        d = fg.discriminator_loss(r, f, "rsgan", reduction="none", backend=backend)
        torch.testing.assert_close(d.double(), torch.tensor([0.0, 0.0, INF], dtype=torch.float64), msg=backend)
        g = fg.generator_loss(f, "rsgan", real=r, reduction="none", backend=backend)
        torch.testing.assert_close(g.double(), torch.tensor([INF, INF, 0.0], dtype=torch.float64), msg=backend)
        rr = torch.tensor([INF, 1.0], requires_grad=True)
        fg.discriminator_loss(rr, torch.zeros(2), "rsgan", backend=backend).backward()
        torch.testing.assert_close(rr.grad, torch.tensor([0.0, -0.5 / (1 + math.e)]), msg=backend)


def test_reference_softplus_is_exact():
    """The fp64 specification is the exact softplus, not F.softplus's linear tail above 20."""
    x = torch.tensor([15.0, 20.5, 25.0, 36.0, 700.0, -40.0], dtype=torch.float64)
    want = torch.tensor([float(math.log1p(math.exp(v))) if v < 700 else v for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(fg.reference.sp(x), want, rtol=2 ** -52, atol=0.0)


# ---------------------------------------------------------------------------------------------
# Items 5 and 6: the reference penalty propagates NaN and takes an empty batch, like the kernels.


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_nan_propagates(backend):
    for norm in ("sample", "pixel", "batch"):
        for one_sided in (False, True):
            g = torch.tensor([[NAN, 1.0], [0.5, 0.5]]).reshape(2, 2, 1).requires_grad_(True)
            p = fg.gradient_penalty(g, norm=norm, one_sided=one_sided, backend=backend)
            assert torch.isnan(p), (norm, one_sided, p)
            p.backward()
            assert torch.isnan(g.grad[0]).any(), (norm, one_sided, g.grad)
    g = torch.tensor([[NAN, 1.0], [0.5, 0.5]], requires_grad=True)
    p = fg.gradient_penalty(g, reduction="none", backend=backend)
    assert torch.isnan(p[0]) and torch.isfinite(p[1]), p
    # create_graph=True runs the backward through the reference: NaN reaches the gradient too
    (gg,) = torch.autograd.grad(fg.gradient_penalty(g, backend=backend), g, create_graph=True)
    assert torch.isnan(gg).any(), gg
    assert torch.isnan(fg.r1_penalty(g, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_empty_batch(backend):
    for norm in ("sample", "pixel"):
        g = torch.empty(0, 3, 4)
        assert torch.isnan(fg.gradient_penalty(g, norm=norm, backend=backend)), norm
        assert float(fg.gradient_penalty(g, norm=norm, reduction="sum", backend=backend)) == 0.0
        shape = (0,) if norm == "sample" else (0, 4)
        assert fg.gradient_penalty(g, norm=norm, reduction="none", backend=backend).shape == shape
    assert torch.isnan(fg.r1_penalty(torch.empty(0, 3), backend=backend))


# ---------------------------------------------------------------------------------------------
# Item 10: use_backend is per thread; set_backend is the process default.


def test_use_backend_is_thread_local():
    start = threading.Barrier(2)
    inside = threading.Barrier(2)
    seen = {}

    def worker(name, choice):
        start.wait()
        with fg.use_backend(choice):
            inside.wait()  # both threads inside their blocks at once
            seen[name] = backends.requested_backend()
            inside.wait()
        seen[name + "_after"] = backends.requested_backend()

    ts = [threading.Thread(target=worker, args=("a", "reference")),
          threading.Thread(target=worker, args=("b", "cpu"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {"a": "reference", "b": "cpu", "a_after": None, "b_after": None}, seen
    assert backends.requested_backend() is None

    # set_backend: the default of every thread outside a block
    fg.set_backend("reference")
    try:
        got = []
        t = threading.Thread(target=lambda: got.append(backends.requested_backend()))
        t.start()
        t.join()
        assert got == ["reference"]
        with fg.use_backend("auto"):
            assert backends.requested_backend() is None
        assert backends.requested_backend() == "reference"
    finally:
        fg.set_backend(None)


def test_use_backend_interleaved_blocks_do_not_pop_each_other():
    """Two threads whose blocks end in the opposite order to their starts."""
    e1, e2, e3 = threading.Event(), threading.Event(), threading.Event()
    out = {}

    def first():
        with fg.use_backend("reference"):
            e1.set()
            e2.wait()  # the second thread entered its block
        out["first_after"] = backends.requested_backend()
        e3.set()

    def second():
        e1.wait()
        with fg.use_backend("cpu"):
            e2.set()
            e3.wait()  # the first thread left its block
            out["second_inside"] = backends.requested_backend()

    ts = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == {"first_after": None, "second_inside": "cpu"}, out


# ---------------------------------------------------------------------------------------------
# Item 11: the drop-ins return torch's dtype for every combination of argument dtypes, at least
# as accurately as torch, and run fused (the operators that ran, not backends.last_used()).

import itertools  # noqa: E402

from helpers import fused_ops  # noqa: E402

_F16, _BF16, _F32, _F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
_DT = (_F16, _BF16, _F32, _F64)
_torch_bce = fg.compat._torch_bce
_torch_mse = fg.compat._torch_mse


def _ulp_err_ok(got, torch_out, ref64, what):
    """got's error against the fp64 value is at most torch's own, plus a few ulp of the result."""
    assert got.dtype == torch_out.dtype, f"{what}: dtype {got.dtype}, torch gives {torch_out.dtype}"
    e = (got.double() - ref64).abs().max().item()
    e_t = (torch_out.double() - ref64).abs().max().item()
    ulp = torch.finfo(got.dtype).eps * ref64.abs().max().item()
    assert math.isfinite(e) and e <= e_t + 4 * ulp + 1e-300, f"{what}: error {e:.3e} > torch's {e_t:.3e} + ulp {ulp:.3e}"


@pytest.mark.skipif(not backends.can_run("cpu", "cpu"), reason="needs the CPU extension")
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_bce_dtype_rule_every_combination(red):
    g = torch.Generator().manual_seed(11)
    x64 = torch.randn(4, 5, generator=g, dtype=_F64) * 3
    t64 = torch.rand(4, 5, generator=g, dtype=_F64)
    w64 = torch.rand(5, generator=g, dtype=_F64) + 0.5
    p64 = torch.rand(5, generator=g, dtype=_F64) + 0.5
    for xd, td, wd, pd in itertools.product(_DT, _DT, (None, *_DT), (None, *_DT)):
        args = (x64.to(xd), t64.to(td), None if wd is None else w64.to(wd))
        pw = None if pd is None else p64.to(pd)
        want = _torch_bce(*args, reduction=red, pos_weight=pw)
        got, ran = fused_ops(lambda: fg.compat.binary_cross_entropy_with_logits(*args, reduction=red, pos_weight=pw))
        what = f"bce x={xd} t={td} w={wd} pw={pd} {red}"
        assert "fusedgan::loss_terms" in ran, f"{what}: did not run fused ({ran})"
        ref = _torch_bce(*[None if a is None else a.double() for a in args], reduction=red,
                         pos_weight=None if pw is None else pw.double())
        _ulp_err_ok(got, want, ref, what)


@pytest.mark.skipif(not backends.can_run("cpu", "cpu"), reason="needs the CPU extension")
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_mse_dtype_rule_every_combination(red):
    g = torch.Generator().manual_seed(12)
    x64 = torch.randn(4, 5, generator=g, dtype=_F64) * 3
    t64 = torch.randn(4, 5, generator=g, dtype=_F64)
    for xd, td in itertools.product(_DT, _DT):
        x, t = x64.to(xd), t64.to(td)
        want = _torch_mse(x, t, reduction=red)
        got, ran = fused_ops(lambda: fg.compat.mse_loss(x, t, reduction=red))
        what = f"mse x={xd} t={td} {red}"
        assert "fusedgan::loss_terms" in ran, f"{what}: did not run fused ({ran})"
        _ulp_err_ok(got, want, _torch_mse(x.double(), t.double(), reduction=red), what)


# ---------------------------------------------------------------------------------------------
# Item 2: negative-bit views are read with their sign.


def _neg_view(v):
    return torch._neg_view(torch.tensor(v).neg())  # same values, negative bit set


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_bit_views(backend):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, generator=g)
    lab = torch.tensor([0.3 + 2j]).conj().imag  # -2.0, as a negative-bit view
    assert lab.is_neg()
    got = fg.discriminator_loss(x, x, "ls", real_label=lab, backend=backend)
    want = fg.reference.discriminator_loss(x.double(), x.double(), "ls", real_label=-2.0)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    w = _neg_view([0.5] * 6)
    assert w.is_neg()
    got = fg.discriminator_loss(x, x, "ns", real_weight=w, fake_weight=w, backend=backend)
    want = fg.reference.discriminator_loss(x.double(), x.double(), "ns", real_weight=torch.full((6,), 0.5, dtype=_F64),
                                           fake_weight=torch.full((6,), 0.5, dtype=_F64))
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    xn = _neg_view(x.tolist())  # logits too
    got = fg.generator_loss(xn, "ns", backend=backend)
    torch.testing.assert_close(got.double(), fg.reference.generator_loss(x.double(), "ns"), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not backends.can_run("cpu", "cpu"), reason="needs the CPU extension")
def test_negative_bit_views_drop_ins():
    x = torch.randn(6)
    t = _neg_view([-0.25] * 6)  # values -0.25 (soft labels outside [0, 1] are allowed by torch)
    w = _neg_view([0.5] * 6)
    for args in ((x, t), (x, t, w)):
        want = _torch_bce(*[a.resolve_neg() for a in args])
        got, ran = fused_ops(lambda: fg.compat.binary_cross_entropy_with_logits(*args))
        assert "fusedgan::loss_terms" in ran
        torch.testing.assert_close(got, want)
    got, ran = fused_ops(lambda: fg.compat.mse_loss(_neg_view(x.tolist()), t))
    assert "fusedgan::loss_terms" in ran
    torch.testing.assert_close(got, _torch_mse(x, t.resolve_neg()))


# ---------------------------------------------------------------------------------------------
# Tests that gave false confidence: penalty conventions by hand value, and the wrappers on a
# linear D whose input gradient is known.


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_hand_values(backend):
    ones = torch.ones(2, 3)
    # R1 / R2 (StyleGAN2): (gamma / 2) * mean_b sum(g_b^2) = 5 * 3
    assert float(fg.r1_penalty(ones, 10.0, backend=backend)) == pytest.approx(15.0, rel=1e-6)
    assert float(fg.r2_penalty(2 * ones, 1.0, backend=backend)) == pytest.approx(6.0, rel=1e-6)
    s3, s6 = math.sqrt(3), math.sqrt(6)
    g = torch.ones(2, 3, 4)  # sample norm sqrt(12), pixel norm sqrt(3), batch norm sqrt(24)
    cases = {  # (norm, center, one_sided, reduction) -> value
        ("sample", 1.0, False, "mean"): (math.sqrt(12) - 1) ** 2,
        ("sample", 1.0, False, "sum"): 2 * (math.sqrt(12) - 1) ** 2,
        ("pixel", 1.0, False, "mean"): (s3 - 1) ** 2,
        ("pixel", 1.0, False, "sum"): 8 * (s3 - 1) ** 2,
        ("batch", 1.0, False, "mean"): (math.sqrt(24) - 1) ** 2,
        ("sample", 5.0, False, "mean"): (math.sqrt(12) - 5) ** 2,
        ("sample", 5.0, True, "mean"): 0.0,  # one-sided: norms below the center cost nothing
        ("pixel", 1.0, True, "mean"): (s3 - 1) ** 2,
        ("batch", 6.0, True, "sum"): 0.0,
        ("batch", s6, False, "mean"): (math.sqrt(24) - s6) ** 2,
    }
    for (norm, center, one_sided, red), want in cases.items():
        got = fg.gradient_penalty(g, center=center, one_sided=one_sided, norm=norm, reduction=red, backend=backend)
        assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-7), (norm, center, one_sided, red, float(got))
    per = fg.gradient_penalty(torch.stack([torch.ones(3), torch.zeros(3)]), reduction="none", backend=backend)
    torch.testing.assert_close(per.double(), torch.tensor([(s3 - 1) ** 2, 1.0], dtype=torch.float64))


class _LinearD(torch.nn.Module):
    """D(x) = <a, x> per sample: its input gradient is ``a`` everywhere; records its inputs."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return (x * self.a).flatten(1).sum(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wgan_gp_weight_and_interpolation(backend):
    torch.manual_seed(5)
    a = torch.full((3, 4), 0.5)  # ||a|| = sqrt(3)
    D = _LinearD(a)
    real, fake = torch.randn(16, 3, 4), torch.randn(16, 3, 4) + 3.0
    got = fg.penalties.wgan_gp(D, real, fake, weight=2.5, backend=backend)
    assert float(got) == pytest.approx(2.5 * (math.sqrt(3) - 1) ** 2, rel=1e-5)
    x = D.seen[-1]
    u = ((x - fake) / (real - fake)).flatten(1)  # one u per sample, in [0, 1]
    assert torch.allclose(u, u[:, :1].expand_as(u), atol=1e-4)
    assert float(u.min()) >= -1e-5 and float(u.max()) <= 1 + 1e-5 and float(u.std()) > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_dragan_perturbation_scales_with_std_of_real(backend):
    torch.manual_seed(6)
    a = torch.full((3, 4), 0.5)
    D = _LinearD(a)
    real = torch.randn(32, 3, 4) * 40.0  # std(real) about 40
    got = fg.penalties.dragan(D, real, weight=3.0, noise_scale=0.5, backend=backend)
    assert float(got) == pytest.approx(3.0 * (math.sqrt(3) - 1) ** 2, rel=1e-5)
    d = D.seen[-1] - real  # = (1 - u) * 0.5 * std(real) * U[0, 1): in [0, 0.5 * std(real))
    bound = 0.5 * float(real.std())
    assert float(d.min()) >= -1e-4 and float(d.max()) <= bound * (1 + 1e-5)
    assert float(d.max()) > 0.5 * bound  # the noise is scaled by std(real), not by 1


# ---------------------------------------------------------------------------------------------
# Item 12.


def test_ganloss_validates_at_construction():
    with pytest.raises(ValueError, match="real_label"):
        fg.nn.GANLoss("wgan", real_label=0.9)
    with pytest.raises(ValueError, match="target"):
        fg.nn.GANLoss("hinge", target=0.5)
    with pytest.raises(ValueError, match="fake_label"):
        fg.nn.GANLoss("rsgan", fake_label=0.1)
    with pytest.raises(TypeError, match="real_label"):
        fg.nn.GANLoss("ns", real_label="0.9")
    with pytest.raises(ValueError, match="backend"):
        fg.nn.GANLoss("ns", backend="gpu")
    with pytest.raises(ValueError, match="reduction"):
        fg.nn.GANLoss("ns", reduction="avg")
    fg.nn.GANLoss("ns", real_label=0.9, fake_label=torch.tensor(0.1), target=0.95)  # fine
    fg.nn.GANLoss("ls", real_label=1.0, fake_label=-1.0, target=0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_reduction_none_is_float32(backend, dtype):
    x = torch.randn(5, 3).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        for kind in ("ns", "hinge", "ragan", "rsgan"):
            d = fg.discriminator_loss(x, x.flip(0), kind, reduction="none", backend=backend)
            for v in (d if isinstance(d, tuple) else (d,)):
                assert v.dtype == torch.float32, (kind, v.dtype)
            real = x if kind in fg.reference.RELATIVISTIC_KINDS else None
            g = fg.generator_loss(x, kind, real=real, reduction="none", backend=backend)
            for v in (g if isinstance(g, tuple) else (g,)):
                assert v.dtype == torch.float32, (kind, v.dtype)
        # the value is the float32 loss of the half logits, not a rounded one
        got = fg.generator_loss(x, "ns", reduction="none", backend=backend)
    want = fg.reference.generator_loss(x.double(), "ns", reduction="none")
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ("rsgan", "ragan", "ralsgan", "rahinge"))
def test_relativistic_mixed_precision_promotes(backend, kind):
    g = torch.Generator().manual_seed(12)
    r64 = torch.randn(7, generator=g, dtype=torch.float64) * 3
    f64 = torch.randn(7, generator=g, dtype=torch.float64) * 3
    for a, b in ((r64.float(), f64), (r64, f64.float())):  # one side float32, the other float64
        a64, b64 = a.double(), b.double()
        got = fg.discriminator_loss(a, b, kind, backend=backend)
        assert got.dtype == torch.float64, got.dtype
        torch.testing.assert_close(got, fg.reference.discriminator_loss(a64, b64, kind), rtol=1e-12, atol=1e-12)
        gg = fg.generator_loss(b, kind, real=a, backend=backend)
        assert gg.dtype == torch.float64, gg.dtype
        torch.testing.assert_close(gg, fg.reference.generator_loss(b64, kind, real=a64), rtol=1e-12, atol=1e-12)


def test_sparse_inputs_name_the_argument():
    sp = torch.randn(4).to_sparse()
    x = torch.randn(4)
    with pytest.raises(TypeError, match="fake"):
        fg.discriminator_loss(x, sp)
    with pytest.raises(TypeError, match="real_weight"):
        fg.discriminator_loss(x, x, real_weight=sp)
    with pytest.raises(TypeError, match="real_label"):
        fg.discriminator_loss(x, x, real_label=sp)
    with pytest.raises(TypeError, match="fake"):
        fg.generator_loss(sp)
    with pytest.raises(TypeError, match="g:"):
        fg.gradient_penalty(torch.randn(2, 3).to_sparse())


@pytest.mark.skipif(not backends.can_run("cpu", "cpu"), reason="needs the CPU extension")
def test_raw_op_checks_devices():
    x = torch.randn(4)
    lab = torch.empty(4, device="meta")
    with pytest.raises(RuntimeError, match="labels"):
        torch.ops.fusedgan.loss_terms([x], [lab], [None], [0], [1.0], [1.0], 1, [True])
    with pytest.raises(RuntimeError, match="weights"):
        torch.ops.fusedgan.loss_terms([x], [None], [lab], [0], [1.0], [1.0], 1, [True])


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_bit_penalty_gradient(backend):
    g0 = torch.randn(3, 4)
    gn = torch._neg_view(g0.neg()).requires_grad_(True)  # same values as g0, negative bit set
    g = g0.clone().requires_grad_(True)
    for fn in (lambda t: fg.gradient_penalty(t, backend=backend), lambda t: fg.r1_penalty(t, backend=backend)):
        (a,) = torch.autograd.grad(fn(gn), gn)
        (b,) = torch.autograd.grad(fn(g), g)
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# Item 4: every public function traces with torch.compile(fullgraph=True, dynamic=True).


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_dynamic_fullgraph(backend):
    if backend == "triton":  # the interpreter runs kernels on real data: nothing to trace on CPU
        pytest.skip("torch.compile of Triton kernels needs CUDA (tests/test_compile.py covers it there)")
    torch._dynamo.reset()

    def step(r, f, g, center, gamma, w):
        d = fg.discriminator_loss(r, f, "ns", real_label=0.9, backend=backend)
        gl = fg.generator_loss(f, "ragan", real=r, backend=backend)
        p = w * fg.gradient_penalty(g, center=center, backend=backend) + fg.r1_penalty(g, gamma, backend=backend)
        return d + gl + p

    compiled = torch.compile(step, fullgraph=True, dynamic=True)
    for n, center, gamma, w in ((6, 1.0, 10.0, 2.0), (9, 0.5, 3.0, 1.5)):
        r, f, g = torch.randn(n), torch.randn(n + 1), torch.randn(n, 3)
        torch.testing.assert_close(compiled(r, f, g, center, gamma, w), step(r, f, g, center, gamma, w))


# ---------------------------------------------------------------------------------------------
# Item 9: tensor labels and weights are read in their own precision (the acc dtype: float32 for
# half logits), never rounded to the logits' dtype: an fp32 label 0.9 or weight 1.001 beside
# bf16 / fp16 logits gives an fp32-level loss (rounded to bf16 they gave 1e-3 relative error).
# The yardstick: the fp64 reference with the exact fp32 values.

_LABEL, _WEIGHT = 0.9, 1.001  # neither is a bf16 or fp16 number
_ITEM9_RTOL = 3e-6  # fp32 level (measured <= 1.3e-6); rounded operands gave 7e-6 (fp16) to 1e-3 (bf16)


def _item9_logits(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    r, f = (torch.randn(6, 11, generator=g, dtype=_F64) * 2 for _ in range(2))
    return r.to(dtype), f.to(dtype)


def _item9_operand(value, mode, like):
    """value as an fp32 tensor: one element ("scalar") or one per logit ("full")."""
    shape = (1,) if mode == "scalar" else like.shape
    return torch.full(shape, value, dtype=_F32)


def _rel_err(got, want) -> float:
    return abs(got.double().item() - want.item()) / max(abs(want.item()), 1e-300)


def _item9_cases(r, f, mode):
    """(what, loss(backend), fp64 reference loss) of every term that reads a label or weight."""
    lab = _item9_operand(_LABEL, mode, r)
    flab = _item9_operand(1 - _LABEL, mode, f)
    rw, fw = _item9_operand(_WEIGHT, mode, r), _item9_operand(_WEIGHT, mode, f)
    d64 = lambda t: t.double()  # noqa: E731  (the exact fp32 values)
    R = fg.reference
    for red in ("mean", "sum"):
        for kind in ("ns", "mm", "ls"):  # the kinds whose terms read a label
            yield (f"{kind} D labels {red}",
                   lambda b, kind=kind, red=red: fg.discriminator_loss(
                       r, f, kind, reduction=red, real_label=lab, fake_label=flab, backend=b),
                   R.discriminator_loss(d64(r), d64(f), kind, reduction=red, real_label=d64(lab).expand_as(r),
                                        fake_label=d64(flab).expand_as(f)))
        yield (f"ls G target {red}",
               lambda b, red=red: fg.generator_loss(f, "ls", reduction=red, target=lab, backend=b),
               R.generator_loss(d64(f), "ls", reduction=red, target=d64(lab).expand_as(f)))
        for kind in ALL_KINDS:
            if kind == "rsgan":  # takes no weights
                continue
            yield (f"{kind} D weights {red}",
                   lambda b, kind=kind, red=red: fg.discriminator_loss(
                       r, f, kind, reduction=red, real_weight=rw, fake_weight=fw, backend=b),
                   R.discriminator_loss(d64(r), d64(f), kind, reduction=red, real_weight=d64(rw).expand_as(r),
                                        fake_weight=d64(fw).expand_as(f)))
            if kind not in fg.reference.RELATIVISTIC_KINDS:
                yield (f"{kind} G weight {red}",
                       lambda b, kind=kind, red=red: fg.generator_loss(f, kind, reduction=red, weight=fw, backend=b),
                       R.generator_loss(d64(f), kind, reduction=red, weight=d64(fw).expand_as(f)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["scalar", "full"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fp32_labels_and_weights_keep_their_precision(backend, mode, dtype):
    r, f = _item9_logits(dtype, 9)
    bad = []
    for what, run, want in _item9_cases(r, f, mode):
        got = run(backend)
        assert got.dtype == _F32, f"{what}: loss dtype {got.dtype}"
        err = _rel_err(got, want)
        if not err <= _ITEM9_RTOL:
            bad.append(f"{what}: relative error {err:.2e}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_raw_op_reads_fp32_operands_of_half_logits(backend, dtype):
    """fusedgan::loss_terms (or its Triton twin) itself: an fp32 label / weight beside half logits
    is read as is (and a half one, as before, exactly)."""
    op = torch.ops.fusedgan.triton_loss_terms if backend == "triton" else torch.ops.fusedgan.loss_terms
    r, _ = _item9_logits(dtype, 10)
    x = r.reshape(-1)
    lab32, w32 = torch.full_like(x, _LABEL, dtype=_F32), torch.full((1,), _WEIGHT, dtype=_F32)
    for lab, w in ((lab32, w32), (lab32.to(dtype), w32.to(dtype))):
        total = op([x], [lab], [w], [int(fg.codes.Elem.BCE)], [0.0], [1.0],
                                              int(fg.codes.Reduction.MEAN), [True])[0]
        want = fg.reference.loss_terms([x.double()], [lab.double()], [w.double()], [int(fg.codes.Elem.BCE)],
                                       [0.0], [1.0], int(fg.codes.Reduction.MEAN))[0]
        assert _rel_err(total, want) <= _ITEM9_RTOL, f"labels {lab.dtype}: {_rel_err(total, want):.2e}"


@pytest.mark.skipif(not backends.can_run("cpu", "cpu"), reason="needs the CPU extension")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_drop_in_bce_fp32_target_and_weight_of_half_input(dtype):
    """torch's dtype rule (item 11) and torch's accuracy: fp32 target 0.9, weight and pos_weight
    1.001 beside a half input, against torch in fp64 on the same values."""
    r, _ = _item9_logits(dtype, 11)
    t = torch.full(r.shape, _LABEL, dtype=_F32)
    w = torch.full(r.shape[-1:], _WEIGHT, dtype=_F32)
    for red in ("mean", "sum"):
        for pw in (None, w):
            got = fg.compat.binary_cross_entropy_with_logits(r, t, w, reduction=red, pos_weight=pw)
            want = _torch_bce(r, t, w, reduction=red, pos_weight=pw)
            ref = _torch_bce(r.double(), t.double(), w.double(), reduction=red,
                             pos_weight=None if pw is None else pw.double())
            assert got.dtype == want.dtype
            _ulp_err_ok(got, want, ref, f"bce {dtype} {red} pos_weight={pw is not None}")
            assert _rel_err(got, ref) <= _ITEM9_RTOL, f"bce {dtype} {red}: {_rel_err(got, ref):.2e}"
    got = fg.compat.mse_loss(r, t)
    assert _rel_err(got, _torch_mse(r.double(), t.double())) <= _ITEM9_RTOL


class _Casts(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the dtype conversions (aten::_to_copy) and the dtypes the loss kernel received."""

    def __init__(self):
        super().__init__()
        self.casts, self.kernel = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if name.startswith("aten::_to_copy"):
            self.casts.append((args[0].dtype, (kwargs or {}).get("dtype")))
        elif name.split(".")[0] in ("fusedgan::loss_terms", "fusedgan::triton_loss_terms"):
            self.kernel.append([[None if t is None else t.dtype for t in ts] for ts in args[:3]])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_fp32_operands_of_half_logits_are_not_copied(backend):
    """An fp32 label / weight / target beside bf16 logits reaches the kernel as is, and so do the
    logits: no cast pass over any of them (forward)."""
    r, f = _item9_logits(torch.bfloat16, 12)
    lab, w = torch.full(r.shape, _LABEL, dtype=_F32), torch.full(r.shape, _WEIGHT, dtype=_F32)
    bf, f32 = torch.bfloat16, _F32
    calls = (
        (lambda: fg.discriminator_loss(r, f, "ls", real_label=lab, real_weight=w, backend=backend),
         [[bf, bf], [f32, None], [f32, None]]),
        (lambda: fg.compat.binary_cross_entropy_with_logits(r, lab, w), [[bf], [f32], [f32]]),
        (lambda: fg.compat.binary_cross_entropy_with_logits(r, lab, reduction="sum"), [[bf], [f32], [None]]),
        (lambda: fg.compat.mse_loss(r, lab), [[bf], [f32], [None]]),
    )
    with fg.use_backend(backend):
        for i, (call, want) in enumerate(calls):
            with _Casts() as rec:
                call()
            assert rec.kernel == [want], f"call {i}: the kernel received {rec.kernel}"
            assert rec.casts == [], f"call {i}: casts {rec.casts}"


# ---------------------------------------------------------------------------------------------
# Many terms with tensor operands: the CPU op kept a reference into the vector of the tensors it
# keeps alive, which the label/weight operands grow ("tensor does not have a device" past 8).


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_scales_with_tensor_labels(backend):
    g = torch.Generator().manual_seed(17)
    rs = [torch.randn(5 + i, generator=g) for i in range(5)]  # 10 terms, each with a label tensor
    fs = [torch.randn(3 + i, generator=g) for i in range(5)]
    lab_r, lab_f = torch.tensor(0.9), torch.tensor(0.1)
    got = fg.discriminator_loss(rs, fs, "ls", real_label=lab_r, fake_label=lab_f, backend=backend)
    # by hand: the mean over scales of mean (r - 0.9)^2 / 2 + mean (f - 0.1)^2 / 2
    want = sum(((r.double() - 0.9) ** 2 / 2).mean() + ((f.double() - 0.1) ** 2 / 2).mean()
               for r, f in zip(rs, fs)) / 5
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    x = [torch.randn(4, generator=g) for _ in range(3)]  # 3 terms, each with a label and a weight
    labels = [torch.rand(4, generator=g) for _ in range(3)]
    weights = [torch.rand(4, generator=g) for _ in range(3)]
    if backend != "reference":
        out = torch.ops.fusedgan.gan_loss(x, labels, weights, [0, 1, 2], [0.0] * 3, [1.0] * 3, 1, False,
                                          backend == "triton")
        want = fg.reference.loss_terms([t.double() for t in x], [t.double() for t in labels],
                                       [t.double() for t in weights], [0, 1, 2], [0.0] * 3, [1.0] * 3, 1)
        torch.testing.assert_close(out[0].double(), want[0], rtol=1e-6, atol=1e-6)
