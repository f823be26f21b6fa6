"""Triton kernels of the gradient-penalty operators (contract: docs/operators.md)::

    triton_group_sumsq(Tensor g, int A, int C, int B) -> Tensor                 sumsq [A, B]
    triton_group_scale_mul(Tensor g, Tensor scale, Tensor grad_output, int A, int C, int B) -> Tensor
    triton_group_penalty(Tensor g, int A, int C, int B, int kind, float center, bool one_sided,
                         int reduction, float gamma, int batch) -> (Tensor value, Tensor scale)

``g`` is viewed, contiguous, as ``[A, C, B]``; a group is a column ``g[a, :, b]``.

* First stage (one launch over the data).  ``B == 1`` (sample / batch norms, R1): program
  ``(a, k)`` sums the squares of a fixed-size chunk ``k`` of row ``a``.  ``B > 1`` (pixel norm):
  program ``(a, j)`` owns a block of columns of one ``a`` and walks ``c``.  When a program holds
  whole groups (one chunk per row, or the column kernel) it also finishes them: each group's
  penalty (math.h's ``gp_group``), its backward scale, and the program's partial sum of penalties.
* Second stage (one program, block-wide fixed-order sums over tiles of partials; no serial loop,
  no atomics): the groups split over chunks are finished from their chunk partials (``norm="batch"``
  and ``r1`` are one group over ~1,500 chunks at [64, 3, 256, 256]), then the mean / sum.

So ``group_penalty`` is at most two launches (one for ``reduction="none"`` with whole groups per
program) and a gradient penalty's forward and backward at most three with ``group_scale_mul``.
The bits depend only on the shapes (fixed chunk, block and tile sizes).  Squares and sums in
float32 (float64 for float64 ``g``); float32 square roots and divisions rounded to nearest.
"""

import math

from typing import Tuple

import torch
import triton
import triton.language as tl
from ._compat import wrap_triton

from ..codes import Reduction, acc_dtype
from ._device import on_device as _on_device

CHUNK = 8192  # elements of a row summed by one program (B == 1)
BLOCK = 1024  # elements per loop step / per program of the elementwise kernel
BLOCK_B = 256  # columns per program (B > 1)

CALLS = {"group_sumsq": 0, "group_scale_mul": 0, "group_penalty": 0}  # eager calls, for tests


SUMS, EPI, REDUCE = 0, 1, 2  # what the second stage does (MODE)


@triton.jit
def _scalar(v, IS64: tl.constexpr):
    """A float64 scalar argument in the maths dtype."""
    if IS64:
        return tl.full([], v, tl.float64)
    else:
        return tl.full([], v, tl.float32)


@triton.jit
def _epilogue(s, center, gamma, nbatch, KIND: tl.constexpr, ONE_SIDED: tl.constexpr, IS64: tl.constexpr):
    """(per-group value, scale) from sums of squares s: math.h's gp_group (KIND 0), or R1
    (KIND 1: (gamma / 2) * s / batch, scale gamma / batch).  Scalars in the maths dtype."""
    if KIND == 1:
        per = (gamma * 0.5) * (s / nbatch)
        sc = tl.zeros_like(s) + gamma / nbatch
    else:
        if IS64:  # float64 sqrt and division are IEEE-rounded
            norm = tl.sqrt(s)
            inv = tl.where(s > 0, 1.0 / tl.where(s > 0, norm, 1.0), 0.0)
        else:  # round to nearest (tl.sqrt and / on float32 are approximations on NVIDIA GPUs)
            norm = tl.sqrt_rn(s)
            inv = tl.where(s > 0, tl.div_rn(tl.full(s.shape, 1.0, s.dtype), tl.where(s > 0, norm, 1.0)), 0.0)
        d = norm - center
        if ONE_SIDED:
            d = tl.where(d < 0, 0.0, d)  # NaN stays NaN
        per = d * d
        sc = 2.0 * d * inv
    return per, sc


