"""Multi-scale discriminator losses and feature matching: lists of tensors in one operator call."""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from fusedgan import backends, reference
from helpers import fused_backends, logits, ran_ops

BACKENDS = fused_backends() + ["reference"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# three scales of mixed sizes (a PatchGAN pyramid), one odd, one a single element
REAL_SHAPES = [(2, 1, 9, 9), (2, 1, 5, 4), (1,)]
FAKE_SHAPES = [(3, 1, 9, 9), (2, 1, 5, 4), (1,)]


def tensors(shapes, dtype, seed, grad=True):
    out = []
    for i, s in enumerate(shapes):
        x = logits(s, torch.float64, seed=seed + i).to(dtype)
        if i == 0:  # one non-contiguous scale
            x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
        out.append(x.requires_grad_(grad))
    return out


def tol(dtype):
    return dict(rtol=1e-11, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)


def grad_tol(dtype, ref):
    scale = max(float(ref.abs().max()), 1e-6) if ref.numel() else 1.0
    if dtype in (torch.float32, torch.float64):
        return tol(dtype)["rtol"], tol(dtype)["atol"] * scale
    return 2e-2, 4 * torch.finfo(dtype).eps * scale


def oracle_d(reals, fakes, kind, weights, scale_reduction):
    w = weights or [1.0] * len(reals)
    div = len(reals) if scale_reduction == "mean" else 1
    per = [wi / div * reference.discriminator_loss(r, f, kind) for r, f, wi in zip(reals, fakes, w)]
    return sum(per), torch.stack(per)


def check_d(backend, kind, dtype, scale_weights, scale_reduction, rs=REAL_SHAPES, fs=FAKE_SHAPES):
    reals, fakes = tensors(rs, dtype, 1), tensors(fs, dtype, 11)
    r64 = [x.detach().double().requires_grad_(True) for x in reals]
    f64 = [x.detach().double().requires_grad_(True) for x in fakes]
    loss, per, _ = fg.discriminator_loss(reals, fakes, kind, scale_weights=scale_weights,
                                      scale_reduction=scale_reduction, return_per_scale=True, backend=backend)
    assert backends.last_used() == backend
    ref, ref_per = oracle_d(r64, f64, kind, scale_weights, scale_reduction)
    torch.testing.assert_close(loss.double(), ref, **tol(dtype))
    torch.testing.assert_close(per.double(), ref_per.detach(), **tol(dtype))
    assert per.shape == (len(reals),) and not per.requires_grad
    got = torch.autograd.grad(loss, reals + fakes)
    want = torch.autograd.grad(ref, r64 + f64)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        rtol, atol = grad_tol(dtype, b)
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ns", "ls", "hinge", "wgan", "ragan", "rahinge"])
def test_discriminator_scales(kind, dtype, backend):
    check_d(backend, kind, dtype, None, "mean")
    check_d(backend, kind, dtype, [1.0, 0.5, 0.25], "sum")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["ns", "mm", "ls", "hinge", "ragan", "rsgan"])
def test_generator_scales(kind, backend):
    shapes = [(2, 1, 7, 7), (2, 1, 3, 3)]
    fakes = tensors(shapes, torch.float32, 21)
    reals = tensors(shapes, torch.float32, 31) if kind in fg.kinds.RELATIVISTIC else None
    kw = {"real": reals} if reals else {}
    loss, per, _ = fg.generator_loss(fakes, kind, scale_reduction="sum", scale_weights=(2.0, 1.0),
                                  return_per_scale=True, backend=backend, **kw)
    f64 = [x.detach().double().requires_grad_(True) for x in fakes]
    r64 = [x.detach().double().requires_grad_(True) for x in reals] if reals else [None] * len(fakes)
    per_ref = [w * reference.generator_loss(f, kind, real=r) for f, r, w in zip(f64, r64, (2.0, 1.0))]
    torch.testing.assert_close(loss.double(), sum(per_ref), **tol(torch.float32))
    torch.testing.assert_close(per.double(), torch.stack(per_ref).detach(), **tol(torch.float32))
    inputs = fakes + (reals or [])
    got = torch.autograd.grad(loss, inputs)
    want = torch.autograd.grad(sum(per_ref), f64 + ([x for x in r64 if x is not None]))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("backend", fused_backends())
def test_all_scales_in_one_operator_call(backend):
    reals, fakes = tensors(REAL_SHAPES, torch.float32, 1), tensors(FAKE_SHAPES, torch.float32, 11)
    calls = ran_ops(lambda: fg.discriminator_loss(reals, fakes, "hinge", backend=backend).backward())
    assert calls == {"fusedgan::loss_terms"}
    with torch.profiler.profile() as prof:
        fg.discriminator_loss(reals, fakes, "hinge", backend=backend)
    assert sum(e.name == "fusedgan::loss_terms" for e in prof.events()) == 1


