"""The autograd Functions: loss and gradient in one fused pass.

Two strategies, per backend.  Save (``cpu``, ``cuda``): forward calls one operator that computes
the loss terms and their gradients with respect to the logits and saves the gradients; backward
only scales them by ``grad_output``.  Recompute (``triton``): forward computes only the loss and
backward runs one kernel that recomputes the gradient from the logits and scales it: three memory
passes instead of four and two launches for a whole step, which is what a memory- and
launch-bound GPU wants, while the compute-bound CPU kernel is better off not recomputing ``exp``.
Neither syncs with the host or tests ``grad_output == 1``.  When backward runs with ``create_graph=True`` (double backward:
gradient penalties through a loss, or Hessian-vector products), or when a label or weight tensor
needs a gradient, backward recomputes through ``fusedgan.reference`` so that every higher-order
gradient is exact.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch

from . import ops
from .kinds import Reduction


class TermSpec(NamedTuple):
    """The static (non-tensor) part of an operator call."""

    backend: str
    elems: Tuple[int, ...]
    label_values: Tuple[float, ...]
    coefs: Tuple[float, ...]
    reduction: int


class LossTermsFunction(torch.autograd.Function):
    """``apply(spec, *logits, *labels, *weights)``.

    Returns ``(total, terms)`` for mean/sum reductions and ``(*values, terms)`` for ``none``;
    ``terms`` (the per-term reduced values) is not differentiable.
    """

    @staticmethod
    def forward(ctx, spec: TermSpec, *tensors):
        n = len(spec.elems)
        logits, labels, weights = tensors[:n], tensors[n : 2 * n], tensors[2 * n :]
        need_grad = [bool(ctx.needs_input_grad[1 + i]) for i in range(n)]
        recompute = spec.backend in ops.RECOMPUTE_BACKENDS
        total, terms, grads, values = ops.loss_terms(
            spec.backend, list(logits), list(labels), list(weights), list(spec.elems),
            list(spec.label_values), list(spec.coefs), spec.reduction,
            [False] * n if recompute else need_grad,
        )
        ctx.spec = spec
        ctx.need_grad = need_grad
        ctx.aux_need_grad = any(ctx.needs_input_grad[1 + n :])
        aux = [t for t in tensors[n:] if t is not None]
        ctx.aux_present = [t is not None for t in tensors[n:]]
        ctx.save_for_backward(*grads, *logits, *aux)
        ctx.mark_non_differentiable(terms)
        ctx.set_materialize_grads(False)
        if spec.reduction == Reduction.NONE:
            return (*values, terms)
        return total, terms

    @staticmethod
    def backward(ctx, *grad_outputs):
        spec = ctx.spec
        n = len(spec.elems)
        saved = ctx.saved_tensors
        grads, logits, aux_saved = saved[:n], saved[n : 2 * n], list(saved[2 * n :])
        aux = [aux_saved.pop(0) if present else None for present in ctx.aux_present]
        if torch.is_grad_enabled() or ctx.aux_need_grad:
            return (None, *_recompute(ctx, logits, aux[:n], aux[n:], grad_outputs))
        g_outs = [
            (grad_outputs[i] if spec.reduction == Reduction.NONE else grad_outputs[0]) if ctx.need_grad[i] else None
            for i in range(n)
        ]
        if spec.backend in ops.RECOMPUTE_BACKENDS:
            if all(g is None for g in g_outs):
                return (None, *([None] * (3 * n)))
            # One launch: the gradient recomputed from the logits and scaled by grad_output.
            out = ops.loss_grads(
                spec.backend, list(logits), aux[:n], aux[n:], list(spec.elems),
                list(spec.label_values), list(spec.coefs), spec.reduction, g_outs,
            )
            out = [o if g is not None else None for o, g in zip(out, g_outs)]
        else:
            out = [None if g is None else grads[i] * g for i, g in enumerate(g_outs)]
        return (None, *out, *([None] * (2 * n)))


def apply_loss_terms(spec: TermSpec, logits, labels, weights):
    """Run the loss terms of ``spec`` with autograd: the one entry point of the fused losses.

    Returns ``(total, terms)`` for mean/sum and ``(*values, terms)`` for ``none``.  The native
    backends go through ``fusedgan::gan_loss``, the same Function written in C++
    (csrc/autograd.cpp), which saves ~40 us of Python per step on small logit maps.
    """
    if spec.backend in ops.NATIVE_AUTOGRAD_BACKENDS:
        return torch.ops.fusedgan.gan_loss(
            list(logits), list(labels), list(weights), list(spec.elems),
            list(spec.label_values), list(spec.coefs), spec.reduction,
        )
    return LossTermsFunction.apply(spec, *logits, *labels, *weights)


def _recompute(ctx, logits, labels, weights, grad_outputs):
    """Exact gradients (to any order) by differentiating the reference formula."""
    spec = ctx.spec
    n = len(spec.elems)
    inputs = (*logits, *labels, *weights)
    wanted = [t is not None and bool(need) for t, need in zip(inputs, ctx.needs_input_grad[1:])]
    g_outs = list(grad_outputs[:n]) if spec.reduction == Reduction.NONE else [grad_outputs[0]]
    got = ops.exact_backward(list(logits), list(labels), list(weights), spec.elems,
                             spec.label_values, spec.coefs, spec.reduction, g_outs, wanted)
    return [g if w else None for g, w in zip(got, wanted)]
