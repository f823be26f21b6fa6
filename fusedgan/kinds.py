"""Loss kinds, element functions and reductions: the table every backend shares.

A GAN loss term is ``coef * reduce(w * elem(x, t))`` where ``elem`` is one of five elementwise
functions of a logit ``x`` and a label ``t``.  Each user-facing ``kind`` (``ns``, ``mm``, ``ls``,
``wgan``, ``hinge``) is a row of ``KINDS`` naming the element function, label and coefficient of
its discriminator-real, discriminator-fake and generator terms.  Kernels only know ``Elem``; the
numbering here is mirrored in ``csrc/include/fusedgan/math.h`` and in ``fusedgan/triton`` and a
test checks that they agree.

| Elem          | value                        | d value / dx            |
|---------------|------------------------------|-------------------------|
| BCE           | t*sp(-x) + (1-t)*sp(x)       | sigmoid(x) - t          |
| HALF_SQUARE   | 0.5 * (x - t)^2              | x - t                   |
| LINEAR        | -t * x                       | -t                      |
| HINGE         | relu(1 - t * x)              | -t * [1 - t*x > 0]      |
| ABS           | abs(x - t)                   | sign(x - t) (0 at x==t) |
| SOFTPLUS_NEG  | sp(-x) (label not read)      | -sigmoid(-x)            |

Relativistic kinds (``rsgan``, ``ragan``, ``ralsgan``, ``rahinge``) are rows of ``RELATIVISTIC``:
each term applies an element function to a *relativistic logit* (``r - E f``, ``f - E r``, or the
pairwise ``r - f`` / ``f - r``), which ``fusedgan::rel_gan_loss`` forms inside the operator.

The numbers behind ``Elem``, ``Reduction`` and ``RelLogit`` live in ``fusedgan/codes.py``.
"""
from __future__ import annotations

from typing import NamedTuple

from .codes import Elem, Reduction, RelLogit

REDUCTIONS = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}


class Term(NamedTuple):
    """One term of a loss: ``coef * elem(x, label)``.

    ``label`` is a float, or the name of the user argument that supplies it
    (``"real_label"``, ``"fake_label"``, ``"target"``); ``None`` there means the user may not
    override it (the kind has no such argument).
    """

    elem: Elem
    label: float | str
    coef: float = 1.0


class Kind(NamedTuple):
    d_real: Term
    d_fake: Term
    g_fake: Term


# The loss table of docs/losses.md, written as element functions.
KINDS: dict[str, Kind] = {
    # E BCE(r, t_real) + E BCE(f, t_fake);  G: E BCE(f, target) = E sp(-f) by default
    "ns": Kind(Term(Elem.BCE, "real_label"), Term(Elem.BCE, "fake_label"), Term(Elem.BCE, "target")),
    # G: -E sp(f) = -E BCE(f, 0)
    "mm": Kind(Term(Elem.BCE, "real_label"), Term(Elem.BCE, "fake_label"), Term(Elem.BCE, 0.0, -1.0)),
    # 1/2 E (r-b)^2 + 1/2 E (f-a)^2;  G: 1/2 E (f-c)^2
    "ls": Kind(Term(Elem.HALF_SQUARE, "real_label"), Term(Elem.HALF_SQUARE, "fake_label"),
               Term(Elem.HALF_SQUARE, "target")),
    # E f - E r;  G: -E f
    "wgan": Kind(Term(Elem.LINEAR, 1.0), Term(Elem.LINEAR, -1.0), Term(Elem.LINEAR, 1.0)),
    # E relu(1-r) + E relu(1+f);  G: -E f
    "hinge": Kind(Term(Elem.HINGE, 1.0), Term(Elem.HINGE, -1.0), Term(Elem.LINEAR, 1.0)),
}

