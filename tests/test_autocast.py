"""Mixed precision: under torch.autocast every fusedgan loss computes in float32 and returns
float32 (like torch's float32-listed losses); half-precision logits never overflow the loss.

CPU autocast (bfloat16 and float16) is what runs here; the same code path serves CUDA autocast.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fusedgan
from fusedgan import backends, compat, reference

FUSED = [n for n in ("cpu", "triton") if n in backends.available_backends("cpu")]
ALL = FUSED + ["reference"]
KINDS = sorted(fusedgan.KINDS)
HALF = [torch.bfloat16, torch.float16]


def need_fused():
    if not FUSED:
        pytest.skip("no fused CPU backend here (fusedgan._C not built and Triton interpreter off)")
    return FUSED[0]


class Disc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", HALF)
def test_losses_fp32_under_autocast(backend, kind, dtype):
    torch.manual_seed(0)
    d = Disc()
    real, fake = torch.randn(32, 8), torch.randn(32, 8)
    with backends.use_backend(backend), torch.autocast("cpu", dtype=dtype):
        r, f = d(real), d(fake)
        assert r.dtype == dtype  # the model ran in half precision
        ld = fusedgan.discriminator_loss(r, f, kind)
        lg = fusedgan.generator_loss(f, kind)
    assert backends.last_used() == backend
    assert ld.dtype == torch.float32 and lg.dtype == torch.float32
    # float32 maths on the half logits: equal to the float64 reference on the same logits
    torch.testing.assert_close(ld.double(), reference.discriminator_loss(r.double(), f.double(), kind),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg.double(), reference.generator_loss(f.double(), kind), rtol=1e-5, atol=1e-5)
    (ld + lg).backward()
    assert all(torch.isfinite(p.grad).all() for p in d.parameters())


@pytest.mark.parametrize("dtype", HALF)
def test_float32_internal(dtype):
    """Confident predictions in half precision: the loss is what float32 maths gives, not what
    half-precision maths gives (sp(-x) for x = 12 is 6e-6, below bfloat16's resolution at 1)."""
    name = need_fused()
    x = torch.tensor([12.0, -12.0, 0.1, 30.0], dtype=dtype)
    with backends.use_backend(name), torch.autocast("cpu", dtype=dtype):
        got = fusedgan.discriminator_loss(x, -x, "ns", reduction="sum")
    want = reference.discriminator_loss(x.float(), -x.float(), "ns", reduction="sum")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("autocast", [False, True])
def test_fp16_extremes_do_not_overflow(backend, kind, autocast):
    """Logits at +-65504 (float16's largest): finite float32 losses and finite gradients."""
    big = torch.tensor([65504.0, -65504.0, 1.0, -1.0], dtype=torch.float16)
    real, fake = big.clone().requires_grad_(), big.flip(0).clone().requires_grad_()
    fake_g = fake.detach().clone().requires_grad_()
    with backends.use_backend(backend), torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
        ld = fusedgan.discriminator_loss(real, fake, kind)
        lg = fusedgan.generator_loss(fake_g, kind)
    assert ld.dtype == lg.dtype == torch.float32
    assert torch.isfinite(ld) and torch.isfinite(lg)
    torch.testing.assert_close(ld.double(), reference.discriminator_loss(real.double(), fake.double(), kind),
                               rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(lg.double(), reference.generator_loss(fake_g.double(), kind), rtol=1e-6, atol=1e-3)
    gr, gf = torch.autograd.grad(ld, [real, fake])
    (gg,) = torch.autograd.grad(lg, [fake_g])
    for g in (gr, gf, gg):
        assert g.dtype == torch.float16 and bool(torch.isfinite(g).all())


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_compatible_losses_follow_autocast(dtype, reduction):
    """Like torch's binary_cross_entropy_with_logits / mse_loss: float32 under autocast, also
    with a float32 target next to half logits, and for reduction="none"."""
    name = need_fused()
    torch.manual_seed(0)
    d = Disc()
    x = torch.randn(16, 8)
    t32 = torch.rand(16, 1)
    for target in (t32, t32.to(dtype)):
        with torch.autocast("cpu", dtype=dtype):
            logits = d(x)
            got_b = compat.binary_cross_entropy_with_logits(logits, target, reduction=reduction)
            assert backends.last_used() == name
            got_m = compat.mse_loss(logits, target, reduction=reduction)
            assert backends.last_used() == name
            want_b = F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)
            want_m = F.mse_loss(logits, target, reduction=reduction)
        for got, want in ((got_b, want_b), (got_m, want_m)):
            assert got.dtype == want.dtype == torch.float32
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", HALF)
def test_fp16_extremes_torch_compatible(dtype):
    need_fused()
    x = torch.tensor([65504.0, -65504.0, 3.0], dtype=torch.float16).to(dtype)
    t = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)
    with torch.autocast("cpu", dtype=dtype):
        for ours, theirs in ((compat.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
                             (compat.mse_loss, F.mse_loss)):
            got, want = ours(x, t), theirs(x, t)
            assert got.dtype == torch.float32 and torch.isfinite(got)
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", HALF)
def test_gan_compat_modules_fp32_under_autocast(dtype):
    need_fused()
    pred = torch.randn(2, 1, 4, 4).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        for loss in (compat.CycleGANLoss("lsgan"), compat.CycleGANLoss("wgangp"),
                     compat.BasicSRGANLoss("vanilla"), compat.BasicSRGANLoss("hinge")):
            out = loss(pred, True)
            assert out.dtype == torch.float32, loss
