"""fusedgan's Triton backend: the ``fusedgan::triton_loss_terms`` operator (and its backward).

``triton_loss_terms`` follows the contract of ``fusedgan::loss_terms`` (see ``fusedgan/ops.py``)::

    triton_loss_terms(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems,
                      float[] label_values, float[] coefs, int reduction, bool[] need_grad)
        -> (Tensor total, Tensor terms, Tensor[] grads, Tensor[] values)

Terms are launched two at a time (the discriminator's real and fake logits share one launch; a
longer list takes ``ceil(n / 2)`` launch pairs, each adding into ``total`` in order).  Per pair:

* small problems (``<= SINGLE_MAX`` elements in all): one launch, one program loops over both
  tensors and writes ``terms`` and ``total`` itself;
* otherwise one launch over ``cdiv(n_a, BLOCK) + cdiv(n_b, BLOCK)`` programs writing gradients
  and per-program partial sums, then a one-program launch summing the partials in a fixed order.

``triton_loss_terms_stats`` (same arguments) also returns ``stats`` (``[n, 4]``: per term the
sums of ``x``, ``sigmoid(x)``, ``[x > 0]`` and ``[x < 0]``), from the same launches (``STATS`` switch).

``triton_loss_grads`` is the three-pass alternative for backward (docs/design.md): forward
runs ``triton_loss_terms`` with ``need_grad`` all false (it only reads ``x``), and backward
recomputes the gradient already multiplied by ``grad_output`` in one launch over all terms (read
``x``, write the gradient), instead of saving the gradient in forward and scaling it afterwards::

    triton_loss_grads(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems,
                      float[] label_values, float[] coefs, int reduction, Tensor?[] grad_outputs)
        -> Tensor[] grads

``grad_outputs[i]`` is the gradient flowing into term ``i``: the 0-dim gradient of ``total`` for
mean / sum, the per-element gradient of ``values[i]`` for ``none`` (one element or ``x``'s shape;
``None`` leaves ``grads[i]`` empty).

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (how CI tests it).  No host
synchronisation, no autotuning: block size and grid depend only on the sizes, so results are the
same bits run to run.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

import triton

from ..codes import STAT_COLS, Operand, Reduction, acc_dtype
from . import kernels as _k
from ._device import on_device as _on_device
from . import penalty as _penalty
from ._compat import wrap_triton


# Size policy (module attributes so tests can force the multi-program path on tiny inputs).
SINGLE_MAX = 4096  # total elements up to which one program does a whole pair of terms
SINGLE_BLOCK = 1024  # largest block of the single-program path
BLOCK_MEDIUM, WARPS_MEDIUM = 1024, 4
BLOCK_LARGE, WARPS_LARGE = 2048, 8
# Float64 maths take two registers a value and libdevice exp / log: at the float32 blocks the
# loss kernel needs 140 registers (255 and spills at the former 4096-element block), so float64
# runs 2 elements per thread (56 registers, 50% occupancy) and 4 in the single program (80).
# Registers per variant: tools/gpu_compile.py (the gpu-compile stage of tests/run.sh).
BLOCK_F64, WARPS_F64 = 512, 8
SINGLE_BLOCK_F64 = 512
LARGE_FROM = 1 << 20  # total elements from which the large block is used
RBLOCK = 1024  # partials summed per iteration of the finishing kernel

# How often each operator ran (eager calls; tests use it to prove the Triton path ran).
CALLS = {"loss_terms": 0, "loss_grads": 0, "loss_terms_stats": 0}

_NONE, _MEAN = int(Reduction.NONE), int(Reduction.MEAN)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _aux_mode(t: Optional[torch.Tensor], n, what: str):
    """(tensor, mode) for a label / weight / grad_output: 0 absent, 1 broadcast, 2 per element."""
    if t is None:
        return None, int(Operand.ARG)
    if t.numel() == 1:
        return t.reshape(1), int(Operand.SCALAR)
    if t.numel() != n:
        raise ValueError(f"{what}: expected 1 or {n} elements, got {t.numel()}")
    if t.dim() > 0 and all(s == 0 for s in t.stride()):  # an expanded scalar (e.g. from .sum())
        return t.as_strided((1,), (1,)), int(Operand.SCALAR)
    return t.contiguous(), int(Operand.FULL)


class _Term:
    """One term's tensors, modes and scalars, ready to launch."""

    def __init__(self, x, label, weight, elem, label_value, coef, reduction, go=None):
        self.x = x.contiguous()  # non-contiguous logits: one copy
        n = self.x.numel()
        self.n = n
        self.t, self.lab_mode = _aux_mode(label, n, "labels")
        self.w, self.w_mode = _aux_mode(weight, n, "weights")
        self.go, self.go_mode = _aux_mode(go, n, "grad_outputs")
        self.elem = int(elem)
        self.label = float(label_value)
        self.coef = float(coef)
        if reduction == _MEAN:
            self.scale = self.coef / n if n > 0 else math.nan  # mean of nothing is NaN
        else:
            self.scale = self.coef
        self.g = None  # gradient output (when wanted)
        self.v = None  # per-element values (reduction none)


