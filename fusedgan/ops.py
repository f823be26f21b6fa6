"""Operator layer: the registered kernels behind every fused loss.

``fusedgan::loss_terms`` (C++: CPU kernel, and CUDA kernel when built) and
``fusedgan::triton_loss_terms`` (Triton) share one contract; see ``csrc/ops.cpp``:

    loss_terms(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems,
               float[] label_values, float[] coefs, int reduction, bool[] need_grad)
        -> (Tensor total, Tensor terms, Tensor[] grads, Tensor[] values)

Term i is ``coef_i * reduce_i(w * elem_i(x, t))``; ``grads[i]`` is its derivative with respect to
``logits[i]``, already scaled by the reduction (empty when ``need_grad[i]`` is false); ``values``
holds per-element losses for reduction NONE (else empty).  ``total`` (0-dim) and ``terms`` (1-D)
are float32, or float64 for float64 logits.  Labels and weights, when tensors, have the logits'
dtype and either one element or as many as the logits (contiguous).
"""
from __future__ import annotations

import torch

from . import _ext, reference
from .kinds import Reduction


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def loss_terms_fake(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """Shapes and dtypes of the operator's outputs (its fake / meta implementation)."""
    x0 = logits[0]
    acc = _acc_dtype(x0.dtype)
    total = x0.new_empty((), dtype=acc)
    terms = x0.new_empty((len(logits),), dtype=acc)
    grads = [x.new_empty(x.shape) if ng else x.new_empty((0,)) for x, ng in zip(logits, need_grad)]
    values = [x.new_empty(x.shape) if reduction == Reduction.NONE else x.new_empty((0,)) for x in logits]
    return total, terms, grads, values


if _ext.HAS_CPU or _ext.HAS_CUDA:
    torch.library.register_fake("fusedgan::loss_terms")(loss_terms_fake)


def native_op():
    return torch.ops.fusedgan.loss_terms


def triton_op():
    from . import triton as _triton  # noqa: F401  (registers the operator on first use)

    return torch.ops.fusedgan.triton_loss_terms


# Backends whose backward recomputes the gradient (see autograd.py) instead of saving it.
RECOMPUTE_BACKENDS = frozenset({"triton"})


def loss_grads(backend, logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs):
    """Gradients times ``grad_outputs[i]`` (None: no gradient for term i), recomputed from logits."""
    if backend != "triton":
        raise ValueError(f"backend: {backend!r} has no gradient-recompute operator")
    triton_op()
    return torch.ops.fusedgan.triton_loss_grads(
        logits, labels, weights, elems, label_values, coefs, int(reduction), grad_outputs
    )


def loss_terms(backend, logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """Run the fused operator of ``backend`` ("cpu", "cuda" or "triton")."""
    if backend == "triton":
        op = triton_op()
    elif backend in ("cpu", "cuda"):
        op = native_op()
    else:
        raise ValueError(f"backend: {backend!r} has no fused operator")
    return op(logits, labels, weights, elems, label_values, coefs, int(reduction), need_grad)


def reference_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """The operator contract evaluated by the reference (differentiating with autograd)."""
    with torch.enable_grad():
        xs = [x.detach().requires_grad_(True) for x in logits]
        total, terms, values = reference.loss_terms(xs, labels, weights, elems, label_values, coefs, reduction)
        if reduction == Reduction.NONE:
            gs = torch.autograd.grad(values, xs, [torch.ones_like(v) for v in values], allow_unused=True)
        else:
            gs = torch.autograd.grad(total, xs, allow_unused=True)
    grads = []
    for x, g, ng in zip(logits, gs, need_grad):
        if not ng:
            grads.append(x.new_empty((0,)))
        else:
            grads.append(torch.zeros_like(x) if g is None else g.to(x.dtype).contiguous())
    if reduction != Reduction.NONE:
        values = [x.new_empty((0,)) for x in logits]
    return total.detach(), terms.detach(), grads, [v.detach() for v in values]
