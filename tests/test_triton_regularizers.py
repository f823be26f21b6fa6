"""fusedgan.regularizers on the Triton backend: approx_r1_penalty (rel_gan_loss with its Triton
loss pass), PathLengthRegularizer (gan_penalty with the Triton group_penalty) and LeCamRegularizer
(one gan_loss call: triton_loss_terms_stats), against the float64 formulas, asserting the Triton
kernels ran.

Runs on CUDA tensors when a GPU is present, else on CPU tensors through Triton's interpreter,
which must be switched on before triton is imported::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_regularizers.py -q
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton backend needs CUDA, or TRITON_INTERPRET=1 set before triton is imported "
                "(run: TRITON_INTERPRET=1 python -m pytest tests/test_triton_regularizers.py)",
                allow_module_level=True)

import fusedgan as fg  # noqa: E402
from fusedgan import backends  # noqa: E402

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)

from helpers import DTYPES, ran_ops  # noqa: E402
from test_regularizers import (TOL, check_lecam_by_hand, check_lecam_matches_reference,  # noqa: E402
                              check_sq_relu_like_torch, ref_approx_r1, ref_path_length)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 2, 5)])
def test_approx_r1_penalty_triton(dtype, shape):
    sigma, gamma = 0.05, 7.5
    base = torch.randn(shape, dtype=torch.float64)
    pert = base + sigma * torch.randn(shape, dtype=torch.float64)
    lx = base.to(dtype).to(DEVICE, copy=True).requires_grad_(True)
    px = pert.to(dtype).to(DEVICE, copy=True).requires_grad_(True)
    ops = ran_ops(lambda: fg.approx_r1_penalty(lx, px, sigma=sigma, gamma=gamma, backend="triton"))
    assert ops == {"fusedgan::rel_gan_loss", "fusedgan::triton_loss_terms"}
    out = fg.approx_r1_penalty(lx, px, sigma=sigma, gamma=gamma, backend="triton")
    assert backends.last_used() == "triton"
    gl, gp = torch.autograd.grad(out, (lx, px))
    l64 = lx.detach().double().cpu().requires_grad_(True)
    p64 = px.detach().double().cpu().requires_grad_(True)
    ref = ref_approx_r1(l64, p64, sigma, gamma)
    rl, rp = torch.autograd.grad(ref, (l64, p64))
    tol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
    scale = float(rp.abs().max())
    torch.testing.assert_close(gp.double().cpu(), rp, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(gl.double().cpu(), rl, rtol=tol, atol=tol * scale)


def test_approx_r1_penalty_triton_gradcheck():
    a = torch.randn(4, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)

    def fn(x, y):
        return fg.approx_r1_penalty(x, y, sigma=0.1, gamma=3.0, backend="triton")

    torch.autograd.gradcheck(fn, (a, b))
    torch.autograd.gradgradcheck(fn, (a, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_path_length_triton(dtype):
    pl = fg.PathLengthRegularizer(0.3).to(DEVICE)
    g = (torch.randn(5, 3, 8, dtype=torch.float64) * 2).to(dtype).to(DEVICE).requires_grad_(True)
    assert ran_ops(lambda: pl.lengths(g, "triton")) == {"fusedgan::gan_penalty",
                                                        "fusedgan::triton_group_penalty"}
    out = pl(g, backend="triton")
    assert backends.last_used() == "triton"
    (gg,) = torch.autograd.grad(out, g)
    g64 = g.detach().double().cpu().requires_grad_(True)
    ref, m = ref_path_length(g64, torch.tensor(0.0, dtype=torch.float64), 0.3)
    (rg,) = torch.autograd.grad(ref, g64)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(gg.double().cpu(), rg, rtol=tol, atol=tol * float(rg.abs().max()))
    torch.testing.assert_close(pl.pl_mean.double().cpu(), m, rtol=1e-5, atol=1e-6)


def test_lecam_triton_hand_values():
    """One triton_loss_terms_stats call computes both terms and both batch sums."""
    check_lecam_by_hand("triton", DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lecam_triton(dtype):
    check_lecam_matches_reference("triton", dtype, DEVICE)


def test_sq_relu_nan_inf_like_torch_triton():
    check_sq_relu_like_torch("triton", DEVICE)


def test_lecam_triton_gradcheck():
    reg = fg.LeCamRegularizer(decay=0.9).to(DEVICE).eval()
    reg.ema_real.fill_(0.3)
    reg.ema_fake.fill_(-0.2)
    r = torch.randn(7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    f = torch.randn(5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: reg(a, b, backend="triton"), (r, f))