def _block_config(is64: bool, n_total: int) -> tuple:
    """(BLOCK, num_warps) of the many-program loss kernel."""
    if is64:
        return BLOCK_F64, WARPS_F64
    return (BLOCK_MEDIUM, WARPS_MEDIUM) if n_total < LARGE_FROM else (BLOCK_LARGE, WARPS_LARGE)


def _launch_pair(a: _Term, b: Optional[_Term], *, terms, total, term_off, accum, is64, grads_only,
                 stats=None):
    """Launch the kernel(s) for terms ``a`` and ``b`` (``b`` may be None); ``stats`` ([n, 4]):
    also write the terms' statistics sums (loss_terms_stats)."""
    two = b is not None
    bb = b if two else a
    n_total = a.n + (b.n if two else 0)
    dummy_out = terms if terms is not None else a.g
    single = (not grads_only) and n_total <= SINGLE_MAX
    if single:
        block = min(SINGLE_BLOCK_F64 if is64 else SINGLE_BLOCK, max(16, _next_pow2(max(a.n, bb.n if two else 0))))
        warps, grid, partials = 4, (1,), dummy_out
    else:
        block, warps = _block_config(is64, n_total)
        progs_a = triton.cdiv(a.n, block)
        progs_b = triton.cdiv(b.n, block) if two else 0
        grid = (progs_a + progs_b,)
        if progs_a + progs_b == 0:
            partials = None
        elif grads_only:
            partials = dummy_out
        else:
            partials = torch.empty((progs_a + progs_b,), dtype=terms.dtype, device=a.x.device)
    progs_a_arg = 0 if single else triton.cdiv(a.n, block)
    want_stats = stats is not None
    spartials = dummy_out
    if want_stats and not single and grid[0] > 0:
        spartials = torch.empty((grid[0], STAT_COLS), dtype=stats.dtype, device=a.x.device)

    def ptrs(t: _Term):
        return (t.x, t.t if t.t is not None else t.x, t.w if t.w is not None else t.x,
                t.go if t.go is not None else t.x,
                t.g if t.g is not None else dummy_out, t.v if t.v is not None else dummy_out)

    if single or grid[0] > 0:
        wrap_triton(_k._loss_kernel)[grid](
            *ptrs(a), a.n, a.label, a.coef, a.scale, progs_a_arg,
            *ptrs(bb), bb.n if two else 0, bb.label, bb.coef, bb.scale,
            partials, dummy_out if terms is None else terms,
            dummy_out if total is None else total, term_off,
            stats if want_stats else dummy_out, spartials,
            ELEM_A=a.elem, LAB_A=a.lab_mode, W_A=a.w_mode, GO_A=a.go_mode,
            GRAD_A=a.g is not None, VAL_A=a.v is not None,
            ELEM_B=bb.elem, LAB_B=bb.lab_mode, W_B=bb.w_mode, GO_B=bb.go_mode,
            GRAD_B=two and bb.g is not None, VAL_B=two and bb.v is not None,
            TWO=two, SUM=not grads_only, SINGLE=single, ACCUM=accum, IS64=is64, BLOCK=block,
            STATS=want_stats, num_warps=warps,
        )
    if grads_only or single:
        return
    progs_a, progs_b = triton.cdiv(a.n, block), (triton.cdiv(b.n, block) if two else 0)
    wrap_triton(_k._finish_kernel)[(1,)](
        partials if partials is not None else terms, terms, total, term_off, progs_a, progs_b,
        a.scale, bb.scale, stats if want_stats else terms, spartials if want_stats else terms,
        TWO=two, ACCUM=accum, IS64=is64, RBLOCK=RBLOCK, STATS=want_stats, num_warps=4,
    )