@triton.jit
def _row_kernel(g_ptr, part_ptr, value_ptr, scale_ptr, C, NCK, center: tl.float64, gamma: tl.float64,
                nbatch: tl.float64, mul: tl.float64, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
                IS64: tl.constexpr, FUSE: tl.constexpr, KIND: tl.constexpr, ONE_SIDED: tl.constexpr,
                NONE: tl.constexpr):
    """First stage, B == 1: program (a, k) sums the squares of chunk k of row a.  Without FUSE it
    stores the chunk's sum in part[a * NCK + k]; with FUSE (one chunk per row) it finishes the
    group: scale[a] = dscale * mul, and the penalty in value[a] (NONE) or part[a]."""
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
    s = tl.sum(acc, axis=0)
    if FUSE:
        per, sc = _epilogue(s, _scalar(center, IS64), _scalar(gamma, IS64), _scalar(nbatch, IS64), KIND,
                            ONE_SIDED, IS64)
        tl.store(scale_ptr + a, sc * _scalar(mul, IS64))
        if NONE:
            tl.store(value_ptr + a, per)
        else:
            tl.store(part_ptr + a, per)
    else:
        tl.store(part_ptr + pid, s)


@triton.jit
def _col_kernel(g_ptr, part_ptr, value_ptr, scale_ptr, C, B, NB, center: tl.float64, gamma: tl.float64,
                nbatch: tl.float64, mul: tl.float64, BLOCK_B: tl.constexpr, IS64: tl.constexpr,
                FUSE: tl.constexpr, KIND: tl.constexpr, ONE_SIDED: tl.constexpr, NONE: tl.constexpr):
    """First stage, B > 1: program (a, j) owns columns [j * BLOCK_B, ...) of a and walks c.
    Without FUSE it stores the sums in part[a, b] ([A, B]); with FUSE it finishes its groups
    (scale, and value[a, b] (NONE) or its partial sum of penalties in part[pid])."""
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
    if FUSE:
        per, sc = _epilogue(acc, _scalar(center, IS64), _scalar(gamma, IS64), _scalar(nbatch, IS64), KIND,
                            ONE_SIDED, IS64)
        tl.store(scale_ptr + a * B + cols, sc * _scalar(mul, IS64), mask=mask)
        if NONE:
            tl.store(value_ptr + a * B + cols, per, mask=mask)
        else:
            tl.store(part_ptr + pid, tl.sum(tl.where(mask, per, 0.0), axis=0))
    else:
        tl.store(part_ptr + a * B + cols, acc, mask=mask)


@triton.jit
def _penalty_finish_kernel(part_ptr, value_ptr, scale_ptr, NG, NCK, center: tl.float64, gamma: tl.float64,
                           nbatch: tl.float64, mul: tl.float64, rdiv: tl.float64, MODE: tl.constexpr,
                           KIND: tl.constexpr, ONE_SIDED: tl.constexpr, NONE: tl.constexpr,
                           IS64: tl.constexpr, GB: tl.constexpr, KB: tl.constexpr):
    """Second stage, one program, block-wide sums in a fixed order (no atomics):

    * MODE SUMS: value[g] = sum_k part[g * NCK + k] for the NG groups (group_sumsq);
    * MODE EPI: the same sums, then each group's penalty and scale (scale[g] = dscale * mul), and
      value = the penalties (NONE) or their sum / rdiv;
    * MODE REDUCE: value = sum of the NCK per-program penalty sums in part / rdiv.

    Tiles of GB groups x KB partials (GB * KB elements per step)."""
    acc_t = tl.float64 if IS64 else tl.float32
    if MODE == 2:
        r = tl.arange(0, GB * KB)
        acc = tl.zeros((GB * KB,), dtype=acc_t)
        for i in range(0, NCK, GB * KB):
            acc += tl.load(part_ptr + i + r, mask=i + r < NCK, other=0.0)
        tl.store(value_ptr, tl.sum(acc, axis=0) / _scalar(rdiv, IS64))
    else:
        ce = _scalar(center, IS64)
        ga = _scalar(gamma, IS64)
        nb = _scalar(nbatch, IS64)
        mu = _scalar(mul, IS64)
        rg = tl.arange(0, GB)
        rk = tl.arange(0, KB)
        tot = tl.zeros((GB,), dtype=acc_t)
        for g0 in range(0, NG, GB):
            rows = g0 + rg
            rmask = rows < NG
            acc = tl.zeros((GB, KB), dtype=acc_t)
            for k0 in range(0, NCK, KB):
                cols = k0 + rk
                m = rmask[:, None] & (cols < NCK)[None, :]
                acc += tl.load(part_ptr + rows.to(tl.int64)[:, None] * NCK + cols[None, :], mask=m, other=0.0)
            s = tl.sum(acc, axis=1)
            if MODE == 0:
                tl.store(value_ptr + rows, s, mask=rmask)
            else:
                per, sc = _epilogue(s, ce, ga, nb, KIND, ONE_SIDED, IS64)
                tl.store(scale_ptr + rows, sc * mu, mask=rmask)
                if NONE:
                    tl.store(value_ptr + rows, per, mask=rmask)
                else:
                    tot += tl.where(rmask, per, 0.0)
        if MODE == 1:
            if not NONE:
                tl.store(value_ptr, tl.sum(tot, axis=0) / _scalar(rdiv, IS64))


