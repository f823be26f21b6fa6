"""Drop-in adoption: torch-compatible losses, torch patching and library-compatible GAN losses.

Three things live here, all thin layers over one plan of loss terms (``fusedgan.plan``):

* ``binary_cross_entropy_with_logits`` / ``mse_loss`` and the modules ``BCEWithLogitsLoss`` /
  ``MSELoss``: torch's signatures and semantics (broadcasting, deprecated ``size_average`` /
  ``reduce``, output dtypes, gradients w.r.t. ``target``), computed by one fused pass.  Calls
  the kernel does not cover (empty tensors, non-float dtypes, shapes torch rejects, tensor
  subclasses, devices other than CPU/CUDA, the ``reference`` backend) go to torch's own
  function, so torch raises its own exceptions and returns its own results there.
* ``patch_torch`` / ``unpatch_torch`` / ``patched``: swap those two functions and two modules in
  ``torch.nn.functional`` and ``torch.nn`` so that an unmodified script runs on fused kernels.
* ``CycleGANLoss`` (CycleGAN/pix2pix ``GANLoss``), ``BasicSRGANLoss`` and
  ``BasicSRMultiScaleGANLoss`` (BasicSR ``GANLoss`` / ``MultiScaleGANLoss``): the libraries'
  constructor and call signatures and numbers, with labels held as numbers (never expanded to
  a tensor) and every scale of a multi-scale input in one operator call.

Mixed precision: torch lists ``binary_cross_entropy_with_logits`` and ``mse_loss`` among the ops
autocast runs in float32; a custom operator gets no autocast policy, so the policy is applied
here: under autocast, float16/bfloat16 arguments are read as float32 and the result is float32.
Where every argument already has the same half dtype the kernel reads it directly (its maths is
float32 anyway) instead of paying for a cast.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.nn import _reduction as _Reduction
from torch.overrides import has_torch_function_variadic

from . import backends
from . import plan as P
from .codes import Elem, Reduction

Tensor = torch.Tensor

__all__ = [
    "BCEWithLogitsLoss",
    "BasicSRGANLoss",
    "BasicSRMultiScaleGANLoss",
    "CycleGANLoss",
    "MSELoss",
    "binary_cross_entropy_with_logits",
    "is_patched",
    "mse_loss",
    "patch_torch",
    "patched",
    "unpatch_torch",
]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
_REDUCTIONS = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}


def _original(obj):
    # A re-import while patched must still find torch's own objects.
    return getattr(obj, "_fusedgan_torch_original", obj)


_torch_bce = _original(F.binary_cross_entropy_with_logits)
_torch_mse = _original(F.mse_loss)
_TorchBCEWithLogitsLoss = _original(torch.nn.BCEWithLogitsLoss)
_TorchMSELoss = _original(torch.nn.MSELoss)


# ---------------------------------------------------------------------------------------------
# Shared plumbing


def _loss_terms(xs, labels, label_values, weights, elems, coefs, reduction):
    """``sum_i coef_i * reduce(w_i * elem_i(x_i, t_i))`` on the backend chosen for ``xs[0]``.

    Returns the 0-dim total (float32, float64 for float64 logits), or the list of per-element
    values for ``Reduction.NONE``.  A tensor passed twice (``pos_weight``'s two terms) gets each
    term's gradient: the operator keeps the positions apart.
    """
    plan = P.terms_plan(elems, label_values, coefs, reduction)
    out = P.execute(P.Bound(plan, (list(xs), list(labels), list(weights)), xs[0].device, xs[0].dtype), None)
    if reduction == Reduction.NONE:
        return [out] if plan.single else list(out)
    return out


_TERM = {"bce": (int(Elem.BCE), 1.0), "mse": (int(Elem.HALF_SQUARE), 2.0)}  # mse = 2 * (x - t)^2 / 2
_FAST_DTYPES = (torch.float32, torch.float64)


def _fast_terms(x, t, which: str, reduction, extras: tuple) -> Optional[Tensor]:
    """The common call, ``loss(input, target)`` with nothing else (every one of ``extras`` None),
    as one operator call without the general path's work; None where the call is not that (the
    general path decides then).

    It is that when ``input`` and ``target`` are plain tensors of one float32/float64 dtype, one
    shape and one device, ``target`` contiguous, not empty, the reduction "mean" or "sum",
    autocast off, and the call fused: then the dtype rules are trivial (torch returns that dtype
    too) and the operator reads both tensors as they are.  This is the hot path of a GAN step:
    every test is the cheapest one that says it (``is_cpu`` rather than ``device.type``; one
    ``backends.resolve``).
    """
    for a in extras:
        if a is not None:
            return None
    if type(x) is not Tensor or type(t) is not Tensor:
        return None
    dtype = x.dtype
    code = _REDUCTIONS.get(reduction) if type(reduction) is str else None
    if (dtype is not t.dtype or dtype not in _FAST_DTYPES or code is None or code == Reduction.NONE
            or x.shape != t.shape or not t.is_contiguous() or x.numel() == 0 or not (x.is_cpu or x.is_cuda)):
        return None
    device = x.device
    if t.device != device or has_torch_function_variadic(x, t) or (_any_autocast() and _autocast_on(device)):
        return None
    backend = backends.resolve(device)
    if backend == "reference":
        return None
    elem, coef = _TERM[which]
    # kernels read memory: a negative-bit target's sign is materialised (self where there is none;
    # no is_neg() test, which torch.compile cannot trace); the dispatcher does it for the logits
    args = ([x], [t.resolve_neg()], [None], [elem], [0.0], [coef], code, False)
    return P.run_on(backend, "gan_loss", args)[0]


# whether autocast is on for any device: one call, where _autocast_on asks per device type
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _terms_of(which: str) -> tuple:
    """([elem], [coef]) of the one term of ``which``."""
    elem, coef = _TERM[which]
    return [elem], [coef]


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _fused_backend(device: torch.device) -> bool:
    """Whether a torch-compatible call on ``device`` runs fused (else torch's own function)."""
    if device.type not in ("cpu", "cuda"):
        return False
    return backends.resolve(device) != "reference"


def _autocast_on(device: torch.device) -> bool:
    return torch.is_autocast_enabled(device.type)


_OUT_DTYPES: dict = {}


def _torch_out_dtype(which: str, dtypes: tuple, reduction: str) -> torch.dtype:
    """The dtype torch's own ``which`` ("bce", "mse") returns for arguments of ``dtypes`` (None:
    absent).  Its implementation decides, not plain promotion (BCE with a float32 input and a
    float16 target returns float16), so ask it, once per combination, on two-element CPU tensors
    (not meta tensors: torch 2.11's meta rule differs from its CPU kernel)."""
    key = (which, dtypes, reduction)
    dt = _OUT_DTYPES.get(key)
    if dt is None:
        m = [None if d is None else torch.zeros(2, dtype=d) for d in dtypes]
        if which == "bce":
            dt = _torch_bce(m[0], m[1], m[2], None, None, reduction, m[3]).dtype
        else:
            dt = _torch_mse(m[0], m[1], None, None, reduction, m[2]).dtype
        _OUT_DTYPES[key] = dt
    return dt


def _dtypes(tensors: Sequence[Optional[Tensor]], reduction: str, which: str):
    """(dtype the kernel reads, dtype of the result).  Without autocast: the promoted dtype of
    every argument (at least as accurate as torch), and the dtype torch returns; under autocast
    (these losses are on its float32 list): float32, or float64 if an argument is."""
    present = [t for t in tensors if t is not None]
    dt = present[0].dtype
    for t in present[1:]:
        dt = torch.promote_types(dt, t.dtype)
    if not _autocast_on(present[0].device):
        return dt, _torch_out_dtype(which, tuple(None if t is None else t.dtype for t in tensors), reduction)
    if dt in _HALF:
        if reduction != "none" and all(t.dtype == dt for t in present):
            return dt, torch.float32  # the kernel's maths is float32: no need to cast first
        return torch.float32, torch.float32
    return dt, dt


def _logits_dtype(input: Tensor, compute: torch.dtype, reduction: str) -> torch.dtype:
    """The dtype the logits are passed in: their own half dtype where the other arguments only
    make the maths float32 (which it is anyway) for a mean or a sum, since the kernels read the
    float32 target and weights in their own precision and widen the logits as they load them (no
    cast pass over the logits); else ``compute`` (per-element values are written in it)."""
    if reduction != "none" and input.dtype in _HALF and compute == torch.float32:
        return input.dtype
    return compute


def _floats_on(x: Tensor, *others: Optional[Tensor]) -> bool:
    for t in (x, *others):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            return False
        if t.dtype not in _FLOATS or t.device != x.device:
            return False
    return True


def _broadcasts_to(t: Optional[Tensor], shape: torch.Size) -> bool:
    if t is None:
        return True
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def _kernel_aux(t: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """A label or weight in the operator's form: in its own precision (``plan.operand_dtype``), one
    element or x's numel, contiguous."""
    if t is None:
        return None
    t = P.operand_dtype(t, x).resolve_neg()  # kernels read memory: materialise a negative-bit view's sign
    if t.shape == x.shape:
        return t.contiguous()
    if t.numel() == 1:  # (not for 0-dim x: the exact-recompute path would broadcast it to (1,))
        return t.reshape(1)
    return t.expand(x.shape).contiguous()


def _reduction_of(size_average, reduce, reduction) -> Optional[str]:
    """The reduction torch would use, or None where torch would warn or raise about it."""
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_string(size_average, reduce, emit_warning=False)
    return reduction if isinstance(reduction, str) and reduction in _REDUCTIONS else None


def _warn_legacy(size_average, reduce) -> None:
    if size_average is not None or reduce is not None:
        _Reduction.legacy_get_string(size_average, reduce)  # torch's own deprecation warning


# ---------------------------------------------------------------------------------------------
# torch.nn.functional drop-ins


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[Tensor] = None,
) -> Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits``, fused.

    Without ``pos_weight`` this is one ``BCE`` term with label ``target`` and weight ``weight``.
    With ``pos_weight`` ``p`` the element loss ``w*(p*t*sp(-x) + (1-t)*sp(x))`` is two terms on
    the same logits, ``BCE(x, 1)`` weighted ``w*p*t`` and ``BCE(x, 0)`` weighted ``w*(1-t)``, in
    one operator call.  (Folding it into one term, ``(p*t+1-t) * BCE(x, p*t/(p*t+1-t))``, is
    undefined at ``t=1, p=0`` and loses digits for soft labels near 1 with large positive logits,
    where ``1 - p*t/(p*t+1-t)`` cancels; the two terms do not cancel for ``p >= 0, 0 <= t <= 1``.)
    """
    out = _fast_terms(input, target, "bce", reduction, (weight, pos_weight, size_average, reduce))
    if out is not None:
        return out
    if has_torch_function_variadic(input, target, weight, pos_weight):
        return _torch_bce(input, target, weight, size_average, reduce, reduction, pos_weight)
    red = _reduction_of(size_average, reduce, reduction)
    fusable = (
        red is not None
        and isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor)
        and _floats_on(input, target, weight, pos_weight)
        and target.size() == input.size()
        and input.numel() > 0
        and _broadcasts_to(weight, input.shape)
        and _broadcasts_to(pos_weight, input.shape)
        and _fused_backend(input.device)
    )
    if fusable and pos_weight is not None and pos_weight.requires_grad and torch.is_grad_enabled():
        fusable = False  # torch raises: it does not differentiate with respect to pos_weight
    if not fusable:
        return _torch_bce(input, target, weight, size_average, reduce, reduction, pos_weight)
    _warn_legacy(size_average, reduce)
    compute, out_dtype = _dtypes((input, target, weight, pos_weight), red, "bce")
    if pos_weight is not None and compute in _HALF:
        compute = torch.float32  # the two weights below are products: keep them in float32
    x = _as(input, _logits_dtype(input, compute, red)).resolve_neg()
    t = _as(target, compute)
    w = None if weight is None else _as(weight, compute)
    code = _REDUCTIONS[red]
    if pos_weight is None:
        out = _loss_terms([x], [_kernel_aux(t, x)], [0.0], [_kernel_aux(w, x)], *_terms_of("bce"), code)
    else:
        p = _as(pos_weight, compute)
        w_pos = p * t if w is None else w * p * t
        w_neg = 1 - t if w is None else w * (1 - t)
        out = _loss_terms([x, x], [None, None], [1.0, 0.0],
                          [_kernel_aux(w_pos, x), _kernel_aux(w_neg, x)],
                          [Elem.BCE, Elem.BCE], [1.0, 1.0], code)
    if code == Reduction.NONE:
        out = out[0] if len(out) == 1 else out[0] + out[1]
    return _as(out, out_dtype)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    weight: Optional[Tensor] = None,
) -> Tensor:
    """``torch.nn.functional.mse_loss``, fused: one ``HALF_SQUARE`` term with coefficient 2.

    ``2 * 0.5 * (x - t)^2`` equals ``(x - t)^2`` exactly (scaling by powers of two).  With
    ``weight`` torch's ``"mean"`` is ``sum(w * (x-t)^2) / sum(w)``: the fused sum divided by
    ``weight.sum()``.
    """
    out = _fast_terms(input, target, "mse", reduction, (weight, size_average, reduce))
    if out is not None:
        return out
    if has_torch_function_variadic(input, target, weight):
        return _torch_mse(input, target, size_average, reduce, reduction, weight)
    red = _reduction_of(size_average, reduce, reduction)
    shape = None
    if isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor):
        try:
            shape = torch.broadcast_shapes(input.shape, target.shape)
        except RuntimeError:
            shape = None
    fusable = (
        red is not None
        and shape is not None
        and _floats_on(input, target, weight)
        and shape.numel() > 0
        and (weight is None or (weight.size() == input.size() and shape == input.shape))
        and _fused_backend(input.device)
    )
    if not fusable:
        return _torch_mse(input, target, size_average, reduce, reduction, weight)
    if target.size() != input.size():
        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    _warn_legacy(size_average, reduce)
    compute, out_dtype = _dtypes((input, target, weight), red, "mse")
    x = _as(input, _logits_dtype(input, compute, red)).resolve_neg()
    if x.shape != shape:
        x = x.expand(shape).contiguous()  # autograd sums the gradient back over the broadcast
    t = _kernel_aux(target, x)
    w = _kernel_aux(weight, x)
    code = _REDUCTIONS[red]
    if w is not None and code == Reduction.MEAN:
        total = _loss_terms([x], [t], [0.0], [w], *_terms_of("mse"), Reduction.SUM)
        return (total / weight.sum(dtype=total.dtype)).to(out_dtype)
    out = _loss_terms([x], [t], [0.0], [w], *_terms_of("mse"), code)
    if code == Reduction.NONE:
        out = out[0]
    return _as(out, out_dtype)


class BCEWithLogitsLoss(_TorchBCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` (same constructor, buffers and state dict), fused."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )


class MSELoss(_TorchMSELoss):
    """``torch.nn.MSELoss`` (same constructor), fused."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)


for _ours, _theirs in (
    (binary_cross_entropy_with_logits, _torch_bce),
    (mse_loss, _torch_mse),
    (BCEWithLogitsLoss, _TorchBCEWithLogitsLoss),
    (MSELoss, _TorchMSELoss),
):
    _ours._fusedgan_torch_original = _theirs

BCEWithLogitsLoss.__module__ = MSELoss.__module__ = __name__


# ---------------------------------------------------------------------------------------------
# Patching torch


_PATCHES = (
    (F, "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits, _torch_bce),
    (F, "mse_loss", mse_loss, _torch_mse),
    (torch.nn, "BCEWithLogitsLoss", BCEWithLogitsLoss, _TorchBCEWithLogitsLoss),
    (torch.nn, "MSELoss", MSELoss, _TorchMSELoss),
    (torch.nn.modules, "BCEWithLogitsLoss", BCEWithLogitsLoss, _TorchBCEWithLogitsLoss),
    (torch.nn.modules, "MSELoss", MSELoss, _TorchMSELoss),
)


def patch_torch() -> None:
    """Make ``torch.nn.functional.{binary_cross_entropy_with_logits, mse_loss}`` and
    ``torch.nn.{BCEWithLogitsLoss, MSELoss}`` the fused versions.  Idempotent.

    Names bound before the call (``from torch.nn.functional import mse_loss``) keep torch's
    function; attribute look-ups (``F.mse_loss``, ``nn.MSELoss()``) see the patch.  torch's own
    loss modules created earlier also run fused, since their ``forward`` looks ``F.*`` up.
    """
    for module, name, ours, _ in _PATCHES:
        setattr(module, name, ours)


def unpatch_torch() -> None:
    """Restore torch's own functions and modules (where they are still fusedgan's).  Idempotent."""
    for module, name, ours, theirs in _PATCHES:
        if getattr(module, name) is ours:
            setattr(module, name, theirs)


def is_patched() -> bool:
    """Whether torch's functions and modules are currently the fused ones."""
    return all(getattr(module, name) is ours for module, name, ours, _ in _PATCHES)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``with fusedgan.patched():`` runs the block on patched torch; restores on exit (unless
    torch was already patched when the block started)."""
    was = is_patched()
    patch_torch()
    try:
        yield
    finally:
        if not was:
            unpatch_torch()


# ---------------------------------------------------------------------------------------------
# Library-compatible GAN losses


def _rounded(value: float) -> dict:
    """``value`` as each float dtype stores it (the libraries build label tensors)."""
    return {dt: float(torch.tensor(float(value), dtype=dt)) for dt in _FLOATS}


def _terms_loss(preds: Sequence[Tensor], elem: Elem, label: float, coef: float, out_dtype):
    """``coef * mean(elem(x, label))`` summed over ``preds``, one operator call."""
    xs = list(preds)
    dt = xs[0].dtype
    for x in xs[1:]:
        dt = torch.promote_types(dt, x.dtype)
    xs = [x.to(dt) for x in xs]
    n = len(xs)
    total = _loss_terms(xs, [None] * n, [label] * n, [None] * n, [elem] * n, [coef] * n, Reduction.MEAN)
    if _autocast_on(xs[0].device):
        return total  # float32 (float64 for float64 logits): autocast's policy for losses
    return total.to(out_dtype(dt))


class CycleGANLoss(torch.nn.Module):
    """CycleGAN/pix2pix ``GANLoss(gan_mode, target_real_label=1.0, target_fake_label=0.0)``.

    ``loss(prediction, target_is_real)``.  ``lsgan``: ``mean((x - label)^2)`` (MSE, no 1/2);
    ``vanilla``: ``mean(BCE(x, label))``; ``wgangp``: ``-mean(x)`` for real, ``mean(x)`` for
    fake.  Labels are float32 numbers as in the library's ``real_label``/``fake_label`` buffers
    (kept, so code reading them still works); results have the library's dtypes: float32 (or
    float64) for ``lsgan``/``vanilla``, the prediction's dtype for ``wgangp``.
    """

    _ELEM = {"lsgan": (Elem.HALF_SQUARE, 2.0), "vanilla": (Elem.BCE, 1.0)}

    def __init__(self, gan_mode, target_real_label=1.0, target_fake_label=0.0):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.gan_mode = gan_mode
        if gan_mode not in ("lsgan", "vanilla", "wgangp"):
            raise NotImplementedError("gan mode %s not implemented" % gan_mode)
        self._labels = (float(self.real_label), float(self.fake_label))

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        if self.gan_mode == "wgangp":
            label = 1.0 if target_is_real else -1.0  # LINEAR: -label * x
            return _terms_loss([prediction], Elem.LINEAR, label, 1.0, lambda dt: dt)
        elem, coef = self._ELEM[self.gan_mode]
        label = self._labels[0] if target_is_real else self._labels[1]
        # The library's target is a float32 buffer: the result is promoted to at least float32.
        return _terms_loss([prediction], elem, label, coef,
                           lambda dt: torch.promote_types(dt, torch.float32))

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}"


class BasicSRGANLoss(torch.nn.Module):
    """BasicSR ``GANLoss(gan_type, real_label_val=1.0, fake_label_val=0.0, loss_weight=1.0)``.

    ``loss(input, target_is_real, is_disc=False)``; ``loss_weight`` scales generator losses only.

    | gan_type        | real / fake (discriminator) | generator                      |
    |-----------------|-----------------------------|--------------------------------|
    | `vanilla`       | mean BCE(x, label)          | same, x loss_weight            |
    | `lsgan`         | mean (x - label)^2          | same, x loss_weight            |
    | `wgan`          | -mean x / mean x            | same, x loss_weight            |
    | `wgan_softplus` | mean sp(-x) / mean sp(x)    | same, x loss_weight            |
    | `hinge`         | mean relu(1-x) / relu(1+x)  | -mean x (any target), x weight |

    The library builds its labels in the input's dtype (``input.new_ones(...) * val``); the
    label values here are rounded the same way.  Results have the input's dtype (float32 under
    autocast).
    """

    _TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")

    def __init__(self, gan_type, real_label_val=1.0, fake_label_val=0.0, loss_weight=1.0):
        super().__init__()
        self.gan_type = gan_type
        self.loss_weight = loss_weight
        self.real_label_val = real_label_val
        self.fake_label_val = fake_label_val
        if gan_type not in self._TYPES:
            raise NotImplementedError(f"GAN type {gan_type} is not implemented.")
        self._real = _rounded(real_label_val)
        self._fake = _rounded(fake_label_val)

    def _term(self, dtype, target_is_real, is_disc):
        """(elem, label, coef) of one prediction's term."""
        real = bool(target_is_real)
        g = 1.0 if is_disc else float(self.loss_weight)  # the library's rule
        kind = self.gan_type
        if kind == "vanilla":
            return Elem.BCE, (self._real if real else self._fake)[dtype], g
        if kind == "lsgan":
            return Elem.HALF_SQUARE, (self._real if real else self._fake)[dtype], 2.0 * g
        if kind == "wgan":
            return Elem.LINEAR, (1.0 if real else -1.0), g
        if kind == "wgan_softplus":
            return Elem.BCE, (1.0 if real else 0.0), g
        if is_disc:  # hinge
            return Elem.HINGE, (1.0 if real else -1.0), 1.0
        return Elem.LINEAR, 1.0, g

    def _loss(self, preds, target_is_real, is_disc, scale=1.0):
        dt = preds[0].dtype
        for x in preds[1:]:
            dt = torch.promote_types(dt, x.dtype)
        elem, label, coef = self._term(dt, target_is_real, is_disc)
        return _terms_loss(preds, elem, label, coef * scale, lambda d: d)

    def forward(self, input: Tensor, target_is_real: bool, is_disc: bool = False) -> Tensor:
        return self._loss([input], target_is_real, is_disc)

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type!r}, loss_weight={self.loss_weight}"


class BasicSRMultiScaleGANLoss(BasicSRGANLoss):
    """BasicSR ``MultiScaleGANLoss``: ``input`` may be a list of predictions (one per scale), or
    a list of lists (feature-matching discriminators) whose last entry is the prediction; the
    loss is the mean over scales.  All scales go to the operator in one call.
    """

    def forward(self, input, target_is_real: bool, is_disc: bool = False) -> Tensor:
        if not isinstance(input, list):
            return self._loss([input], target_is_real, is_disc)
        preds = [p[-1] if isinstance(p, list) else p for p in input]
        return self._loss(preds, target_is_real, is_disc, scale=1.0 / len(preds))