class RelTerm(NamedTuple):
    """One term of a relativistic loss: ``coef * E elem(logit, label)``; ``logit`` is the
    relativistic logit it reads (``RelLogit``: ``r - E f``, ``f - E r``, or pairwise ``r - f`` /
    ``f - r`` of equal shapes)."""

    logit: RelLogit
    elem: Elem
    label: float
    coef: float = 1.0


class RelKind(NamedTuple):
    d: tuple  # RelTerms of the discriminator loss (the real-logit term first)
    g: tuple  # RelTerms of the generator loss (the fake-logit term first)
    logistic: bool  # whether sigmoid(logit) is a probability (stats report D(x), D(G(z)))


# Issue 5 section 2, as element functions.  ralsgan's (x - 1)^2 is 2 * HALF_SQUARE.
_RMF, _FMR, _RF, _FR = RelLogit.R_MINUS_MF, RelLogit.F_MINUS_MR, RelLogit.R_MINUS_F, RelLogit.F_MINUS_R
RELATIVISTIC: dict[str, RelKind] = {
    # D: E sp(-(r - f));  G: E sp(-(f - r)).  SOFTPLUS_NEG, not BCE(., 1): sp(-inf) = 0, where
    # BCE(+inf, 1) has a 0 * inf (NaN).
    "rsgan": RelKind((RelTerm(_RF, Elem.SOFTPLUS_NEG, 1.0),), (RelTerm(_FR, Elem.SOFTPLUS_NEG, 1.0),), True),
    # D: E BCE(r - mf, 1) + E BCE(f - mr, 0);  G: E BCE(f - mr, 1) + E BCE(r - mf, 0)
    "ragan": RelKind((RelTerm(_RMF, Elem.BCE, 1.0), RelTerm(_FMR, Elem.BCE, 0.0)),
                     (RelTerm(_FMR, Elem.BCE, 1.0), RelTerm(_RMF, Elem.BCE, 0.0)), True),
    # D: E (r - mf - 1)^2 + E (f - mr + 1)^2;  G: E (f - mr - 1)^2 + E (r - mf + 1)^2
    "ralsgan": RelKind((RelTerm(_RMF, Elem.HALF_SQUARE, 1.0, 2.0), RelTerm(_FMR, Elem.HALF_SQUARE, -1.0, 2.0)),
                       (RelTerm(_FMR, Elem.HALF_SQUARE, 1.0, 2.0), RelTerm(_RMF, Elem.HALF_SQUARE, -1.0, 2.0)),
                       False),
    # D: E relu(1 - (r - mf)) + E relu(1 + (f - mr));  G: E relu(1 - (f - mr)) + E relu(1 + (r - mf))
    "rahinge": RelKind((RelTerm(_RMF, Elem.HINGE, 1.0), RelTerm(_FMR, Elem.HINGE, -1.0)),
                       (RelTerm(_FMR, Elem.HINGE, 1.0), RelTerm(_RMF, Elem.HINGE, -1.0)), False),
}

# Kinds whose D(x) = sigmoid(logit) is a probability (training statistics report it).
LOGISTIC = frozenset({"ns", "mm"}) | frozenset(k for k, v in RELATIVISTIC.items() if v.logistic)

# Defaults of the user-facing label arguments.
DEFAULT_LABELS = {"real_label": 1.0, "fake_label": 0.0, "target": 1.0}


ALL_KINDS = tuple(KINDS) + tuple(RELATIVISTIC)


def is_relativistic(kind) -> bool:
    return isinstance(kind, str) and kind in RELATIVISTIC


def kind_spec(kind: str):
    """The ``Kind`` row of ``kind`` (or its ``RelKind`` row for a relativistic kind)."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        pass
    try:
        return RELATIVISTIC[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"kind: unknown loss kind {kind!r}; expected one of {sorted(ALL_KINDS)}"
        ) from None


def reduction_code(reduction: str) -> Reduction:
    try:
        return REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise ValueError(
            f"reduction: unknown reduction {reduction!r}; expected one of {sorted(REDUCTIONS)}"
        ) from None