def test_single_tensor_equals_one_scale_list():
    r, f = torch.randn(3, 4), torch.randn(5)
    a = fg.discriminator_loss(r, f, "ns")
    b, per, _ = fg.discriminator_loss([r], (f,), "ns", return_per_scale=True)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(per, a.reshape(1))


def test_bad_input():
    r, f = [torch.randn(3), torch.randn(2)], [torch.randn(3), torch.randn(2)]
    with pytest.raises(ValueError, match="^fake: has 1 scales"):
        fg.discriminator_loss(r, f[:1])
    with pytest.raises(ValueError, match="^real: expected at least one"):
        fg.discriminator_loss([], [])
    with pytest.raises(TypeError, match=r"^fake\[1\]: expected a torch.Tensor"):
        fg.discriminator_loss(r, [f[0], 1.0])
    with pytest.raises(TypeError, match="^real: is a list"):
        fg.discriminator_loss(r, f[0])
    with pytest.raises(ValueError, match="^scale_weights: expected 2"):
        fg.discriminator_loss(r, f, scale_weights=[1.0])
    with pytest.raises(ValueError, match="^scale_reduction: "):
        fg.discriminator_loss(r, f, scale_reduction="max")
    with pytest.raises(ValueError, match="^reduction: "):
        fg.discriminator_loss(r, f, reduction="none")
    with pytest.raises(ValueError, match="^real: has 1 scales"):
        fg.generator_loss(f, "ragan", real=r[:1])
    with pytest.raises(ValueError, match="^scale_weights: only for lists"):
        fg.generator_loss(f[0], scale_weights=[1.0])


# --------------------------------------------------------------------------------------------- #
# Feature matching


def check_fm(backend, dtype, weights, detach_real, shapes=((2, 4, 5, 3), (2, 8, 3), (7,), (1,))):
    fakes = tensors(shapes, dtype, 41)
    reals = tensors(shapes, dtype, 51)
    f64 = [x.detach().double().requires_grad_(True) for x in fakes]
    r64 = [x.detach().double().requires_grad_(True) for x in reals]
    loss = fg.feature_matching_loss(fakes, reals, weights=weights, detach_real=detach_real, backend=backend)
    assert backends.last_used() == backend
    ref = reference.feature_matching_loss(f64, [r if not detach_real else r.detach() for r in r64], weights)
    plain = sum((w or 1.0) * (a - b).abs().mean() for a, b, w in zip(f64, r64, weights or [None] * len(shapes)))
    torch.testing.assert_close(ref, plain)
    torch.testing.assert_close(loss.double(), ref, **tol(dtype))
    got = torch.autograd.grad(loss, fakes + (reals if not detach_real else []))
    want = torch.autograd.grad(ref, f64 + (r64 if not detach_real else []))
    for a, b in zip(got, want):
        assert a.dtype == dtype
        rtol, atol = grad_tol(dtype, b)
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol)
    if detach_real:
        assert all(r.grad is None for r in reals)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_feature_matching(dtype, backend):
    check_fm(backend, dtype, None, True)
    check_fm(backend, dtype, [1.0, 0.5, 2.0, 0.25], False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_feature_matching_ties_and_single_tensor(backend):
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 0.0, 5.0])
    loss = fg.feature_matching_loss(a, b, backend=backend)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(4.0 / 3))
    torch.testing.assert_close(a.grad, torch.tensor([0.0, 1.0, -1.0]) / 3)  # sign, 0 at a tie


@pytest.mark.parametrize("backend", fused_backends())
def test_feature_matching_one_operator_call(backend):
    fakes = [torch.randn(2, 3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    reals = [torch.randn(2, 3, 4), torch.randn(5)]
    with torch.profiler.profile() as prof:
        fg.feature_matching_loss(fakes, reals, backend=backend).backward()
    kernels = [e.name for e in prof.events() if e.name.startswith("fusedgan::") and e.name != "fusedgan::gan_loss"]
    assert kernels == ["fusedgan::loss_terms"]  # gan_loss: the C++ autograd wrapper, not a kernel


def test_feature_matching_bad_input():
    a, b = [torch.randn(3), torch.randn(2)], [torch.randn(3), torch.randn(4)]
    with pytest.raises(ValueError, match=r"^real_feats\[1\]: shape"):
        fg.feature_matching_loss(a, b)
    with pytest.raises(ValueError, match="^real_feats: has 1"):
        fg.feature_matching_loss(a, b[:1])
    with pytest.raises(ValueError, match="^weights: expected 2"):
        fg.feature_matching_loss(a, a, weights=[1.0])
    with pytest.raises(TypeError, match=r"^fake_feats\[0\]: "):
        fg.feature_matching_loss(["x", a[1]], a)
