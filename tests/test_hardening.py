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
    """Every backend that runs on CPU tensors in this process."""
    return [b for b in ("reference", "cpu", "triton") if backends.can_run(b, "cpu")]


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
                rx = r.to(dtype).requires_grad_(True)
                fx = f.to(dtype).requires_grad_(True)
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

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

_F16, _BF16, _F32, _F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
_DT = (_F16, _BF16, _F32, _F64)
_torch_bce = fg.compat._torch_bce
_torch_mse = fg.compat._torch_mse


class _OpRecorder(TorchDispatchMode):
    """Names of the fusedgan:: operators that reached the dispatcher below autograd."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if name.startswith("fusedgan::"):
            self.names.add(name.split(".")[0])
        return func(*args, **(kwargs or {}))


def fused_ops(fn):
    """(result of fn(), set of fusedgan:: kernel operators that ran)."""
    with _OpRecorder() as rec:
        out = fn()
    return out, rec.names


def _ulp_err_ok(got, torch_out, ref64, what):
    """got's error against the fp64 value is at most torch's own, plus one ulp of the result."""
    assert got.dtype == torch_out.dtype, f"{what}: dtype {got.dtype}, torch gives {torch_out.dtype}"
    e = (got.double() - ref64).abs().max().item()
    e_t = (torch_out.double() - ref64).abs().max().item()
    ulp = torch.finfo(got.dtype).eps * ref64.abs().max().item()
    assert math.isfinite(e) and e <= e_t + ulp + 1e-300, f"{what}: error {e:.3e} > torch's {e_t:.3e} + ulp {ulp:.3e}"


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
