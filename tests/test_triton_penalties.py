"""The Triton penalty operators (``fusedgan/triton/penalty.py``) against the float64 reference.

Runs on CUDA tensors when a GPU is present, else on CPU tensors through Triton's interpreter,
which must be switched on before triton is imported, so CI runs this file in its own process::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_penalties.py -q
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton backend needs CUDA, or TRITON_INTERPRET=1 set before triton is imported "
                "(run: TRITON_INTERPRET=1 python -m pytest tests/test_triton_penalties.py)",
                allow_module_level=True)

import fusedgan as fg  # noqa: E402
from fusedgan import backends, penalties, reference  # noqa: E402,F401

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)
import fusedgan.triton as ft  # noqa: E402

from fusedgan.triton import penalty as tp  # noqa: E402
from helpers import DTYPES, eps  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKEND = "triton"


@pytest.fixture
def small_chunks(monkeypatch):
    """Tiny chunks and blocks, so small inputs take the multi-chunk / multi-block paths."""
    monkeypatch.setattr(tp, "CHUNK", 64)
    monkeypatch.setattr(tp, "BLOCK", 32)
    monkeypatch.setattr(tp, "BLOCK_B", 16)


def make_g(shape, dtype, how="randn", seed=0):
    gen = torch.Generator().manual_seed(seed)
    if how == "huge":
        g = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * 6e4
    elif how == "zero":
        g = torch.zeros(shape, dtype=torch.float64)
    else:
        g = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3
    g = g.to(dtype).to(DEVICE)
    if how == "permuted":
        g = g.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    return g


def value_and_grad(fn, g):
    x = g.detach().clone().requires_grad_(True)
    v = fn(x)
    w = torch.randn(v.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(v)
    (grad,) = torch.autograd.grad((v * w).sum(), x)
    return v.detach(), grad


def check(fused, ref, g):
    v, grad = value_and_grad(fused, g)
    assert backends.last_used() == BACKEND
    v64, grad64 = value_and_grad(ref, g.double())
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    assert v.dtype == acc and grad.dtype == g.dtype
    assert (v.double() - v64).abs().max() <= 64 * eps(acc) * (float(v64.abs().max()) + 1)
    fits = grad64.abs() <= torch.finfo(g.dtype).max * (1 - eps(g.dtype))
    gd, g64 = grad[fits].double(), grad64[fits]
    m = float(g64.abs().max()) if g64.numel() else 0.0
    assert (gd - g64).abs().max() <= 8 * eps(g.dtype) * m + 64 * eps(acc) * m + 1e-300


@pytest.mark.parametrize("chunks", ["default", "small"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("how", ["randn", "permuted", "huge", "zero"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("norm", ["sample", "pixel", "batch"])
def test_gradient_penalty(norm, reduction, how, dtype, chunks, request):
    if chunks == "small":
        request.getfixturevalue("small_chunks")
    g = make_g((3, 5, 70), dtype, how)
    for one_sided in (False, True):
        kw = dict(norm=norm, reduction=reduction, one_sided=one_sided)
        check(lambda x: fg.penalties.gradient_penalty(x, backend=BACKEND, **kw),
              lambda x: reference.gradient_penalty(x, **kw), g)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 7, 5)])
def test_r1(shape, dtype, small_chunks):
    g = make_g(shape, dtype)
    check(lambda x: fg.penalties.r1_penalty(x, 3.0, backend=BACKEND), lambda x: reference.r1_penalty(x, 3.0), g)


def test_operators_and_determinism(small_chunks):
    g = make_g((2, 9, 50), torch.float32)
    for layout in [(2, 450, 1), (2, 9, 50), (1, 900, 1)]:
        s1 = torch.ops.fusedgan.triton_group_sumsq(g, *layout)
        s2 = torch.ops.fusedgan.triton_group_sumsq(g, *layout)
        ref = g.double().reshape(layout).square().sum(1)
        assert torch.equal(s1, s2) and torch.allclose(s1.double(), ref, rtol=1e-6)
    scale = torch.rand(2, 50, device=DEVICE)
    out = torch.ops.fusedgan.triton_group_scale_mul(g, scale, torch.tensor(0.5, device=DEVICE), 2, 9, 50)
    assert torch.allclose(out, scale.unsqueeze(1) * g * 0.5, rtol=1e-6)


def test_double_backward_conv_d():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 6 * 6, 1)).double().to(DEVICE)
    real = torch.randn(3, 3, 6, 6, dtype=torch.float64, device=DEVICE)
    fake = torch.randn(3, 3, 6, 6, dtype=torch.float64, device=DEVICE)
    grads = {}
    for b in ("reference", BACKEND):
        torch.manual_seed(1)
        loss = D(fake).mean() - D(real).mean() + fg.penalties.wgan_gp(D, real, fake, backend=b) \
            + fg.penalties.r1(D, real, backend=b)
        grads[b] = torch.autograd.grad(loss, list(D.parameters()))
    for p, r in zip(grads[BACKEND], grads["reference"]):
        assert torch.allclose(p, r, rtol=1e-10, atol=1e-12)