def _check(logits, labels, weights, elems, label_values, coefs):
    n = len(logits)
    if n == 0:
        raise ValueError("logits: expected at least one tensor")
    if not (len(labels) == len(weights) == len(elems) == len(label_values) == len(coefs) == n):
        raise ValueError("loss_terms: logits, labels, weights, elems, label_values and coefs differ in length")
    for e in elems:
        if int(e) not in _k.ELEMS:
            raise ValueError(f"elems: unknown element function code {e}")


def loss_terms(logits: List[torch.Tensor], labels: List[Optional[torch.Tensor]],
               weights: List[Optional[torch.Tensor]], elems: List[int], label_values: List[float],
               coefs: List[float], reduction: int, need_grad: List[bool],
               ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """The body of ``fusedgan::triton_loss_terms`` (see the module docstring)."""
    CALLS["loss_terms"] += 1
    return _loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad, False)


def loss_terms_stats(logits: List[torch.Tensor], labels: List[Optional[torch.Tensor]],
                     weights: List[Optional[torch.Tensor]], elems: List[int], label_values: List[float],
                     coefs: List[float], reduction: int, need_grad: List[bool],
                     ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor], torch.Tensor]:
    """The body of ``fusedgan::triton_loss_terms_stats``: ``loss_terms`` plus ``stats`` ([n, 4]:
    per term the sums of x, sigmoid(x), [x > 0] and [x < 0]) from the same launches."""
    CALLS["loss_terms_stats"] += 1
    return _loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad, True)


def _loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad, want_stats):
    _check(logits, labels, weights, elems, label_values, coefs)
    x0 = logits[0]
    acc = acc_dtype(x0.dtype)
    is64 = acc == torch.float64
    total = torch.empty((), dtype=acc, device=x0.device)
    terms = torch.empty((len(logits),), dtype=acc, device=x0.device)
    stats = torch.empty((len(logits), STAT_COLS), dtype=acc, device=x0.device) if want_stats else None
    specs = []
    for i, x in enumerate(logits):
        t = _Term(x, labels[i], weights[i], elems[i], label_values[i], coefs[i], reduction)
        if need_grad[i]:
            t.g = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        if reduction == _NONE:
            t.v = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        specs.append(t)
    with _on_device(x0):
        for k in range(0, len(specs), 2):
            pair = specs[k : k + 2]
            _launch_pair(pair[0], pair[1] if len(pair) == 2 else None, terms=terms, total=total,
                         term_off=k, accum=k > 0, is64=is64, grads_only=False, stats=stats)
    grads = [t.g if t.g is not None else x.new_empty((0,)) for t, x in zip(specs, logits)]
    values = [t.v if t.v is not None else x.new_empty((0,)) for t, x in zip(specs, logits)]
    if want_stats:
        return total, terms, grads, values, stats
    return total, terms, grads, values


def loss_grads(logits: List[torch.Tensor], labels: List[Optional[torch.Tensor]],
               weights: List[Optional[torch.Tensor]], elems: List[int], label_values: List[float],
               coefs: List[float], reduction: int, grad_outputs: List[Optional[torch.Tensor]],
               ) -> List[torch.Tensor]:
    """The body of ``fusedgan::triton_loss_grads``: gradients times grad_output, one launch per pair."""
    _check(logits, labels, weights, elems, label_values, coefs)
    if len(grad_outputs) != len(logits):
        raise ValueError("grad_outputs: expected one entry per logits tensor")
    CALLS["loss_grads"] += 1
    is64 = logits[0].dtype == torch.float64
    specs, out = [], []
    for i, x in enumerate(logits):
        go = grad_outputs[i]
        if go is None:
            out.append(x.new_empty((0,)))
            continue
        t = _Term(x, labels[i], weights[i], elems[i], label_values[i], coefs[i], reduction, go=go)
        t.g = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        out.append(t.g)
        if t.n > 0:
            specs.append(t)
    with _on_device(logits[0]):
        for k in range(0, len(specs), 2):
            pair = specs[k : k + 2]
            _launch_pair(pair[0], pair[1] if len(pair) == 2 else None, terms=None, total=None,
                         term_off=0, accum=False, is64=is64, grads_only=True)
    return out


def launchers() -> dict:
    """The Triton twin of each kernel operator, by the C++ operator's name; fusedgan/ops.py
    registers them as ``fusedgan::triton_<name>`` with the C++ schemas."""
    return {"loss_terms": loss_terms, "loss_terms_stats": loss_terms_stats, "loss_grads": loss_grads,
            **_penalty.launchers()}


__all__ = ["CALLS", "launchers", "loss_grads", "loss_terms", "loss_terms_stats"]
