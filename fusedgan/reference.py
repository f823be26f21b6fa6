"""The specification: every fusedgan loss as plain, differentiable PyTorch.

This module is the oracle of the test suite (evaluated in float64) and the ``"reference"``
backend.  It is written from the formulas of the loss table (README / DESIGN.md section 3), not
from the element-function table the kernels use, so that a test comparing the two checks the
table too.  Everything here is differentiable to any order.

Conventions: ``r``, ``f`` are discriminator logits on real and fake data; ``sp`` is softplus;
each term is averaged over its own elements (``reduction="mean"``), summed (``"sum"``) or
returned per element (``"none"``); the discriminator loss is real term + fake term, no 1/2.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

from .kinds import Elem

Tensor = torch.Tensor
Label = Union[float, Tensor]


def sp(x: Tensor) -> Tensor:
    """softplus, stable for any x (torch's own implementation)."""
    return F.softplus(x)


def bce(x: Tensor, t: Label) -> Tensor:
    """Binary cross-entropy with logits and (soft) label t: t*sp(-x) + (1-t)*sp(x)."""
    return t * sp(-x) + (1 - t) * sp(x)


def _reduce(v: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    if reduction == "none":
        return v
    raise ValueError(f"reduction: unknown reduction {reduction!r}")


def _weighted(v: Tensor, w: Optional[Tensor]) -> Tensor:
    return v if w is None else v * w


def d_real_elementwise(kind: str, r: Tensor, b: Label = 1.0) -> Tensor:
    """Per-element discriminator loss on real logits."""
    if kind in ("ns", "mm"):
        return bce(r, b)
    if kind == "ls":
        return 0.5 * (r - b) ** 2
    if kind == "wgan":
        return -r
    if kind == "hinge":
        return F.relu(1 - r)
    raise ValueError(f"kind: unknown loss kind {kind!r}")


def d_fake_elementwise(kind: str, f: Tensor, a: Label = 0.0) -> Tensor:
    """Per-element discriminator loss on fake logits."""
    if kind in ("ns", "mm"):
        return bce(f, a)
    if kind == "ls":
        return 0.5 * (f - a) ** 2
    if kind == "wgan":
        return f
    if kind == "hinge":
        return F.relu(1 + f)
    raise ValueError(f"kind: unknown loss kind {kind!r}")


def g_elementwise(kind: str, f: Tensor, c: Label = 1.0) -> Tensor:
    """Per-element generator loss on fake logits."""
    if kind == "ns":
        return bce(f, c)  # = sp(-f) for c = 1
    if kind == "mm":
        # -sp(f) = log(1 - sigmoid(f)), written as -BCE(f, 0) so that a -inf logit gives NaN
        # like every other BCE term (torch's BCE-with-logits formula: 0 * inf).
        return -bce(f, 0.0)
    if kind == "ls":
        return 0.5 * (f - c) ** 2
    if kind in ("wgan", "hinge"):
        return -f
    raise ValueError(f"kind: unknown loss kind {kind!r}")


def discriminator_loss(
    real: Tensor,
    fake: Tensor,
    kind: str = "ns",
    *,
    reduction: str = "mean",
    real_label: Label = 1.0,
    fake_label: Label = 0.0,
    real_weight: Optional[Tensor] = None,
    fake_weight: Optional[Tensor] = None,
):
    """D loss: real term + fake term (each reduced over its own elements).

    With ``reduction="none"`` returns the pair ``(real_loss, fake_loss)`` of per-element tensors.
    """
    lr = _weighted(d_real_elementwise(kind, real, real_label), real_weight)
    lf = _weighted(d_fake_elementwise(kind, fake, fake_label), fake_weight)
    if reduction == "none":
        return lr, lf
    return _reduce(lr, reduction) + _reduce(lf, reduction)


def generator_loss(
    fake: Tensor,
    kind: str = "ns",
    *,
    reduction: str = "mean",
    target: Label = 1.0,
    weight: Optional[Tensor] = None,
):
    """G loss on fake logits."""
    return _reduce(_weighted(g_elementwise(kind, fake, target), weight), reduction)


# ---------------------------------------------------------------------------------------------
# The kernel contract restated: ``elem`` functions and the ``loss_terms`` operator.  Used as the
# reference backend of the operator layer and to recompute for double backward.


def elem_value(elem: int, x: Tensor, t: Label) -> Tensor:
    elem = Elem(elem)
    if elem is Elem.BCE:
        return bce(x, t)
    if elem is Elem.HALF_SQUARE:
        return 0.5 * (x - t) ** 2
    if elem is Elem.LINEAR:
        return -t * x
    if elem is Elem.HINGE:
        return F.relu(1 - t * x)
    raise ValueError(f"elem: unknown element function {elem!r}")


def loss_terms(logits, labels, weights, elems, label_values, coefs, reduction: int):
    """Differentiable restatement of ``fusedgan::loss_terms`` (without the gradient outputs).

    Returns ``(total, terms, values)``: the 0-dim total, the 1-D tensor of per-term values and,
    for reduction NONE, the per-element loss tensors (else an empty list).  Computed in the
    accumulation dtype (float64 for float64 logits, float32 otherwise).
    """
    acc = torch.float64 if logits[0].dtype == torch.float64 else torch.float32
    term_vals, values = [], []
    for x, lab, w, e, tv, c in zip(logits, labels, weights, elems, label_values, coefs):
        xa = x.to(acc)
        t = tv if lab is None else lab.to(acc)
        v = c * elem_value(e, xa, t)
        if w is not None:
            v = v * w.to(acc)
        if reduction == 0:
            values.append(v.reshape(x.shape).to(x.dtype))
            term_vals.append(v.sum())
        elif reduction == 1:
            term_vals.append(v.mean())
        else:
            term_vals.append(v.sum())
    terms = torch.stack(term_vals)
    total = term_vals[0]
    for tv in term_vals[1:]:
        total = total + tv
    return total, terms, values
