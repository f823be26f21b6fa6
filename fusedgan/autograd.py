"""The autograd Functions: loss and gradient in one fused pass.

Forward calls one operator that computes the loss terms and their gradients with respect to the
logits and saves the gradients; backward only scales them by ``grad_output`` (no host sync, no
test of ``grad_output == 1``).  When backward runs with ``create_graph=True`` (double backward:
gradient penalties through a loss, or Hessian-vector products), or when a label or weight tensor
needs a gradient, backward recomputes through ``fusedgan.reference`` so that every higher-order
gradient is exact.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch

from . import ops, reference
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
        total, terms, grads, values = ops.loss_terms(
            spec.backend, list(logits), list(labels), list(weights),
            list(spec.elems), list(spec.label_values), list(spec.coefs), spec.reduction, need_grad,
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
        if torch.is_grad_enabled() or ctx.aux_need_grad:
            aux = [aux_saved.pop(0) if present else None for present in ctx.aux_present]
            return (None, *_recompute(ctx, logits, aux[:n], aux[n:], grad_outputs))
        out = []
        for i in range(n):
            g_out = grad_outputs[i] if spec.reduction == Reduction.NONE else grad_outputs[0]
            if not ctx.need_grad[i] or g_out is None:
                out.append(None)
            else:
                out.append(grads[i] * g_out)
        return (None, *out, *([None] * (2 * n)))


def _recompute(ctx, logits, labels, weights, grad_outputs):
    """Exact gradients (to any order) by differentiating the reference formula."""
    spec = ctx.spec
    n = len(spec.elems)
    inputs = [*logits, *labels, *weights]
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad[1:]) if t is not None and need]
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        total, _, values = reference.loss_terms(
            list(logits), labels, weights, spec.elems, spec.label_values, spec.coefs, spec.reduction
        )
        if spec.reduction == Reduction.NONE:
            pairs = [(v, g) for v, g in zip(values, grad_outputs[:n]) if g is not None]
        else:
            pairs = [(total, grad_outputs[0])] if grad_outputs[0] is not None else []
        if not pairs or not wanted:
            return [None] * len(inputs)
        outs, gos = zip(*pairs)
        got = torch.autograd.grad(outs, wanted, gos, create_graph=create_graph, allow_unused=True)
    got = iter(got)
    result = []
    for t, need in zip(inputs, ctx.needs_input_grad[1:]):
        if t is not None and need:
            g = next(got)
            result.append(None if g is None else g.to(t.dtype))
        else:
            result.append(None)
    return result
