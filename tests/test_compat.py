"""fusedgan.compat: torch-compatible losses, patching, and library-compatible GAN losses.

Every number is checked against torch's own function or against a plain-PyTorch restatement of
the library's formula written below; tests that claim the fused path ran check the operators
that actually ran (``helpers.OpRecorder``: the fused kernel reached the dispatcher) and skip
(saying why) where no fused backend is built.
"""
from __future__ import annotations

import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F

import fusedgan
from fusedgan import backends, compat
from helpers import OpRecorder, loss_kernel

FUSED = [n for n in ("cpu", "triton") if n in backends.available_backends("cpu")]
ALL = FUSED + ["reference"]


@pytest.fixture
def fused():
    """The fused CPU backend, forced for the test; skips where none is built."""
    if not FUSED:
        pytest.skip("no fused CPU backend here (fusedgan._C not built and Triton interpreter off)")
    global _RECORDER
    with backends.use_backend(FUSED[0]), OpRecorder() as _RECORDER:
        yield FUSED[0]
    _RECORDER = None


_RECORDER = None


def assert_fused(name):
    """The fused kernel of backend ``name`` ran since the test began (or since the last check)."""
    ran = _RECORDER.take()
    assert loss_kernel(name) in ran, f"expected fused backend {name!r}'s kernel to run; ran {sorted(ran)}"


def grads(out, inputs):
    return torch.autograd.grad(out.sum(), [t for t in inputs if t.requires_grad], allow_unused=True)


def close(a, b, **kw):
    torch.testing.assert_close(a, b, **kw)


# ---------------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits


