"""Shared test machinery: fresh random inputs, the fp64 oracle and dtype-aware tolerances."""
from __future__ import annotations

import math
import os

import torch
import torch.utils._python_dispatch

import fusedgan as fg

DEVICE = os.environ.get("FUSEDGAN_TEST_DEVICE", "cpu")
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
KINDS = ["ns", "mm", "ls", "wgan", "hinge"]
REDUCTIONS = ["mean", "sum", "none"]


def fused_backends(device: str = DEVICE) -> list:
    """The fused backends this suite checks on ``device`` (Triton on CPU has its own file)."""
    names = [b for b in fg.available_backends(device) if b != "reference"]
    if device == "cpu":
        names = [b for b in names if b != "triton"]
    return names


def logits(shape, dtype, *, extreme=False, seed=None, device=DEVICE, scale=3.0):
    """Fresh random logits; with ``extreme`` a few entries are +-1e4 and +-88 (saturation)."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if extreme and x.numel() > 0:
        flat = x.view(-1)
        vals = torch.tensor([1e4, -1e4, 88.0, -88.0, 30.0, -30.0, 0.0], dtype=torch.float64)
        k = min(flat.numel(), vals.numel())
        idx = torch.randperm(flat.numel(), generator=g)[:k]
        flat[idx] = vals[:k]
    if dtype == torch.float16:
        x = x.clamp(-6e4, 6e4)
    return x.to(dtype).to(device)


def eps(dtype) -> float:
    return torch.finfo(dtype).eps


def err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs error in float64, NaN-aware (matching NaNs count as equal)."""
    a, ref = a.double(), ref.double()
    both_nan = torch.isnan(a) & torch.isnan(ref)
    d = (a - ref).abs()
    same_inf = (a == ref)  # equal infinities give nan differences
    d = torch.where(both_nan | same_inf, torch.zeros_like(d), d)
    return float(d.max()) if d.numel() else 0.0


def _yardstick(torch_same: torch.Tensor, ref64: torch.Tensor) -> float:
    """torch's own error, never infinite or NaN: where torch overflows (fp16 ls at +-1e4 logits)
    its error says nothing, and an infinite yardstick would accept any value."""
    e = err(torch_same, ref64)
    return e if math.isfinite(e) else 0.0


def assert_close_to_ref(out: torch.Tensor, ref64: torch.Tensor, torch_same: torch.Tensor, dtype, what: str,
                        scale: float = 0.0):
    """The error of ``out`` against the fp64 reference, by dtype.

    fp32/fp64: elementwise relative tolerance (a few ulp of the accumulated value).  fp16/bf16
    (FlashAttention's rule): at most 2x the error of torch's own same-dtype computation, plus
    one ulp of the result's magnitude.
    """
    assert out.shape == ref64.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref64.shape)}"
    assert torch.isnan(out.double()).eq(torch.isnan(ref64)).all(), f"{what}: NaN pattern differs"
    # The result's precision sets the rule: a float32 loss of half logits (computed in float32
    # from the rounded logits, which ref64 starts from too) gets the float32 rule.
    if out.dtype in (torch.float32, torch.float64):
        dtype = out.dtype
        # rtol: a few ulp; atol: cancellation inherent in the formula (sigmoid(x) - t for a soft
        # t near sigmoid(x)) costs a few ulp of the tensor's largest entry, whatever computes it.
        rtol = 2e-6 if dtype == torch.float32 else 1e-12
        finite = ref64[torch.isfinite(ref64)]
        # ``scale``: the magnitude of what was summed (terms of opposite sign cancel in wgan).
        atol = 4 * eps(dtype) * max(float(finite.abs().max()) if finite.numel() else 0.0, scale) + 1e-300
        if torch.allclose(out.double(), ref64, rtol=rtol, atol=atol, equal_nan=True):
            return
        # Where the formula itself cancels, fall back to FlashAttention's rule (below).
        e_out, e_torch = err(out, ref64), _yardstick(torch_same, ref64)
        assert e_out <= 2 * e_torch, (
            f"{what}: error {e_out:.3e} exceeds rtol {rtol} / atol {atol:.2e} and 2x torch's own "
            f"{dtype} error {e_torch:.3e}"
        )
        return
    # Values beyond the output dtype's range round to +-inf: there inf is the exact answer, and
    # both out and torch are checked against the rounded reference.
    rounded = ref64.to(out.dtype).double()
    over = torch.isinf(rounded) & torch.isfinite(ref64)
    if over.any():
        assert torch.equal(out.double()[over], rounded[over]), f"{what}: overflow to inf differs from the reference"
        ref64 = torch.where(over, rounded, ref64)
    e_out, e_torch = err(out, ref64), _yardstick(torch_same, ref64)
    finite = ref64[torch.isfinite(ref64)]
    mag = float(finite.abs().max()) if finite.numel() else 0.0
    bound = 2 * e_torch + eps(dtype) * mag + 1e-30
    assert e_out <= bound, f"{what}: error {e_out:.3e} > bound {bound:.3e} (torch same-dtype error {e_torch:.3e})"


def ran_ops(fn) -> set:
    """Names of the fusedgan operators that ran inside ``fn()`` (from the profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    # fusedgan::gan_loss is the C++ autograd wrapper of the native backends (csrc/autograd.cpp),
    # not a kernel: the kernel it runs (fusedgan::loss_terms) shows up on its own.
    return {e.name for e in prof.events() if e.name.startswith("fusedgan::") and e.name != "fusedgan::gan_loss"}


class OpRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ``fusedgan::`` operators that reach the dispatcher below autograd: the kernels
    that actually ran (``fusedgan::loss_terms``, ``fusedgan::triton_loss_terms``, ...), whatever
    ``backends.last_used()`` says (a drop-in sets it before deciding to fall back to torch)."""

    def __init__(self):
        super().__init__()
        self.names: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if name.startswith("fusedgan::"):
            self.names.append(name.split(".")[0])
        return func(*args, **(kwargs or {}))

    def take(self) -> set:
        """The operators recorded since the last take()."""
        out, self.names = set(self.names), []
        return out


def fused_ops(fn):
    """(fn(), the set of fusedgan:: operators that ran inside it)."""
    with OpRecorder() as rec:
        out = fn()
    return out, rec.take()


def loss_kernel(backend: str) -> str:
    """The loss kernel operator a fused backend runs."""
    return "fusedgan::triton_loss_terms" if backend == "triton" else "fusedgan::loss_terms"
