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


# ---------------------------------------------------------------------------------------------
# fusedgan::triton_group_penalty itself: the two-stage kernels against ops.reference_group_penalty.

LAYOUTS = [(3, 35, 1), (1, 1, 1), (2, 300, 1), (1, 2000, 1), (3, 5, 70), (2, 3, 33), (0, 5, 1), (3, 0, 1),
           (2, 0, 7), (0, 0, 0)]


def _penalty_case(g, A, C, B, kind, red, one_sided, center=1.0, gamma=10.0, batch=3):
    v, s = torch.ops.fusedgan.triton_group_penalty(g, A, C, B, kind, center, one_sided, red, gamma, batch)
    rv, rs = fg.ops.reference_group_penalty(g.double(), A, C, B, kind, center, one_sided, red, gamma, batch)
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    assert v.dtype == acc and s.dtype == acc and v.shape == rv.shape and s.shape == rs.shape
    for got, want in ((v, rv), (s, rs)):
        got = got.double().cpu()
        assert torch.equal(got.isnan(), want.isnan())
        ok = ~want.isnan()
        tol = 64 * eps(acc) * (want[ok].abs() + 1) + 1e-300
        assert ((got[ok] - want[ok]).abs() <= tol).all(), (A, C, B, kind, red, one_sided, got, want)


@pytest.mark.parametrize("chunks", ["default", "small"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_group_penalty_op(dtype, chunks, request):
    if chunks == "small":
        request.getfixturevalue("small_chunks")
    gen = torch.Generator().manual_seed(7)
    for A, C, B in LAYOUTS:
        g = (torch.randn(A * C * B, generator=gen, dtype=torch.float64) * 0.2).to(dtype).to(DEVICE)
        for red in (0, 1, 2):
            for one_sided in (False, True):
                _penalty_case(g, A, C, B, 0, red, one_sided, center=float(torch.rand(1, generator=gen)) + 0.5)
            if A * B == 1:
                _penalty_case(g, A, C, B, 1, red, False, gamma=3.5, batch=5)


def test_group_penalty_noncontiguous_and_special(small_chunks):
    g = make_g((4, 6, 9), torch.float32).transpose(1, 2)  # [4, 9, 6], non-contiguous
    assert not g.is_contiguous()
    for A, C, B in [(4, 54, 1), (4, 9, 6), (1, 216, 1)]:
        _penalty_case(g, A, C, B, 0, 1, False)
    z = torch.zeros(3, 40, device=DEVICE)  # zero gradient: per = center^2, scale 0 (no NaN)
    v, s = torch.ops.fusedgan.triton_group_penalty(z, 3, 40, 1, 0, 1.0, False, 0, 10.0, 3)
    assert torch.equal(v, torch.ones(3, 1)) and torch.equal(s, torch.zeros(3, 1))
    x = torch.tensor([[3.0, 4.0], [float("nan"), 1.0]], device=DEVICE)  # hand values: ||(3, 4)|| = 5
    v, s = torch.ops.fusedgan.triton_group_penalty(x, 2, 2, 1, 0, 1.0, False, 0, 10.0, 2)
    assert float(v[0, 0]) == 16.0 and abs(float(s[0, 0]) - 2 * 4 / 5) < 1e-7 and v[1].isnan().all()
    v, s = torch.ops.fusedgan.triton_group_penalty(x[:1], 1, 2, 1, 1, 0.0, False, 1, 4.0, 2)  # R1: 4/2 * 25/2
    assert float(v) == 25.0 and float(s) == 2.0


def test_group_penalty_bad_arguments():
    g = torch.zeros(2, 3, device=DEVICE)
    with pytest.raises(Exception, match="kind"):
        torch.ops.fusedgan.triton_group_penalty(g, 2, 3, 1, 5, 1.0, False, 1, 10.0, 2)
    with pytest.raises(Exception, match="reduction"):
        torch.ops.fusedgan.triton_group_penalty(g, 2, 3, 1, 0, 1.0, False, 7, 10.0, 2)
    with pytest.raises(Exception, match="r1 needs one group"):
        torch.ops.fusedgan.triton_group_penalty(g, 2, 3, 1, 1, 1.0, False, 1, 10.0, 2)
    with pytest.raises(Exception, match="A, C, B"):
        torch.ops.fusedgan.triton_group_penalty(g, 2, 4, 1, 0, 1.0, False, 1, 10.0, 2)


class _Launches:
    """Counts (and records the constexprs of) the Triton launches of the penalty module."""

    def __init__(self, monkeypatch):
        self.calls = []
        wrap = tp.wrap_triton

        def counting(kernel):
            launcher = wrap(kernel)

            class _Grid:
                def __getitem__(_, grid):
                    def run(*args, **kwargs):
                        self.calls.append((kernel.fn.__name__, grid, kwargs))
                        return launcher[grid](*args, **kwargs)
                    return run
            return _Grid()

        monkeypatch.setattr(tp, "wrap_triton", counting)


@pytest.mark.parametrize("norm", ["sample", "pixel", "batch"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gp_forward_backward_at_most_three_launches(norm, reduction, monkeypatch):
    rec = _Launches(monkeypatch)
    g = make_g((3, 4, 30, 30), torch.float32).requires_grad_(True)  # batch norm: several chunks
    v = fg.penalties.gradient_penalty(g, norm=norm, reduction=reduction, backend=BACKEND)
    assert backends.last_used() == BACKEND
    n_fwd = len(rec.calls)
    torch.autograd.grad(v.sum(), g)
    names = [c[0] for c in rec.calls]
    assert len(names) <= 3 and n_fwd <= 2 and names[-1] == "_scale_mul_kernel", names


def test_single_group_second_stage_is_block_wide(monkeypatch):
    """r1 and norm="batch" (one group over many chunks): the second stage sums 1,024 partials per
    step (issue 15 item 4), and matches the reference."""
    rec = _Launches(monkeypatch)
    monkeypatch.setattr(tp, "CHUNK", 16)
    monkeypatch.setattr(tp, "BLOCK", 16)
    g = make_g((5, 3, 20, 21), torch.float32)  # 6,300 elements: 394 chunks of 16
    check(lambda x: fg.penalties.r1_penalty(x, 2.0, backend=BACKEND), lambda x: reference.r1_penalty(x, 2.0), g)
    fin = [c for c in rec.calls if c[0] == "_penalty_finish_kernel"]
    assert fin and all(c[2]["KB"] == 1024 and c[2]["GB"] == 1 for c in fin)
    assert [c[1] for c in rec.calls if c[0] == "_row_kernel"][0] == (394,)
