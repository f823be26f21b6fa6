"""fusedgan/triton/fastmath.py: math.h's exp / log1p restated in Triton, against torch in float64.

Runs under Triton's interpreter (CPU tensors), in its own process::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_fastmath.py -q

The interpreter evaluates the same float32 operations a GPU runs (fma, floor, the exponent bit
tricks), so the accuracy measured here is the kernel's; that the compiled sm_90 loss kernel uses
no ``ex2.approx`` on the float32 path is checked by tools/gpu_compile.py (tests/test_triton_compile.py).
"""
import os
import re

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs CUDA, or TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from fusedgan.triton import fastmath as fm  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@triton.jit
def _apply(x_ptr, out_ptr, n, FN: tl.constexpr, IS64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m, other=0.0)
    if FN == 0:
        y = fm.exp_nonpos(x, IS64)
    else:
        y = fm.log1p_unit(x, IS64)
    tl.store(out_ptr + offs, y, mask=m)


def apply(x: torch.Tensor, fn: int) -> torch.Tensor:
    out = torch.empty_like(x)
    block = 1024
    _apply[(triton.cdiv(x.numel(), block),)](x, out, x.numel(), FN=fn, IS64=x.dtype == torch.float64,
                                               BLOCK=block)
    return out


def ulp_err(y: torch.Tensor, ref64: torch.Tensor) -> torch.Tensor:
    """|y - ref| in units of float32's spacing at ref (subnormal spacing below 2^-126)."""
    tiny = torch.finfo(torch.float32).tiny
    spacing = torch.clamp(ref64.abs(), min=tiny) * torch.finfo(torch.float32).eps
    return (y.double() - ref64).abs() / spacing


def test_constants_are_math_h():
    """The coefficients are math.h's (one set of numbers: a change there fails here)."""
    src = open(os.path.join(ROOT, "csrc", "include", "fusedgan", "math.h")).read()

    def c(name):
        return float(re.search(rf"{name}\s*=\s*([-+0-9.e]+)f", src).group(1))

    assert fm.EXP_Q == tuple(c(f"kExpQ{i}") for i in range(5))
    assert fm.LOG_P == tuple(c(f"kLogP{i}") for i in range(1, 10))
    assert (fm.LOG2E, fm.LN2_HI, fm.LN2_LO, fm.EXP_MIN_ARG) == (c("kLog2e"), c("kLn2Hi"), c("kLn2Lo"),
                                                                 c("kExpMinArg"))


def test_exp_nonpos_f32_accuracy():
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([-torch.rand(20000, generator=gen, dtype=torch.float64) * 110,
                   -torch.rand(5000, generator=gen, dtype=torch.float64) * 1e-3,
                   torch.tensor([0.0, -0.0, -30.0, -30.5, -87.3, -88.7, -100.0, -103.9, -104.5, -1e4])])
    x32 = x.float()
    y = apply(x32.to(DEVICE), 0).cpu()
    ref = torch.exp(x32.double())
    err = ulp_err(y, ref)
    assert float(err.max()) <= 2.0, float(err.max())  # tl.exp on a GPU: ~10 ulp at |x| = 30
    big = ref > 1e-37  # normal results: relative error
    rel = ((y.double() - ref).abs() / ref)[big]
    assert float(rel.max()) < 2.5e-7
    assert y[x32 == 0].eq(1).all()
    assert float(y[x32 == -1e4]) == 0.0 and float(y[x32 == -104.5]) == 0.0


def test_exp_nonpos_special_values():
    x = torch.tensor([float("-inf"), float("nan"), -103.0, -0.0], dtype=torch.float32)
    y = apply(x.to(DEVICE), 0).cpu()
    assert float(y[0]) == 0.0 and torch.isnan(y[1])
    assert float(y[2]) > 0  # subnormal, not flushed
    assert abs(float(y[2]) - torch.exp(torch.tensor(-103.0, dtype=torch.float64)).item()) <= 1.5e-45
    assert float(y[3]) == 1.0


def test_log1p_unit_f32_accuracy():
    gen = torch.Generator().manual_seed(2)
    e = torch.cat([torch.rand(20000, generator=gen, dtype=torch.float64),
                   torch.exp(-torch.rand(5000, generator=gen, dtype=torch.float64) * 100),
                   torch.tensor([0.0, 1.0, 1e-30, 1e-45, 0.5])]).float()
    y = apply(e.to(DEVICE), 1).cpu()
    ref = torch.log1p(e.double())
    assert float(ulp_err(y, ref).max()) <= 2.0
    assert y[e == 0].eq(0).all()
    assert torch.isnan(apply(torch.tensor([float("nan")], device=DEVICE), 1)).all()


def test_float64_path():
    gen = torch.Generator().manual_seed(3)
    x = -torch.rand(5000, generator=gen, dtype=torch.float64) * 700
    y = apply(x.to(DEVICE), 0).cpu()
    assert torch.allclose(y, torch.exp(x), rtol=1e-14, atol=0)
    e = torch.rand(5000, generator=gen, dtype=torch.float64) ** 8
    y = apply(e.to(DEVICE), 1).cpu()
    assert torch.allclose(y, torch.log1p(e), rtol=1e-14, atol=0)


def test_bce_extreme_logits_match_reference():
    """The loss kernel's BCE at |x| = 30 (where ex2.approx is 1.2e-6 off): float32 rounding only."""
    import fusedgan as fg

    x = torch.tensor([30.0, -30.0, 17.5, -17.5, 88.0, -88.0, 0.25, -5.0], dtype=torch.float32)
    for t in (0.0, 1.0, 0.3):
        xr = x.clone().requires_grad_(True)
        with fg.use_backend("triton"):
            v = fg.compat.binary_cross_entropy_with_logits(xr.to(DEVICE), torch.full_like(x, t).to(DEVICE),
                                                           reduction="none")
        (gx,) = torch.autograd.grad(v.sum(), xr)
        x64 = x.double()

        def sp(z):  # softplus in float64, accurate for tiny results (torch's BCE loses them)
            return torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0)

        r = t * sp(-x64) + (1 - t) * sp(x64)
        g64 = (1 - t) * torch.sigmoid(x64) - t * torch.sigmoid(-x64)  # sigmoid(x) - t without cancelling
        assert fg.backends.last_used() == "triton"
        assert ((v.detach().cpu().double() - r.detach()).abs() <= 4e-7 * r.detach().abs() + 1e-45).all()
        assert ((gx.double() - g64).abs() <= 4e-7 * g64.abs() + 1e-45).all()
