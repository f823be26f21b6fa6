"""Triton kernels of the gradient-penalty operators (contract: docs/operators.md)::

    triton_group_sumsq(Tensor g, int A, int C, int B) -> Tensor                 sumsq [A, B]
    triton_group_scale_mul(Tensor g, Tensor scale, Tensor grad_output, int A, int C, int B) -> Tensor

``g`` is viewed, contiguous, as ``[A, C, B]``.  ``group_sumsq`` with ``B == 1`` (sample / batch
norms): each program sums one fixed-size chunk of a row into its own partial, and when a row has
several chunks a second launch adds them in chunk order.  With ``B > 1`` (pixel norm) each program
owns a block of columns of one ``a`` and walks ``c``.  No atomics, no autotuning: the bits depend
only on the shapes.  Squares and sums in float32 (float64 for float64 ``g``).
``group_scale_mul`` is one elementwise launch reading ``grad_output`` from device memory.
"""

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ..codes import acc_dtype

CHUNK = 8192  # elements of a row summed by one program (B == 1)
BLOCK = 1024  # elements per loop step / per program of the elementwise kernel
BLOCK_B = 256  # columns per program (B > 1)

CALLS = {"group_sumsq": 0, "group_scale_mul": 0}  # eager calls, for tests


@triton.jit
def _row_sumsq_kernel(g_ptr, out_ptr, C, NCK, CHUNK: tl.constexpr, BLOCK: tl.constexpr, IS64: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    a = pid // NCK
    k = pid % NCK
    start = k * CHUNK
    base = g_ptr + a * C
    acc_t = tl.float64 if IS64 else tl.float32
    acc = tl.zeros((BLOCK,), dtype=acc_t)
    for off in range(0, CHUNK, BLOCK):
        idx = start + off + tl.arange(0, BLOCK)
        x = tl.load(base + idx, mask=idx < C, other=0.0).to(acc_t)
        acc += x * x
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _combine_kernel(part_ptr, out_ptr, NCK, IS64: tl.constexpr):
    a = tl.program_id(0).to(tl.int64)
    acc_t = tl.float64 if IS64 else tl.float32
    s = tl.zeros((), dtype=acc_t)
    for k in range(0, NCK):  # chunk order: fixed
        s += tl.load(part_ptr + a * NCK + k)
    tl.store(out_ptr + a, s)


@triton.jit
def _col_sumsq_kernel(g_ptr, out_ptr, C, B, NB, BLOCK_B: tl.constexpr, IS64: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    a = pid // NB
    cols = (pid % NB) * BLOCK_B + tl.arange(0, BLOCK_B)
    mask = cols < B
    acc_t = tl.float64 if IS64 else tl.float32
    acc = tl.zeros((BLOCK_B,), dtype=acc_t)
    base = g_ptr + a * C * B
    for c in range(0, C):
        x = tl.load(base + c * B + cols, mask=mask, other=0.0).to(acc_t)
        acc += x * x
    tl.store(out_ptr + a * B + cols, acc, mask=mask)


@triton.jit
def _scale_mul_kernel(g_ptr, s_ptr, go_ptr, out_ptr, N, CB, B, BLOCK: tl.constexpr, IS64: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    acc_t = tl.float64 if IS64 else tl.float32
    x = tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc_t)
    s = tl.load(s_ptr + (idx // CB) * B + idx % B, mask=mask, other=0.0)
    go = tl.load(go_ptr).to(acc_t)
    tl.store(out_ptr + idx, (x * (s * go)).to(out_ptr.dtype.element_ty), mask=mask)


def _check(g: torch.Tensor, A: int, C: int, B: int, op: str) -> None:
    if g.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"g: fusedgan::{op} needs a floating-point tensor, got {g.dtype}")
    if min(A, C, B) < 0 or A * C * B != g.numel():
        raise ValueError(f"A, C, B: fusedgan::{op} needs A * C * B = g.numel() = {g.numel()}, got {A}, {C}, {B}")


def group_sumsq(g: torch.Tensor, A: int, C: int, B: int) -> torch.Tensor:
    _check(g, A, C, B, "triton_group_sumsq")
    CALLS["group_sumsq"] += 1
    acc = acc_dtype(g.dtype)
    is64 = acc == torch.float64
    out = torch.empty((A, B), dtype=acc, device=g.device)
    if A * B == 0:
        return out
    x = g.contiguous()
    if B == 1:
        nck = max(1, triton.cdiv(C, CHUNK))
        part = out if nck == 1 else torch.empty((A * nck,), dtype=acc, device=g.device)
        wrap_triton(_row_sumsq_kernel)[(A * nck,)](x, part, C, nck, CHUNK=CHUNK, BLOCK=BLOCK, IS64=is64,
                                                   num_warps=4)
        if nck > 1:
            wrap_triton(_combine_kernel)[(A,)](part, out, nck, IS64=is64, num_warps=1)
        return out
    nb = triton.cdiv(B, BLOCK_B)
    wrap_triton(_col_sumsq_kernel)[(A * nb,)](x, out, C, B, nb, BLOCK_B=BLOCK_B, IS64=is64, num_warps=4)
    return out


def group_scale_mul(g: torch.Tensor, scale: torch.Tensor, grad_output: torch.Tensor, A: int, C: int,
                    B: int) -> torch.Tensor:
    _check(g, A, C, B, "triton_group_scale_mul")
    if scale.numel() != A * B:
        raise ValueError(f"scale: expected A * B = {A * B} elements, got {scale.numel()}")
    if grad_output.numel() != 1:
        raise ValueError(f"grad_output: expected one element, got {grad_output.numel()}")
    CALLS["group_scale_mul"] += 1
    acc = acc_dtype(g.dtype)
    out = torch.empty(g.shape, dtype=g.dtype, device=g.device)
    n = g.numel()
    if n == 0:
        return out
    x = g.contiguous()
    s = scale.to(acc).contiguous()
    go = grad_output.reshape(1)
    wrap_triton(_scale_mul_kernel)[(triton.cdiv(n, BLOCK),)](x, s, go, out, n, C * B, B, BLOCK=BLOCK,
                                                             IS64=acc == torch.float64, num_warps=4)
    return out


def group_penalty(g: torch.Tensor, A: int, C: int, B: int, kind: int, center: float, one_sided: bool,
                  reduction: int, gamma: float, batch: int):
    """``fusedgan::group_penalty`` (value, scale): the sums of squares by ``group_sumsq``, then
    the penalty of csrc/include/fusedgan/math.h's ``gp_group`` as tensor operations.
    TEMPORARY: to be replaced by the second-stage Triton kernel (issue 15)."""
    sumsq = group_sumsq(g, A, C, B)
    if kind == 1:  # R1: one group
        value = (gamma / 2) * (sumsq.reshape(()) / batch)
        return value, torch.full_like(sumsq, gamma / batch if batch else float("nan"))
    norm = sumsq.sqrt()
    inv_norm = torch.where(sumsq > 0, norm.reciprocal(), 0.0)
    d = norm - center
    if one_sided:
        d = torch.relu(d)
    per_group = d.square()
    scale = 2 * d * inv_norm
    if reduction == 1:
        groups = sumsq.numel()
        return per_group.mean(), scale / groups if groups else scale
    if reduction == 2:
        return per_group.sum(), scale
    return per_group, scale


def launchers() -> dict:
    """The Triton twins of the penalty kernel operators (see fusedgan/triton/__init__.py)."""
    return {"group_sumsq": group_sumsq, "group_scale_mul": group_scale_mul, "group_penalty": group_penalty}


__all__ = ["CALLS", "group_scale_mul", "group_sumsq", "launchers"]