@triton.jit
def _scale_mul_kernel(g_ptr, s_ptr, go_ptr, out_ptr, N, CB, B, BLOCK: tl.constexpr, IS64: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    acc_t = tl.float64 if IS64 else tl.float32
    x = tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc_t)
    s = tl.load(s_ptr + (idx // CB) * B + idx % B, mask=mask, other=0.0)
    go = tl.load(go_ptr).to(acc_t)
    tl.store(out_ptr + idx, (x * (s * go)).to(out_ptr.dtype.element_ty), mask=mask)


def _tile(nck: int):
    """(GB, KB) of the second stage: KB partials per group and step, GB * KB = 1024."""
    kb = 16 if nck <= 16 else 128 if nck <= 128 else 1024
    return 1024 // kb, kb


def _check(g: torch.Tensor, A: int, C: int, B: int, op: str) -> None:
    if g.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"g: fusedgan::{op} needs a floating-point tensor, got {g.dtype}")
    if min(A, C, B) < 0 or A * C * B != g.numel():
        raise ValueError(f"A, C, B: fusedgan::{op} needs A * C * B = g.numel() = {g.numel()}, got {A}, {C}, {B}")


def _stage1(x, A, C, B, is64, part, value, scale, *, fuse, kind=0, center=0.0, one_sided=False, none=False,
            gamma=0.0, nbatch=1.0, mul=1.0):
    """The first-stage launch over g viewed as [A, C, B]; returns (programs, chunks per row)."""
    if B == 1:
        nck = max(1, triton.cdiv(C, CHUNK))
        wrap_triton(_row_kernel)[(A * nck,)](x, part, value, scale, C, nck, center, gamma, nbatch, mul,
                                             CHUNK=CHUNK, BLOCK=BLOCK, IS64=is64, FUSE=fuse, KIND=kind,
                                             ONE_SIDED=one_sided, NONE=none, num_warps=4)
        return A * nck, nck
    nb = triton.cdiv(B, BLOCK_B)
    wrap_triton(_col_kernel)[(A * nb,)](x, part, value, scale, C, B, nb, center, gamma, nbatch, mul,
                                        BLOCK_B=BLOCK_B, IS64=is64, FUSE=fuse, KIND=kind, ONE_SIDED=one_sided,
                                        NONE=none, num_warps=4)
    return A * nb, 1


def group_sumsq(g: torch.Tensor, A: int, C: int, B: int) -> torch.Tensor:
    _check(g, A, C, B, "triton_group_sumsq")
    CALLS["group_sumsq"] += 1
    acc = acc_dtype(g.dtype)
    is64 = acc == torch.float64
    out = torch.empty((A, B), dtype=acc, device=g.device)
    if A * B == 0:
        return out
    with _on_device(g):
        x = g.contiguous()
        nck = max(1, triton.cdiv(C, CHUNK)) if B == 1 else 1
        part = out if nck == 1 else torch.empty((A * nck,), dtype=acc, device=g.device)
        _stage1(x, A, C, B, is64, part, out, out, fuse=False)
        if nck > 1:
            gb, kb = _tile(nck)
            wrap_triton(_penalty_finish_kernel)[(1,)](part, out, out, A, nck, 0.0, 0.0, 1.0, 1.0, 1.0, MODE=SUMS,
                                                      KIND=0, ONE_SIDED=False, NONE=True, IS64=is64, GB=gb, KB=kb,
                                                      num_warps=4)
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
    with _on_device(g):
        x = g.contiguous()
        s = scale.to(acc).contiguous()
        go = grad_output.reshape(1)
        wrap_triton(_scale_mul_kernel)[(triton.cdiv(n, BLOCK),)](x, s, go, out, n, C * B, B, BLOCK=BLOCK,
                                                                 IS64=acc == torch.float64, num_warps=4)
    return out


def group_penalty(g: torch.Tensor, A: int, C: int, B: int, kind: int, center: float, one_sided: bool,
                  reduction: int, gamma: float, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``fusedgan::group_penalty`` (value, scale) in at most two launches: the first stage sums
    squares (and, when a program holds whole groups, finishes them: penalty, scale, a partial sum
    of penalties); the second stage (one program) finishes the groups from chunk partials (one
    group per row split over several programs: ``norm="batch"``, ``r1``, large samples) and the
    reduction.  ``reduction`` NONE with whole groups per program needs no second stage."""
    _check(g, A, C, B, "triton_group_penalty")
    if kind not in (0, 1):
        raise ValueError(f"kind: fusedgan::triton_group_penalty needs 0 (gp) or 1 (r1), got {kind}")
    if reduction not in (0, 1, 2):
        raise ValueError(f"reduction: fusedgan::triton_group_penalty needs 0, 1 or 2, got {reduction}")
    if kind == 1 and A * B != 1:
        raise ValueError(f"A, B: fusedgan::triton_group_penalty: r1 needs one group (A = B = 1), got {A}, {B}")
    CALLS["group_penalty"] += 1
    acc = acc_dtype(g.dtype)
    is64 = acc == torch.float64
    none = reduction == int(Reduction.NONE)
    groups = A * B
    value = torch.empty((A, B) if none else (), dtype=acc, device=g.device)
    scale = torch.empty((A, B), dtype=acc, device=g.device)
    if groups == 0:
        if not none:  # sum of nothing: 0; mean of nothing: NaN (torch's mean)
            value.fill_(0.0 if reduction == int(Reduction.SUM) else math.nan)
        return value, scale
    mean = reduction == int(Reduction.MEAN)
    # MEAN: every group's scale times 1 / groups (rounded to the maths dtype, as the CPU kernel)
    mul = float(torch.tensor(1.0 / groups, dtype=acc)) if mean and kind == 0 else 1.0
    rdiv = float(groups) if mean else 1.0
    kw = dict(kind=kind, center=float(center), one_sided=bool(one_sided), none=none, gamma=float(gamma),
              nbatch=float(batch), mul=mul)
    with _on_device(g):
        x = g.contiguous()
        nck = max(1, triton.cdiv(C, CHUNK)) if B == 1 else 1
        if nck == 1:  # whole groups per program: the first stage finishes them
            nprog = A * triton.cdiv(B, BLOCK_B) if B > 1 else A
            part = value if none else torch.empty((nprog,), dtype=acc, device=g.device)
            _stage1(x, A, C, B, is64, part, value, scale, fuse=True, **kw)
            if none:
                return value, scale
            gb, kb = 1, 1024
            wrap_triton(_penalty_finish_kernel)[(1,)](part, value, scale, 1, nprog, 0.0, 0.0, 1.0, 1.0, rdiv,
                                                      MODE=REDUCE, KIND=0, ONE_SIDED=False, NONE=False, IS64=is64,
                                                      GB=gb, KB=kb, num_warps=4)
            return value, scale
        part = torch.empty((A * nck,), dtype=acc, device=g.device)
        _stage1(x, A, C, B, is64, part, value, scale, fuse=False)
        gb, kb = _tile(nck)
        wrap_triton(_penalty_finish_kernel)[(1,)](part, value, scale, groups, nck, kw["center"], kw["gamma"],
                                                  kw["nbatch"], mul, rdiv, MODE=EPI, KIND=kind,
                                                  ONE_SIDED=kw["one_sided"], NONE=none, IS64=is64, GB=gb, KB=kb,
                                                  num_warps=4)
    return value, scale


def launchers() -> dict:
    """The Triton twins of the penalty kernel operators (see fusedgan/triton/__init__.py)."""
    return {"group_sumsq": group_sumsq, "group_scale_mul": group_scale_mul, "group_penalty": group_penalty}


__all__ = ["CALLS", "group_penalty", "group_scale_mul", "group_sumsq", "launchers"]
