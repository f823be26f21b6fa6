"""Gradient penalties (WGAN-GP, DRAGAN, R1, R2): one pass forward, one pass backward.

The penalties act on a gradient tensor ``g`` (``[B, ...]``), usually
``torch.autograd.grad(D(x).sum(), x, create_graph=True)[0]``; their backward flows into ``g`` and
from there, through the double backward, into D's parameters.

Every fused backend runs the one penalty operator ``fusedgan::gan_penalty`` (C++ autograd,
csrc/penalty.cpp): ``g`` is viewed as ``[A, C, B]`` with one penalty group per column
``g[a, :, b]``; forward is one ``group_penalty`` kernel (sums of squares, then the per-group
penalty, its ``scale = d penalty / d g / g`` and the reduction in the reduction's second stage),
backward one ``group_scale_mul`` pass.  The ``reference`` backend runs ``fusedgan.reference``.  With
``create_graph=True`` the backward recomputes through the reference, so higher-order gradients
stay exact.  Contracts: docs/operators.md.

| function | per group | default reduction |
|---|---|---|
| ``gradient_penalty`` | ``(||g|| - center)^2`` (``relu(||g|| - center)^2`` one-sided) | mean over groups |
| ``r1_penalty`` / ``r2_penalty`` | ``(gamma / 2) * sum(g_b^2)`` | mean over the batch |

Norms: ``"sample"`` over all non-batch dims (WGAN-GP paper, StudioGAN, CycleGAN), ``"pixel"``
over dim 1 (BasicSR, mmagic), ``"batch"`` over the whole tensor (torchgan).
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Tuple

import torch

from . import plan as P
from . import reference
from .codes import PenaltyKind, Reduction
from .kinds import reduction_code

Tensor = torch.Tensor

NORMS = reference.PENALTY_NORMS
REDUCTIONS = ("mean", "sum", "none")


def _check_g(g, min_dim: int, what: str) -> Tensor:
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"g: expected a torch.Tensor (the gradient), got {type(g).__name__}")
    if g.dtype not in P.FLOAT_DTYPES:
        raise TypeError(f"g: must be float16, bfloat16, float32 or float64, got {g.dtype}")
    if g.layout != torch.strided:
        raise TypeError(f"g: expected a dense (strided) tensor, got layout {g.layout}")
    if g.dim() < min_dim:
        raise ValueError(f"g: {what} needs a tensor with at least {min_dim} dims (batch first), "
                         f"got shape {tuple(g.shape)}")
    # a negative-bit view (torch._neg_view): the kernels read memory, so materialise the sign
    # (self when there is none; no is_neg() branch, which torch.compile cannot trace)
    return g.resolve_neg()


def _check_real(value, name: str, *, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    # comparisons, not math.isfinite: torch.compile(dynamic=True) passes a SymFloat here
    if not abs(value) < math.inf or (nonneg and value < 0):
        raise ValueError(f"{name}: expected a finite{' non-negative' if nonneg else ''} number, got {value}")
    return value


def _layout(g: Tensor, norm: str) -> Tuple[Tuple[int, int, int], Tuple[int, ...]]:
    """(A, C, B) of the operator view and the shape of the per-group values."""
    n = g.numel()
    if norm == "batch":
        return (1, n, 1), ()
    a = g.shape[0]
    if norm == "sample":
        return (a, math.prod(g.shape[1:]), 1), (a,)
    return (a, g.shape[1], math.prod(g.shape[2:])), (a, *g.shape[2:])


# ---------------------------------------------------------------------------------------------
# Functional API.


def gradient_penalty(g: Tensor, *, center: float = 1.0, one_sided: bool = False, norm: str = "sample",
                     reduction: str = "mean", backend: Optional[str] = None) -> Tensor:
    """``E_group (||g_group|| - center)^2`` (one-sided: ``relu(||g|| - center)^2``).

    ``norm``: ``"sample"`` (L2 over all non-batch dims; WGAN-GP), ``"pixel"`` (over dim 1;
    BasicSR, mmagic) or ``"batch"`` (over the whole tensor; torchgan).  ``reduction``: ``"mean"``
    over groups, ``"sum"``, or ``"none"`` (per group: ``[B]``, ``[B, *g.shape[2:]]`` or 0-dim).
    Float32 result (float64 for float64 ``g``); finite with a zero gradient at ``g = 0``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm: unknown penalty norm {norm!r}; expected one of {list(NORMS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: unknown reduction {reduction!r}; expected one of {list(REDUCTIONS)}")
    g = _check_g(g, 0 if norm == "batch" else 2, f"norm={norm!r}")
    center = _check_real(center, "center")
    if not isinstance(one_sided, bool):
        raise TypeError(f"one_sided: expected a bool, got {type(one_sided).__name__}")
    layout, group_shape = _layout(g, norm)
    args = (g, *layout, int(PenaltyKind.GP), center, one_sided, int(reduction_code(reduction)), 0.0,
            g.shape[0] if g.dim() else 1, list(group_shape), norm)
    return P.run("gan_penalty", args, g.device, backend)


def r1_penalty(g: Tensor, gamma: float = 10.0, *, backend: Optional[str] = None) -> Tensor:
    """R1 (Mescheder et al. 2018), StyleGAN2 convention: ``(gamma / 2) * E_b sum(g_b^2)``.

    ``g`` is the gradient of D's output at real data.  Float32 result (float64 for float64 ``g``).
    """
    g = _check_g(g, 2, "r1_penalty")
    gamma = _check_real(gamma, "gamma", nonneg=True)
    args = (g, 1, g.numel(), 1, int(PenaltyKind.R1), 0.0, False, int(Reduction.MEAN), gamma, g.shape[0], [],
            "sample")
    return P.run("gan_penalty", args, g.device, backend)


def r2_penalty(g: Tensor, gamma: float = 10.0, *, backend: Optional[str] = None) -> Tensor:
    """R2: the R1 formula on the gradient of D's output at fake data."""
    return r1_penalty(g, gamma, backend=backend)


# ---------------------------------------------------------------------------------------------
# One-line penalty terms: build the inputs, run D, take the gradient, apply the penalty.


def _input_grad(D: Callable, x: Tensor, scaler) -> Tensor:
    """``d sum(D(x)) / d x`` with ``create_graph=True``.

    With an enabled ``torch.amp.GradScaler`` the gradient is taken of the scaled output and then
    unscaled (the PyTorch AMP recipe for gradient penalties), so fp16 gradients do not underflow.
    The scale is read as a tensor: no host synchronisation.
    """
    out = D(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    total = out.float().sum()  # summed in float32: a scaled fp16 sum could overflow
    enabled = scaler is not None and scaler.is_enabled()
    if enabled:
        total = scaler.scale(total)
    (g,) = torch.autograd.grad(total, x, create_graph=True)
    if enabled:
        inv = getattr(scaler, "_scale", None)
        inv = (1.0 / scaler.get_scale()) if inv is None else inv.double().reciprocal().float()
        g = g * inv
    return g


def _batch_shape(x: Tensor) -> Tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.dim() - 1)


def wgan_gp(D: Callable, real: Tensor, fake: Tensor, weight: float = 10.0, *, center: float = 1.0,
            norm: str = "sample", one_sided: bool = False, scaler=None,
            backend: Optional[str] = None) -> Tensor:
    """``weight * gradient_penalty(dD/dx at x_hat)`` with ``x_hat = u * real + (1 - u) * fake``.

    WGAN-GP (Gulrajani et al. 2017): one ``u ~ U[0, 1)`` per sample; ``real`` and ``fake`` are
    detached.  Pass the training loop's ``torch.amp.GradScaler`` as ``scaler`` under autocast.
    """
    _check_g(real, 2, "wgan_gp")
    if not isinstance(fake, torch.Tensor) or fake.shape != real.shape:
        raise ValueError(f"fake: expected a tensor of real's shape {tuple(real.shape)}")
    weight = _check_real(weight, "weight")
    u = torch.rand(_batch_shape(real), device=real.device, dtype=real.dtype)
    x = torch.lerp(fake.detach(), real.detach(), u).requires_grad_(True)
    g = _input_grad(D, x, scaler)
    return weight * gradient_penalty(g, center=center, one_sided=one_sided, norm=norm, backend=backend)


def dragan(D: Callable, real: Tensor, weight: float = 10.0, *, center: float = 1.0, noise_scale: float = 0.5,
           norm: str = "sample", scaler=None, backend: Optional[str] = None) -> Tensor:
    """DRAGAN (Kodali et al. 2017): the gradient penalty around perturbed real data.

    Convention (the authors' code): ``x_p = real + noise_scale * std(real) * U[0, 1)`` elementwise
    (``std`` over the whole batch), then ``x_hat = u * real + (1 - u) * x_p`` with one
    ``u ~ U[0, 1)`` per sample; penalty ``weight * (||dD/dx(x_hat)|| - center)^2``, ``center = 1``
    (the paper's ``k``) and ``weight = 10`` (its ``lambda``).
    """
    _check_g(real, 2, "dragan")
    weight = _check_real(weight, "weight")
    noise_scale = _check_real(noise_scale, "noise_scale", nonneg=True)
    r = real.detach()
    x_p = r + noise_scale * r.std() * torch.rand_like(r)
    u = torch.rand(_batch_shape(r), device=r.device, dtype=r.dtype)
    x = torch.lerp(x_p, r, u).requires_grad_(True)
    g = _input_grad(D, x, scaler)
    return weight * gradient_penalty(g, center=center, norm=norm, backend=backend)


def r1(D: Callable, real: Tensor, gamma: float = 10.0, *, scaler=None, backend: Optional[str] = None) -> Tensor:
    """``r1_penalty`` of D's gradient at ``real`` (detached): ``(gamma / 2) * E_b ||dD/dx||^2``."""
    _check_g(real, 2, "r1")
    x = real.detach().requires_grad_(True)
    return r1_penalty(_input_grad(D, x, scaler), gamma, backend=backend)


def r2(D: Callable, fake: Tensor, gamma: float = 10.0, *, scaler=None, backend: Optional[str] = None) -> Tensor:
    """``r2_penalty`` of D's gradient at ``fake`` (detached)."""
    return r1(D, fake, gamma, scaler=scaler, backend=backend)


class LazyRegularization:
    """Lazy regularisation (StyleGAN2, Karras et al. 2020): a penalty every ``interval`` steps.

    Apply the penalty when ``should_apply(step)`` and multiply it by ``gain`` (= ``interval``) so its
    average strength is unchanged.  The optimizer of the regularised network then takes
    ``interval + 1`` steps per ``interval`` minibatches; ``adam_hparams`` returns StyleGAN2's
    correction ``lr * k / (k + 1)``, ``beta ** (k / (k + 1))`` with ``k = interval``.
    """

    def __init__(self, interval: int):
        if isinstance(interval, bool) or not isinstance(interval, numbers.Integral) or interval < 1:
            raise ValueError(f"interval: expected an integer >= 1, got {interval!r}")
        self.interval = int(interval)

    @property
    def gain(self) -> int:
        return self.interval

    @property
    def ratio(self) -> float:
        return self.interval / (self.interval + 1)

    def should_apply(self, step: int) -> bool:
        return step % self.interval == 0

    def adam_hparams(self, lr: float, betas: Tuple[float, float] = (0.0, 0.99)) -> Tuple[float, Tuple[float, float]]:
        c = self.ratio
        return lr * c, (betas[0] ** c, betas[1] ** c)

    def __repr__(self) -> str:
        return f"LazyRegularization(interval={self.interval})"


__all__ = [
    "LazyRegularization",
    "dragan",
    "gradient_penalty",
    "r1",
    "r1_penalty",
    "r2",
    "r2_penalty",
    "wgan_gp",
]
