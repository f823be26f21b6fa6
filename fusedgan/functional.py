"""The functional API: ``discriminator_loss`` and ``generator_loss``.

Arguments are checked here (errors name the argument), labels and weights are brought to the
form the kernels read, and the call goes to the backend chosen by ``fusedgan.backends``: the
reference formulas, or one fused operator through ``autograd.apply_loss_terms``.
"""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch

from . import backends, reference
from .autograd import TermSpec, apply_loss_terms
from .kinds import DEFAULT_LABELS, Reduction, Term, kind_spec, reduction_code

Tensor = torch.Tensor
Label = Union[float, Tensor]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_logits(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of logits, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name}: logits must be float16, bfloat16, float32 or float64, got {x.dtype}"
        )


def _check_same_device(x: Tensor, name: str, ref: Tensor, ref_name: str) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name}: is on {x.device} but {ref_name} is on {ref.device}")


def _aux_tensor(value, name: str, x: Tensor, x_name: str) -> Optional[Tensor]:
    """A label or weight tensor in the kernel's form: x's dtype, one element or x's numel."""
    if value.dtype not in _FLOAT_DTYPES and value.dtype not in (torch.int64, torch.int32, torch.bool):
        raise TypeError(f"{name}: expected a real floating-point tensor, got {value.dtype}")
    if value.device != x.device:
        if value.dim() == 0 and value.device.type == "cpu":
            value = value.to(x.device, non_blocking=True)  # a CPU scalar, as torch allows
        else:
            raise ValueError(f"{name}: is on {value.device} but {x_name} is on {x.device}")
    try:
        shape = torch.broadcast_shapes(value.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{name}: shape {tuple(value.shape)} is not broadcastable to {x_name}'s shape {tuple(x.shape)}"
        )
    value = value.to(x.dtype)
    if value.numel() == 1:
        return value.reshape(1)
    return value.expand(x.shape).contiguous()


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number or a tensor, got {type(value).__name__}")
    return float(value)


def _label(term: Term, user: dict, kind: str, x: Tensor, x_name: str):
    """(label tensor or None, scalar label) for one term; rejects labels the kind does not have."""
    if isinstance(term.label, str):
        name = term.label
        value = user[name]
        if isinstance(value, torch.Tensor):
            return _aux_tensor(value, name, x, x_name), 0.0
        return None, _number(value, name)
    for name, value in user.items():
        if isinstance(value, torch.Tensor) or _number(value, name) != DEFAULT_LABELS[name]:
            raise ValueError(f"{name}: loss kind {kind!r} takes no {name}")
    return None, term.label


def _weight(value, name: str, x: Tensor, x_name: str) -> Optional[Tensor]:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or None, got {type(value).__name__}")
    return _aux_tensor(value, name, x, x_name)


def _common_dtype(*xs: Tensor) -> torch.dtype:
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _acc(dtype: torch.dtype) -> torch.dtype:
    """The dtype the maths runs in (and mean/sum losses are returned in)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fused(backend, terms, logits, labels, label_values, weights, reduction):
    spec = TermSpec(
        backend,
        tuple(int(t.elem) for t in terms),
        tuple(label_values),
        tuple(float(t.coef) for t in terms),
        int(reduction),
    )
    out = apply_loss_terms(spec, logits, labels, weights)
    if reduction == Reduction.NONE:
        return out[:-1]
    return out[0]


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
    backend: Optional[str] = None,
):
    """Discriminator loss ``real term + fake term`` of ``kind`` in one fused pass.

    ``real`` and ``fake`` may differ in shape.  ``real_label``/``fake_label`` (``b``/``a`` for
    ``ls``) are numbers or tensors broadcastable to the logits; weights are optional elementwise
    tensors.  ``reduction="mean"`` averages each term over its own elements and sums the two,
    ``"sum"`` sums, ``"none"`` returns the pair of per-element loss tensors.
    """
    spec = kind_spec(kind)
    red = reduction_code(reduction)
    _check_logits(real, "real")
    _check_logits(fake, "fake")
    _check_same_device(fake, "fake", real, "real")
    dtype = _common_dtype(real, fake)
    real_c, fake_c = real.to(dtype), fake.to(dtype)
    lab_r, val_r = _label(spec.d_real, {"real_label": real_label}, kind, real_c, "real")
    lab_f, val_f = _label(spec.d_fake, {"fake_label": fake_label}, kind, fake_c, "fake")
    w_r = _weight(real_weight, "real_weight", real_c, "real")
    w_f = _weight(fake_weight, "fake_weight", fake_c, "fake")
    name = backends.resolve(real.device, backend)
    if name == "reference":
        acc = _acc(dtype)
        out = reference.discriminator_loss(
            real.to(acc), fake.to(acc), kind, reduction=reduction, real_label=real_label,
            fake_label=fake_label, real_weight=real_weight, fake_weight=fake_weight,
        )
        return (out[0].to(dtype), out[1].to(dtype)) if red == Reduction.NONE else out
    return _fused(name, (spec.d_real, spec.d_fake), (real_c, fake_c), (lab_r, lab_f), (val_r, val_f), (w_r, w_f), red)


def generator_loss(
    fake: Tensor,
    kind: str = "ns",
    *,
    reduction: str = "mean",
    target: Label = 1.0,
    weight: Optional[Tensor] = None,
    backend: Optional[str] = None,
):
    """Generator loss of ``kind`` on fake logits in one fused pass.

    ``target`` is the label of the fake logits for ``ns`` (default 1) and ``c`` for ``ls``; other
    kinds take none (a non-default ``target`` raises).
    """
    spec = kind_spec(kind)
    red = reduction_code(reduction)
    _check_logits(fake, "fake")
    lab, val = _label(spec.g_fake, {"target": target}, kind, fake, "fake")
    w = _weight(weight, "weight", fake, "fake")
    name = backends.resolve(fake.device, backend)
    if name == "reference":
        out = reference.generator_loss(fake.to(_acc(fake.dtype)), kind, reduction=reduction, target=target, weight=weight)
        return out.to(fake.dtype) if red == Reduction.NONE else out
    out = _fused(name, (spec.g_fake,), (fake,), (lab,), (val,), (w,), red)
    return out[0] if red == Reduction.NONE else out


# torch-compatible drop-ins (fused BCE-with-logits and MSE), see fusedgan.compat
from .compat import binary_cross_entropy_with_logits, mse_loss  # noqa: F401,E402
