"""The specification: every fusedgan loss as plain, differentiable PyTorch.

This module is the oracle of the test suite (evaluated in float64) and the ``"reference"``
backend.  It is written from the formulas of the loss table (README.md, docs/losses.md), not
from the element-function table the kernels use, so that a test comparing the two checks the
table too.  Everything here is differentiable to any order.

Conventions: ``r``, ``f`` are discriminator logits on real and fake data; ``sp`` is softplus;
each term is averaged over its own elements (``reduction="mean"``), summed (``"sum"``) or
returned per element (``"none"``); the discriminator loss is real term + fake term, no 1/2.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .kinds import Elem

Tensor = torch.Tensor
Label = Union[float, Tensor]


def _sp_threshold(dtype: torch.dtype) -> float:
    """Largest x whose exp(x) is finite in ``dtype``, less one: above it sp(x) = x to within
    exp(-x), far below one ulp of x (fp64: 708, fp32/bf16: 87, fp16: 10)."""
    return float(int(math.log(torch.finfo(dtype).max)) - 1)


def sp(x: Tensor) -> Tensor:
    """softplus, exact for any x: log1p(exp(x)) up to where exp overflows, x above it.
    (``F.softplus``'s default threshold 20 turns linear early, 2e-9 off at x = 20.)  NaN
    propagates to the value and every derivative, as in torch's softplus."""
    return F.softplus(x, threshold=_sp_threshold(x.dtype))


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


def _half_square(x: Tensor, t: Label) -> Tensor:
    return 0.5 * (x - t) ** 2


# kind: (term on the real logit r with label b, term on the fake logit f with label a)
_D_TERMS = {
    "ns": (bce, bce),
    "mm": (bce, bce),
    "ls": (_half_square, _half_square),
    "wgan": (lambda r, b: -r, lambda f, a: f),
    "hinge": (lambda r, b: F.relu(1 - r), lambda f, a: F.relu(1 + f)),
}


def _d_term(kind: str, side: int):
    if kind not in _D_TERMS:
        raise ValueError(f"kind: unknown loss kind {kind!r}")
    return _D_TERMS[kind][side]


def d_real_elementwise(kind: str, r: Tensor, b: Label = 1.0) -> Tensor:
    """Per-element discriminator loss on real logits."""
    return _d_term(kind, 0)(r, b)


def d_fake_elementwise(kind: str, f: Tensor, a: Label = 0.0) -> Tensor:
    """Per-element discriminator loss on fake logits."""
    return _d_term(kind, 1)(f, a)


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
    Relativistic kinds: see ``relativistic_discriminator_loss`` (labels do not apply).
    """
    if kind in RELATIVISTIC_KINDS:
        return relativistic_discriminator_loss(
            real, fake, kind, reduction=reduction, real_weight=real_weight, fake_weight=fake_weight
        )
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
    real: Optional[Tensor] = None,
):
    """G loss on fake logits (relativistic kinds also take the real logits)."""
    if kind in RELATIVISTIC_KINDS:
        return relativistic_generator_loss(fake, real, kind, reduction=reduction)
    return _reduce(_weighted(g_elementwise(kind, fake, target), weight), reduction)


# ---------------------------------------------------------------------------------------------
# Relativistic losses (Jolicoeur-Martineau 2018), with mr = E r and mf = E f differentiated
# through.  ``rsgan`` pairs real and fake logits elementwise (equal shapes).  No 1/2 anywhere.

RELATIVISTIC_KINDS = ("rsgan", "ragan", "ralsgan", "rahinge")


def _pair_terms(kind: str, a: Tensor, b: Tensor, ma: Tensor, mb: Tensor):
    """(term on a, term on b) of the side that wants ``a`` judged more real than ``b``."""
    if kind == "ragan":  # BCE(a - E b, 1), BCE(b - E a, 0)
        return bce(a - mb, 1.0), bce(b - ma, 0.0)
    if kind == "ralsgan":  # (a - E b - 1)^2, (b - E a + 1)^2
        return (a - mb - 1) ** 2, (b - ma + 1) ** 2
    if kind == "rahinge":  # relu(1 - (a - E b)), relu(1 + (b - E a))
        return F.relu(1 - (a - mb)), F.relu(1 + (b - ma))
    raise ValueError(f"kind: unknown relativistic loss kind {kind!r}")


def relativistic_discriminator_loss(
    real: Tensor, fake: Tensor, kind: str, *, reduction: str = "mean",
    real_weight: Optional[Tensor] = None, fake_weight: Optional[Tensor] = None,
):
    """rsgan: ``E sp(-(r - f))``; ragan / ralsgan / rahinge: the term on ``r`` and ``E f`` plus
    the term on ``f`` and ``E r``.  ``reduction="none"``: per-element tensor (rsgan) or pair."""
    if kind == "rsgan":
        return _reduce(_weighted(sp(-(real - fake)), real_weight), reduction)
    lr, lf = _pair_terms(kind, real, fake, real.mean(), fake.mean())
    lr, lf = _weighted(lr, real_weight), _weighted(lf, fake_weight)
    if reduction == "none":
        return lr, lf
    return _reduce(lr, reduction) + _reduce(lf, reduction)


def relativistic_generator_loss(fake: Tensor, real: Tensor, kind: str, *, reduction: str = "mean"):
    """The discriminator's loss with the roles of real and fake swapped; the gradient reaches
    ``real`` too.  ``reduction="none"``: per-element tensor (rsgan) or pair (fake term, real term)."""
    if kind == "rsgan":
        return _reduce(sp(-(fake - real)), reduction)
    lf, lr = _pair_terms(kind, fake, real, fake.mean(), real.mean())
    if reduction == "none":
        return lf, lr
    return _reduce(lf, reduction) + _reduce(lr, reduction)


def feature_matching_loss(fake_feats, real_feats, weights=None) -> Tensor:
    """``sum_i w_i * E |fake_i - real_i|`` over layers (pix2pixHD / SPADE feature matching)."""
    total = None
    for i, (a, b) in enumerate(zip(fake_feats, real_feats)):
        term = (a - b).abs().mean() * (1.0 if weights is None else weights[i])
        total = term if total is None else total + term
    return total


STAT_COLS = 4  # columns of a loss_terms_stats row (kStatCols in csrc, STAT_COLS in the Triton kernels)


def logit_sums(x: Tensor) -> Tensor:
    """``[sum x, sum sigmoid(x), count x > 0, count x < 0]`` (acc dtype): one row of
    loss_terms_stats.  A NaN or an exact 0 is counted in neither of the last two."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xa = x.detach().to(acc)
    return torch.stack([xa.sum(), torch.sigmoid(xa).sum(), (xa > 0).sum().to(acc), (xa < 0).sum().to(acc)])


# ---------------------------------------------------------------------------------------------
# The kernel contract restated: ``elem`` functions and the ``loss_terms`` operator.  Used as the
# reference backend of the operator layer and to recompute for double backward.


# Elem code: value(x, t), the formula of docs/operators.md (derivatives by autograd, so NaN and inf
# follow torch's own conventions, e.g. relu(d).square()'s gradient 2 relu(d) at a NaN d).
ELEM_VALUE = {
    Elem.BCE: bce,
    Elem.HALF_SQUARE: _half_square,
    Elem.LINEAR: lambda x, t: -t * x,
    Elem.HINGE: lambda x, t: F.relu(1 - t * x),
    Elem.ABS: lambda x, t: (x - t).abs(),
    Elem.SOFTPLUS_NEG: lambda x, t: sp(-x),
    Elem.SQ_RELU_ABOVE: lambda x, t: torch.relu(x - t).square(),
    Elem.SQ_RELU_BELOW: lambda x, t: torch.relu(t - x).square(),
}


def elem_value(elem: int, x: Tensor, t: Label) -> Tensor:
    try:
        fn = ELEM_VALUE[Elem(elem)]
    except (ValueError, KeyError):
        raise ValueError(f"elem: unknown element function {elem!r}") from None
    return fn(x, t)


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


# ---------------------------------------------------------------------------------------------
# Penalties on a gradient tensor ``g`` (shape ``[B, ...]``, typically the gradient of D's output
# with respect to its input, taken with ``create_graph=True``).  Computed in the accumulation
# dtype (float64 for float64 ``g``, float32 otherwise), so fp16 values up to 65504 square safely.

PENALTY_NORMS = ("sample", "pixel", "batch")


def group_sumsq(g: Tensor, norm: str = "sample") -> Tensor:
    """Sum of squares per penalty group, in the accumulation dtype.

    ``"sample"``: over all non-batch dims (shape ``[B]``); ``"pixel"``: over dim 1
    (``[B, *g.shape[2:]]``); ``"batch"``: over everything (0-dim).
    """
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    sq = g.to(acc).square()
    if norm == "sample":  # (explicit size: -1 cannot be inferred for an empty batch)
        return sq.reshape(g.shape[0], math.prod(g.shape[1:])).sum(1)
    if norm == "pixel":
        return sq.sum(1)
    if norm == "batch":
        return sq.sum()
    raise ValueError(f"norm: unknown penalty norm {norm!r}; expected one of {list(PENALTY_NORMS)}")


def safe_sqrt(s: Tensor) -> Tensor:
    """sqrt(s) for s >= 0 whose derivatives (of every order) are 0 at s = 0 instead of inf/NaN.
    A NaN s stays NaN (``s * 0``), in the value and in the gradient that reaches it."""
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, torch.ones_like(s)).sqrt(), s * 0)


def gradient_penalty(g: Tensor, *, center: float = 1.0, one_sided: bool = False, norm: str = "sample",
                     reduction: str = "mean") -> Tensor:
    """``(||g_group|| - center)^2`` per group (``relu(||g|| - center)^2`` if ``one_sided``), reduced.

    WGAN-GP (Gulrajani et al.) with ``norm="sample"``; ``"pixel"`` and ``"batch"`` norms as in
    BasicSR / torchgan.  ``reduction``: ``"mean"`` over groups, ``"sum"``, or ``"none"`` (per group,
    shaped as ``group_sumsq``).  Zero gradient at ``g = 0``.
    """
    d = safe_sqrt(group_sumsq(g, norm)) - center
    if one_sided:
        d = F.relu(d)
    return _reduce(d.square(), reduction)


def r1_penalty(g: Tensor, gamma: float = 10.0) -> Tensor:
    """R1 (Mescheder et al.), StyleGAN2 convention: ``(gamma / 2) * mean_b sum(g_b^2)``."""
    return (gamma / 2) * group_sumsq(g, "sample").mean()


def r2_penalty(g: Tensor, gamma: float = 10.0) -> Tensor:
    """R2: the R1 formula on the gradient at fake data."""
    return r1_penalty(g, gamma)