WEIGHTS = {
    "none": lambda shape, dt: None,
    "full": lambda shape, dt: torch.rand(shape, dtype=dt) + 0.5,
    "per_col": lambda shape, dt: torch.rand(shape[-1], dtype=dt) + 0.5,
    "scalar": lambda shape, dt: torch.tensor(0.7, dtype=dt),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", list(WEIGHTS))
@pytest.mark.parametrize("pos_weight", [None, "per_col", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_matches_torch(fused, reduction, weight, pos_weight, dtype):
    torch.manual_seed(0)
    shape = (5, 4)
    x = (torch.randn(shape, dtype=dtype) * 4).requires_grad_()
    t = torch.rand(shape, dtype=dtype).requires_grad_()
    w = WEIGHTS[weight](shape, dtype)
    p = None if pos_weight is None else WEIGHTS[pos_weight](shape, dtype) * 3
    got = compat.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=p)
    assert_fused(fused)
    want = F.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=p)
    assert got.dtype == want.dtype and got.shape == want.shape
    close(got, want)
    for g, h in zip(grads(got, [x, t]), grads(want, [x, t])):
        close(g, h)


@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("p", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("x", [-1e4, -30.0, -1.0, 0.0, 2.0, 30.0, 1e4])
def test_bce_pos_weight_edge_cases(fused, x, t, p):
    """Hard labels, p = 0 (the point where folding pos_weight into the label is undefined), and
    saturated logits: value and gradient equal torch's float64 result."""
    xs = torch.tensor([x], requires_grad=True)
    ts, ps = torch.tensor([t]), torch.tensor([p])
    got = compat.binary_cross_entropy_with_logits(xs, ts, pos_weight=ps, reduction="sum")
    assert_fused(fused)
    x64 = xs.detach().double().requires_grad_()
    want = F.binary_cross_entropy_with_logits(x64, ts.double(), pos_weight=ps.double(), reduction="sum")
    assert torch.isfinite(got)
    close(got.double(), want, rtol=2e-6, atol=1e-6)
    close(grads(got, [xs])[0].double(), grads(want, [x64])[0], rtol=2e-6, atol=1e-6)


def test_bce_pos_weight_soft_labels_near_one(fused):
    """The (1-t)*sp(x) part keeps its digits for soft labels near 1 and large positive logits."""
    x = torch.full((64,), 40.0)
    t = 1 - torch.logspace(-7, -1, 64)
    p = torch.full((64,), 2.0)
    got = compat.binary_cross_entropy_with_logits(x, t, pos_weight=p, reduction="none")
    assert_fused(fused)
    want = F.binary_cross_entropy_with_logits(x.double(), t.double(), pos_weight=p.double(), reduction="none")
    torch_err = (F.binary_cross_entropy_with_logits(x, t, pos_weight=p, reduction="none").double() - want).abs()
    our_err = (got.double() - want).abs()
    assert bool((our_err <= 2 * torch_err + 4 * torch.finfo(torch.float32).eps * want.abs()).all())


def test_bce_pos_weight_requires_grad_raises_like_torch():
    x, t = torch.randn(3, requires_grad=True), torch.rand(3)
    p = torch.rand(3, requires_grad=True)
    with pytest.raises(RuntimeError) as theirs:
        F.binary_cross_entropy_with_logits(x, t, pos_weight=p)
    with pytest.raises(RuntimeError) as ours:
        compat.binary_cross_entropy_with_logits(x, t, pos_weight=p)
    assert str(ours.value) == str(theirs.value)


def test_bce_double_backward(fused):
    """Gradient penalties through the loss: second derivatives equal torch's."""
    torch.manual_seed(1)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    t, p = torch.rand(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) * 2
    out = []
    for fn in (compat.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        (g,) = torch.autograd.grad(fn(x, t, pos_weight=p), x, create_graph=True)
        out.append(torch.autograd.grad(g.pow(2).sum(), x)[0])
    close(out[0], out[1])


# ---------------------------------------------------------------------------------------------
# mse_loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mse_matches_torch(fused, reduction, weighted, dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 7, dtype=dtype, requires_grad=True)
    t = torch.randn(3, 7, dtype=dtype, requires_grad=True)
    w = torch.rand(3, 7, dtype=dtype) + 0.1 if weighted else None
    got = compat.mse_loss(x, t, reduction=reduction, weight=w)
    assert_fused(fused)
    want = F.mse_loss(x, t, reduction=reduction, weight=w)
    assert got.dtype == want.dtype and got.shape == want.shape
    close(got, want)
    for g, h in zip(grads(got, [x, t]), grads(want, [x, t])):
        close(g, h)


@pytest.mark.parametrize("xs, ts", [((4, 3), (3,)), ((4, 1), (4, 3)), ((1,), (5,))])
def test_mse_broadcasting_warns_like_torch(fused, xs, ts):
    x = torch.randn(xs, requires_grad=True)
    t = torch.randn(ts, requires_grad=True)
    for reduction in ("mean", "none"):
        with pytest.warns(UserWarning, match="different to the input size") as ours:
            got = compat.mse_loss(x, t, reduction=reduction)
        assert_fused(fused)
        with pytest.warns(UserWarning, match="different to the input size") as theirs:
            want = F.mse_loss(x, t, reduction=reduction)
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
        close(got, want)
        for g, h in zip(grads(got, [x, t]), grads(want, [x, t])):
            close(g, h)


# ---------------------------------------------------------------------------------------------
# Shared torch semantics: legacy arguments, errors, empty and 0-dim tensors, dtypes


FUNCS = [
    (compat.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
    (compat.mse_loss, F.mse_loss),
]
FUNC_IDS = ["bce", "mse"]


@pytest.mark.parametrize("ours, theirs", FUNCS, ids=FUNC_IDS)
@pytest.mark.parametrize("size_average", [None, True, False])
@pytest.mark.parametrize("reduce", [None, True, False])
def test_legacy_size_average_reduce(ours, theirs, size_average, reduce):
    x, t = torch.randn(4, 3), torch.rand(4, 3)
    with warnings.catch_warnings(record=True) as got_w:
        warnings.simplefilter("always")
        got = ours(x, t, size_average=size_average, reduce=reduce)
    with warnings.catch_warnings(record=True) as want_w:
        warnings.simplefilter("always")
        want = theirs(x, t, size_average=size_average, reduce=reduce)
    close(got, want)
    assert [str(w.message) for w in got_w] == [str(w.message) for w in want_w]


def _raises_like(ours, theirs, *args, **kw):
    with pytest.raises(Exception) as want:
        theirs(*args, **kw)
    with pytest.raises(type(want.value)) as got:
        ours(*args, **kw)
    assert str(got.value) == str(want.value)


def test_bce_errors_like_torch():
    x = torch.randn(4, 3)
    bce = compat.binary_cross_entropy_with_logits
    _raises_like(bce, F.binary_cross_entropy_with_logits, x, torch.rand(4))  # target shape
    _raises_like(bce, F.binary_cross_entropy_with_logits, x, torch.rand(4, 3), torch.rand(2, 3))  # weight
    _raises_like(bce, F.binary_cross_entropy_with_logits, x, torch.rand(4, 3), pos_weight=torch.rand(2))
    _raises_like(bce, F.binary_cross_entropy_with_logits, x, torch.rand(4, 3), reduction="avg")
    _raises_like(bce, F.binary_cross_entropy_with_logits, x, torch.ones(4, 3, dtype=torch.long))


def test_mse_errors_like_torch():
    x = torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _raises_like(compat.mse_loss, F.mse_loss, x, torch.rand(5))  # not broadcastable
    _raises_like(compat.mse_loss, F.mse_loss, x, torch.rand(4, 3), weight=torch.rand(3))
    _raises_like(compat.mse_loss, F.mse_loss, x, torch.rand(4, 3), reduction="avg")


@pytest.mark.parametrize("ours, theirs", FUNCS, ids=FUNC_IDS)
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), ()])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_and_zero_dim(ours, theirs, shape, reduction):
    x = torch.randn(shape, requires_grad=True)
    t = torch.rand(shape, requires_grad=True)
    got, want = ours(x, t, reduction=reduction), theirs(x, t, reduction=reduction)
    assert got.shape == want.shape and got.dtype == want.dtype
    close(got, want, equal_nan=True)
    for g, h in zip(grads(got, [x, t]), grads(want, [x, t])):
        close(g, h, equal_nan=True)


@pytest.mark.parametrize("ours, theirs", FUNCS, ids=FUNC_IDS)
@pytest.mark.parametrize("xd, td", [(torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32),
                                    (torch.float16, torch.float16), (torch.float32, torch.float64)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_output_dtype_like_torch(ours, theirs, xd, td, reduction):
    torch.manual_seed(0)
    x, t = torch.randn(8, 5).to(xd), torch.rand(8, 5).to(td)
    got, want = ours(x, t, reduction=reduction), theirs(x, t, reduction=reduction)
    assert got.dtype == want.dtype
    exact = theirs(x.double(), t.double(), reduction=reduction)
    # torch computes some mixed-dtype cases at the input's precision; never be less accurate
    eps = torch.finfo(want.dtype).eps
    assert bool(((got.double() - exact).abs() <= 2 * (want.double() - exact).abs() + 2 * eps * exact.abs() + 1e-7).all())


def test_non_contiguous(fused):
    x = torch.randn(6, 8, requires_grad=True)
    t = torch.rand(8, 6).t()
    got = compat.binary_cross_entropy_with_logits(x.t().t(), t)
    assert_fused(fused)
    close(got, F.binary_cross_entropy_with_logits(x, t))
    close(compat.mse_loss(x[:, ::2], t[:, ::2]), F.mse_loss(x[:, ::2], t[:, ::2]))


def test_reference_backend_is_torch():
    x, t = torch.randn(4), torch.rand(4)
    with backends.use_backend("reference"):
        assert torch.equal(compat.binary_cross_entropy_with_logits(x, t), F.binary_cross_entropy_with_logits(x, t))
        assert torch.equal(compat.mse_loss(x, t), F.mse_loss(x, t))


# ---------------------------------------------------------------------------------------------
# Modules


def test_modules_are_torch_modules(fused):
    p, w = torch.rand(3), torch.rand(3)
    ours, theirs = compat.BCEWithLogitsLoss(w, reduction="sum", pos_weight=p), torch.nn.BCEWithLogitsLoss(
        w, reduction="sum", pos_weight=p)
    assert isinstance(ours, torch.nn.BCEWithLogitsLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x, t = torch.randn(2, 3), torch.rand(2, 3)
    close(ours(x, t), theirs(x, t))
    assert_fused(fused)
    mse = compat.MSELoss(reduction="none")
    assert isinstance(mse, torch.nn.MSELoss) and repr(mse) == "MSELoss()"
    close(mse(x, t), torch.nn.MSELoss(reduction="none")(x, t))
    assert_fused(fused)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert compat.MSELoss(size_average=False).reduction == "sum"


# ---------------------------------------------------------------------------------------------
# Patching


def test_patch_unpatch_idempotent_and_reversible():
    originals = (F.binary_cross_entropy_with_logits, F.mse_loss, torch.nn.BCEWithLogitsLoss, torch.nn.MSELoss)
    assert not compat.is_patched()
    try:
        compat.patch_torch()
        compat.patch_torch()
        assert compat.is_patched()
        assert F.mse_loss is compat.mse_loss and torch.nn.MSELoss is compat.MSELoss
        assert torch.nn.functional.binary_cross_entropy_with_logits is compat.binary_cross_entropy_with_logits
        assert torch.nn.BCEWithLogitsLoss is compat.BCEWithLogitsLoss
    finally:
        compat.unpatch_torch()
    compat.unpatch_torch()
    assert not compat.is_patched()
    assert (F.binary_cross_entropy_with_logits, F.mse_loss, torch.nn.BCEWithLogitsLoss, torch.nn.MSELoss) == originals


def test_patched_context_nests():
    with compat.patched():
        with compat.patched():
            assert compat.is_patched()
        assert compat.is_patched()
    assert not compat.is_patched()
    compat.patch_torch()
    try:
        with compat.patched():
            pass
        assert compat.is_patched()  # patched before the block: stays patched
    finally:
        compat.unpatch_torch()


def test_unmodified_script_runs_fused(fused):
    """A script written against plain torch (modules made before or after patching) runs fused."""
    early = torch.nn.BCEWithLogitsLoss()
    x, t = torch.randn(4, 2, requires_grad=True), torch.rand(4, 2)
    want = early(x, t)
    with compat.patched():
        crit = torch.nn.BCEWithLogitsLoss()
        assert type(crit) is compat.BCEWithLogitsLoss
        backends._last_used = None
        close(crit(x, t), want)
        assert_fused(fused)
        backends._last_used = None
        close(early(x, t), want)  # torch's module looks F.* up at call time
        assert_fused(fused)
        close(torch.nn.functional.mse_loss(x, t), torch.mean((x - t) ** 2))
        assert_fused(fused)


def test_patch_survives_torch_function_modes():
    """torch's own F.* dispatch to a TorchFunctionMode hands our function back: no recursion."""
    from torch.overrides import TorchFunctionMode

    seen = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    x, t = torch.randn(3), torch.rand(3)
    with compat.patched(), Spy():
        got = F.binary_cross_entropy_with_logits(x, t)
    close(got, torch.nn.functional.binary_cross_entropy_with_logits(x, t))
    assert "binary_cross_entropy_with_logits" in seen


# ---------------------------------------------------------------------------------------------
# Library-compatible GAN losses, against restatements of the libraries' formulas


def cyclegan_formula(mode, pred, is_real, real_label=1.0, fake_label=0.0):
    """CycleGAN/pix2pix GANLoss: label buffers (float32) expanded to the prediction."""
    label = torch.tensor(real_label if is_real else fake_label).expand_as(pred)
    if mode == "lsgan":
        return torch.mean((pred.float() - label) ** 2) if pred.dtype != torch.float64 else torch.mean((pred - label) ** 2)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, label.to(pred.dtype)).to(torch.promote_types(pred.dtype, torch.float32))
    return -pred.mean() if is_real else pred.mean()


def basicsr_formula(gan_type, pred, is_real, is_disc, real=1.0, fake=0.0, loss_weight=1.0):
    """BasicSR GANLoss: labels built as input.new_ones(size) * value; loss_weight for G only."""
    label = pred.new_ones(pred.size()) * (real if is_real else fake)
    if gan_type == "vanilla":
        loss = torch.mean(label * F.softplus(-pred) + (1 - label) * F.softplus(pred))
    elif gan_type == "lsgan":
        loss = torch.mean((pred - label) ** 2)
    elif gan_type == "wgan":
        loss = -pred.mean() if is_real else pred.mean()
    elif gan_type == "wgan_softplus":
        loss = F.softplus(-pred).mean() if is_real else F.softplus(pred).mean()
    elif is_disc:  # hinge
        loss = F.relu(1 + (-pred if is_real else pred)).mean()
    else:
        loss = -pred.mean()
    return loss if is_disc else loss * loss_weight


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "wgangp"])
@pytest.mark.parametrize("is_real", [True, False])
def test_cyclegan_loss(backend, mode, is_real):
    torch.manual_seed(0)
    pred = torch.randn(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)  # PatchGAN map
    loss = compat.CycleGANLoss(mode, target_real_label=0.9, target_fake_label=0.1)
    with backends.use_backend(backend):
        got = loss(pred, is_real)
    assert backends.last_used() == backend
    want = cyclegan_formula(mode, pred, is_real, 0.9, 0.1)
    close(got, want)
    close(grads(got, [pred])[0], grads(want, [pred])[0])
    assert set(dict(loss.named_buffers())) == {"real_label", "fake_label"}


def test_cyclegan_loss_dtypes_and_errors():
    pred = torch.randn(4, 4).bfloat16()
    assert compat.CycleGANLoss("lsgan")(pred, True).dtype == torch.float32
    assert compat.CycleGANLoss("vanilla")(pred, False).dtype == torch.float32
    assert compat.CycleGANLoss("wgangp")(pred, True).dtype == torch.bfloat16
    close(compat.CycleGANLoss("lsgan")(pred, True), cyclegan_formula("lsgan", pred, True))
    with pytest.raises(NotImplementedError, match="gan mode hinge not implemented"):
        compat.CycleGANLoss("hinge")


BASICSR_TYPES = ["vanilla", "lsgan", "wgan", "wgan_softplus", "hinge"]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("gan_type", BASICSR_TYPES)
@pytest.mark.parametrize("is_real", [True, False])
@pytest.mark.parametrize("is_disc", [True, False])
def test_basicsr_loss(backend, gan_type, is_real, is_disc):
    torch.manual_seed(0)
    pred = torch.randn(3, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    loss = compat.BasicSRGANLoss(gan_type, real_label_val=0.95, fake_label_val=0.05, loss_weight=5e-3)
    with backends.use_backend(backend):
        got = loss(pred, is_real, is_disc=is_disc)
    assert backends.last_used() == backend
    want = basicsr_formula(gan_type, pred, is_real, is_disc, 0.95, 0.05, 5e-3)
    close(got, want)
    close(grads(got, [pred])[0], grads(want, [pred])[0])


@pytest.mark.parametrize("gan_type", BASICSR_TYPES)
def test_basicsr_loss_half_labels(gan_type):
    """The library rounds labels to the input's dtype; so do we (bf16 input, bf16 result)."""
    pred = torch.randn(64).bfloat16()
    got = compat.BasicSRGANLoss(gan_type, 0.9, 0.1)(pred, True, is_disc=True)
    assert got.dtype == torch.bfloat16
    want = basicsr_formula(gan_type, pred.double(), True, True, float(torch.tensor(0.9).bfloat16()), 0.1)
    close(got.double(), want, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("gan_type", BASICSR_TYPES)
@pytest.mark.parametrize("is_disc", [True, False])
def test_basicsr_multiscale(backend, gan_type, is_disc):
    """A list of predictions, and a list of feature lists whose last entry is the prediction."""
    torch.manual_seed(0)
    preds = [torch.randn(2, 1, s, s, dtype=torch.float64, requires_grad=True) for s in (8, 4, 2)]
    feats = [[torch.randn(2, 3, 4, 4, dtype=torch.float64), p] for p in preds]
    loss = compat.BasicSRMultiScaleGANLoss(gan_type, loss_weight=0.1)
    for inp in (preds, feats):
        with backends.use_backend(backend):
            got = loss(inp, False, is_disc=is_disc)
        assert backends.last_used() == backend
        want = sum(basicsr_formula(gan_type, p, False, is_disc, loss_weight=0.1).mean() for p in preds) / len(preds)
        close(got, want)
        for g, h in zip(grads(got, preds), grads(want, preds)):
            close(g, h)
    close(loss(preds[0], True, is_disc), basicsr_formula(gan_type, preds[0], True, is_disc, loss_weight=0.1))


def test_basicsr_unknown_type():
    with pytest.raises(NotImplementedError, match="GAN type ragan is not implemented."):
        compat.BasicSRGANLoss("ragan")


def test_info_reports_patching():
    """``fusedgan.info()`` reports whether torch is patched (once info.py reads compat.is_patched)."""
    info = importlib.import_module("fusedgan.info")
    d = info.info_dict()
    if "torch_patched" not in d:
        pytest.skip("fusedgan.info() does not report patching yet (info.py change pending)")
    assert d["torch_patched"] is False
    with compat.patched():
        d = info.info_dict()
        assert d["torch_patched"] is True


