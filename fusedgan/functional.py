"""The functional API: ``discriminator_loss``, ``generator_loss`` and ``feature_matching_loss``.

Each function checks its arguments (errors name the argument), builds a plan from the kinds
table and hands it to the one executor (``fusedgan.plan``), which runs it on the backend chosen
for the tensors' device: one fused operator call, whatever the kind, the number of scales or the
extras asked for.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from . import plan as P
from .codes import Elem, Reduction
from .kinds import RELATIVISTIC, kind_spec, reduction_code
from .plan import STAT_KEYS, GANLossResult  # noqa: F401  (public names)

Tensor = torch.Tensor
Label = Union[float, Tensor]


# Plans of calls already made, keyed by their non-tensor arguments (a training loop repeats one
# call): a repeated call skips the argument checks that depend on those arguments only and binds
# the cached plan to its tensors, through the same executor.  Only plain single-tensor calls with
# number labels and no weights are keyed; anything else builds its plan (itself cached).
_D_PLANS: dict = {}
_G_PLANS: dict = {}
_D_NAMES = ("real", "fake")
_D_NAMES_SPLIT = (["real"], ["fake"])
_G_NAMES = (["fake"], ["real"])
_KEYABLE = (float, int)
_NONE_CODE = int(Reduction.NONE)
_STRIDED = torch.strided
_FLOAT_SET = frozenset(P.FLOAT_DTYPES)


_MAX_PLANS = 1024  # as side_plan's cache: a loop that varies a number label per step stays bounded


def _remember(memo: dict, key, plan) -> None:
    if len(memo) >= _MAX_PLANS:
        memo.clear()
    # (plan, plain): a plain plan (a reduced loss, nothing else asked for; gan_loss or, one scale,
    # rel_gan_loss) on logits of one dtype needs no tensor but the logits: the call goes straight
    # to the operator
    memo[key] = (plan, plan.reduction != _NONE_CODE and not plan.named)


def _plain_pair(kind: str, real, fake) -> bool:
    """``_plain`` for a real/fake pair, and rsgan's pairing needs equal shapes (else the full
    path raises, naming the argument)."""
    return _plain((real, fake)) and (kind != "rsgan" or real.shape == fake.shape)


def _plain(xs) -> bool:
    """Whether logits (exact Tensors) go to a plain plan's operator as they are: one floating
    dtype, dense, one device.  Anything else takes the full checks (which name the argument)."""
    x0 = xs[0]
    dtype, device = x0.dtype, x0.device
    if dtype not in P.FLOAT_DTYPES:
        return False
    for x in xs:
        if x.dtype != dtype or x.layout != _STRIDED or x.device != device:
            return False
    return True


def _as(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x if x.dtype == dtype else x.to(dtype)


def _memo_key(kind, reduction, labels, scale_reduction, per_scale, flag):
    for v in labels:
        if type(v) not in _KEYABLE:
            return None
    # the types too: True == 1 == 1.0 as keys, but a bool label is an error
    return (kind, reduction, *labels, *[type(v) for v in labels], scale_reduction, per_scale, flag)


def _pair_scales(real, fake, blame: str = "fake"):
    """(reals, fakes, is_list): two lists of logits with one tensor per scale each; a count
    mismatch is reported on the argument ``blame``."""
    reals, real_list = P.scales_of(real, "real")
    fakes, fake_list = P.scales_of(fake, "fake")
    if real_list != fake_list:
        raise TypeError("real: is a list of scales but fake is not" if real_list else
                        "fake: is a list of scales but real is not")
    if len(reals) != len(fakes):
        n = {"real": len(reals), "fake": len(fakes)}
        other = "real" if blame == "fake" else "fake"
        raise ValueError(f"{blame}: has {n[blame]} scales but {other} has {n[other]}")
    return reals, fakes, real_list


def _check_all(xs, names) -> torch.dtype:
    """Logits checks: floating tensors on one device; returns their common dtype."""
    for x, n in zip(xs, names):
        P.check_logits(x, n)
    P.check_same_device(xs, names)
    return P.common_dtype(xs)


def _no_weights_for_lists(is_list: bool, **weights) -> None:
    for name, value in weights.items():
        if is_list and value is not None:
            raise ValueError(f"{name}: elementwise weights are not supported for lists of scales")


def _rel_tensors(plan, kind, reals, fakes, fnames, dtype, weights) -> tuple:
    """rel_gan_loss's tensor arguments: the scales in one dtype and a weight per term (``weights``:
    one per row of the kind's side, applied to its logit)."""
    for r, f, n in zip(reals, fakes, fnames):
        if kind == "rsgan" and r.shape != f.shape:
            raise ValueError(f"{n}: rsgan pairs real and fake logits elementwise, so their shapes must be "
                             f"equal; got real {tuple(r.shape)} and fake {tuple(f.shape)}")
    rows = len(plan.elems) // len(reals)
    return [_as(r, dtype) for r in reals], [_as(f, dtype) for f in fakes], list(weights[:rows]) * len(reals)


def _label_tensor(value, name: str, x: Tensor, x_name: str) -> Optional[Tensor]:
    return P.aux_tensor(value, name, x, x_name) if isinstance(value, torch.Tensor) else None


def _d_tensors(plan, kind, reals, fakes, names, dtype, labels, weights) -> tuple:
    """gan_loss / rel_gan_loss tensor arguments of a discriminator plan."""
    rnames, fnames = names
    real_label, fake_label = labels
    real_weight, fake_weight = weights
    if plan.op == "rel_gan_loss":
        if kind == "rsgan":
            for name, value in (("real_weight", real_weight), ("fake_weight", fake_weight)):
                if value is not None:
                    raise ValueError(f"{name}: loss kind 'rsgan' takes no weights")
        ws = (P.weight(real_weight, "real_weight", reals[0], rnames[0]),
              P.weight(fake_weight, "fake_weight", fakes[0], fnames[0]))
        return _rel_tensors(plan, kind, reals, fakes, fnames, dtype, ws)
    logits, labs, ws = [], [], []
    for r, f, rn, fn in zip(reals, fakes, rnames, fnames):
        r, f = _as(r, dtype), _as(f, dtype)
        logits += [r, f]
        labs += [_label_tensor(real_label, "real_label", r, rn), _label_tensor(fake_label, "fake_label", f, fn)]
        ws += [P.weight(real_weight, "real_weight", r, rn), P.weight(fake_weight, "fake_weight", f, fn)]
    return logits, labs, ws


_MISS = object()


def _d_remembered(key, real, fake, kind: str, labels: tuple, backend):
    """A repeated discriminator call through its remembered plan, or _MISS when there is none."""
    hit = _D_PLANS.get(key)
    if hit is None or type(real) is not Tensor or type(fake) is not Tensor:
        return _MISS
    plan, plain = hit
    if plain and _plain_pair(kind, real, fake):
        return P.run_logits(plan, [real, fake], real.device, backend)
    dtype = _check_all((real, fake), _D_NAMES)
    if plan.reduction == _NONE_CODE:
        dtype = P.none_dtype(dtype, real.device)
    tensors = _d_tensors(plan, kind, [real], [fake], _D_NAMES_SPLIT, dtype, labels, (None, None))
    return P.execute(P.Bound(plan, tensors, real.device, dtype, (real.numel(), fake.numel())), backend)


def discriminator_loss(
    real,
    fake,
    kind: str = "ns",
    *,
    reduction: str = "mean",
    real_label: Label = 1.0,
    fake_label: Label = 0.0,
    real_weight: Optional[Tensor] = None,
    fake_weight: Optional[Tensor] = None,
    scale_weights=None,
    scale_reduction: str = "mean",
    return_per_scale: bool = False,
    return_stats: bool = False,
    backend: Optional[str] = None,
):
    """Discriminator loss ``real term + fake term`` of ``kind`` in one fused pass.

    ``real`` and ``fake`` may differ in shape.  ``real_label``/``fake_label`` (``b``/``a`` for
    ``ls``) are numbers or tensors broadcastable to the logits; weights are optional elementwise
    tensors.  ``reduction="mean"`` averages each term over its own elements and sums the two,
    ``"sum"`` sums, ``"none"`` returns the pair of per-element loss tensors.

    Relativistic kinds (``rsgan``, ``ragan``, ``ralsgan``, ``rahinge``) take no labels; ``rsgan``
    needs equal shapes and takes no weights.  Multi-scale: ``real`` and ``fake`` may be lists (or
    tuples) of logits, one per scale, of any sizes: the loss is ``sum_s c_s * loss_s`` with
    ``c_s = scale_weights[s]`` (default 1) divided by the number of scales for
    ``scale_reduction="mean"`` (SPADE, BasicSR) and not for ``"sum"`` (pix2pixHD); all scales
    run in one operator call.  ``return_per_scale=True`` / ``return_stats=True`` return a
    ``GANLossResult(loss, per_scale, stats)``: ``per_scale`` the tensor of the ``c_s * loss_s``
    (detached; they sum to the loss), ``stats`` a dict of 0-dim training statistics
    (``STAT_KEYS``) computed in the same pass.  Otherwise the result is the loss tensor.
    """
    labels = (real_label, fake_label)
    key = _memo_key(kind, reduction, labels, scale_reduction, return_per_scale, return_stats)
    if key is not None and real_weight is None and fake_weight is None and scale_weights is None:
        out = _d_remembered(key, real, fake, kind, labels, backend)
        if out is not _MISS:
            return out
    kind_spec(kind)
    red = reduction_code(reduction)
    reals, fakes, is_list = _pair_scales(real, fake)
    P.check_extras(red, is_list, return_per_scale, return_stats)
    factors = P.scale_factors(len(reals), is_list, scale_weights, scale_reduction)
    names = P.names_of("real", len(reals), is_list), P.names_of("fake", len(fakes), is_list)
    dtype = _check_all(reals + fakes, names[0] + names[1])
    if red == Reduction.NONE:
        dtype = P.none_dtype(dtype, reals[0].device)
    _no_weights_for_lists(is_list, real_weight=real_weight, fake_weight=fake_weight)
    keys = tuple((n, P.label_key(v, n)) for n, v in zip(("real_label", "fake_label"), labels))
    plan = P.side_plan(kind, "D", red, keys, factors, return_stats, return_per_scale)
    tensors = _d_tensors(plan, kind, reals, fakes, names, dtype, labels, (real_weight, fake_weight))
    if key is not None and not is_list and not torch.compiler.is_compiling():  # all checked
        _remember(_D_PLANS, key, plan)
    counts = (sum(r.numel() for r in reals), sum(f.numel() for f in fakes))
    return P.execute(P.Bound(plan, tensors, reals[0].device, dtype, counts), backend)


def _g_reals(kind: str, real, fake, weight) -> list:
    """The real logits a relativistic generator loss needs (one per scale), or [] for the others."""
    if kind not in RELATIVISTIC:
        if real is not None:
            raise ValueError(f"real: only relativistic kinds ({', '.join(RELATIVISTIC)}) take real logits; "
                             f"{kind!r} does not")
        return []
    if real is None:
        raise ValueError(f"real: loss kind {kind!r} is relativistic: generator_loss needs the real "
                         "logits, generator_loss(fake, kind, real=real)")
    reals = _pair_scales(real, fake, blame="real")[0]
    if weight is not None:
        raise ValueError(f"weight: loss kind {kind!r} takes no weight")
    return reals


def generator_loss(
    fake,
    kind: str = "ns",
    *,
    reduction: str = "mean",
    target: Label = 1.0,
    weight: Optional[Tensor] = None,
    real=None,
    scale_weights=None,
    scale_reduction: str = "mean",
    return_per_scale: bool = False,
    backend: Optional[str] = None,
):
    """Generator loss of ``kind`` on fake logits in one fused pass.

    ``target`` is the label of the fake logits for ``ns`` (default 1) and ``c`` for ``ls``; other
    kinds take none (a non-default ``target`` raises).  Relativistic kinds need ``real`` (the
    discriminator's real logits; the gradient reaches them too unless they are detached) and take
    no ``target`` or ``weight``; other kinds reject ``real``.  ``fake`` (and ``real``) may be lists
    of logits, one per scale, combined as in ``discriminator_loss`` (``scale_weights``,
    ``scale_reduction``; ``return_per_scale=True`` returns a ``GANLossResult``).
    """
    # _memo_key of the one label, written out: this is the hot path of a generator step
    key = ((kind, reduction, target, type(target), scale_reduction, return_per_scale, real is None)
           if type(target) in _KEYABLE else None)
    if key is not None and weight is None and scale_weights is None and type(fake) is Tensor:
        hit = _G_PLANS.get(key)
        if hit is not None and (real is None or type(real) is Tensor):
            plan, plain = hit
            if plain and real is None and fake.dtype in _FLOAT_SET and fake.layout is _STRIDED:  # _plain
                return P.run_logits(plan, [fake], fake.device, backend)
            if plain and real is not None and _plain_pair(kind, real, fake):
                return P.run_logits(plan, [real, fake], fake.device, backend)
            return _g_execute(plan, kind, [fake], [] if real is None else [real], _G_NAMES, target, None, backend)
    kind_spec(kind)
    red = reduction_code(reduction)
    fakes, is_list = P.scales_of(fake, "fake")
    reals = _g_reals(kind, real, fake, weight)
    P.check_extras(red, is_list, return_per_scale)
    factors = P.scale_factors(len(fakes), is_list, scale_weights, scale_reduction)
    names = P.names_of("fake", len(fakes), is_list), P.names_of("real", len(reals), is_list)
    _no_weights_for_lists(is_list, weight=weight)
    plan = P.side_plan(kind, "G", red, (("target", P.label_key(target, "target")),), factors, False,
                       return_per_scale)
    out = _g_execute(plan, kind, fakes, reals, names, target, weight, backend)
    if key is not None and not is_list and not torch.compiler.is_compiling():  # all checked
        _remember(_G_PLANS, key, plan)
    return out


def _g_execute(plan, kind, fakes, reals, names, target, weight, backend):
    """Bind a generator plan to its tensors and run it."""
    fnames, rnames = names
    dtype = _check_all(fakes + reals, fnames + rnames)
    if plan.reduction == _NONE_CODE:
        dtype = P.none_dtype(dtype, fakes[0].device)
    if plan.op == "rel_gan_loss":
        tensors = _rel_tensors(plan, kind, reals, fakes, fnames, dtype, (None, None))
    else:
        fs = [_as(f, dtype) for f in fakes]
        tensors = (fs, [_label_tensor(target, "target", f, n) for f, n in zip(fs, fnames)],
                   [P.weight(weight, "weight", f, n) for f, n in zip(fs, fnames)])
    return P.execute(P.Bound(plan, tensors, fakes[0].device, dtype), backend)


def _layer_coefs(weights, n: int) -> list:
    if weights is None:
        return [1.0] * n
    if isinstance(weights, torch.Tensor) or not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights: expected a list or tuple of numbers, got {type(weights).__name__}")
    if len(weights) != n:
        raise ValueError(f"weights: expected {n} weights (one per layer), got {len(weights)}")
    return [P.number(w, f"weights[{i}]") for i, w in enumerate(weights)]


def feature_matching_loss(
    fake_feats,
    real_feats,
    *,
    weights=None,
    detach_real: bool = True,
    backend: Optional[str] = None,
):
    """Feature matching ``sum_i weights[i] * E |fake_feats[i] - real_feats[i]|`` (pix2pixHD,
    SPADE), all layers in one operator call (element function ABS, the real features as labels).

    ``fake_feats`` / ``real_feats``: lists (or tuples) of tensors of equal length, or two
    tensors; layer ``i``'s tensors have equal shapes.  ``weights``: numbers, one per layer (default
    1).  The real features are detached unless ``detach_real=False``; then, where they require
    grad, the gradient reaches them too.  Returns the 0-dim loss (float32; float64 for float64).
    """
    fakes, f_list = P.scales_of(fake_feats, "fake_feats")
    reals, r_list = P.scales_of(real_feats, "real_feats")
    if f_list != r_list:
        raise TypeError("real_feats: must be a list when fake_feats is, and a tensor when it is a tensor")
    if len(reals) != len(fakes):
        raise ValueError(f"real_feats: has {len(reals)} tensors but fake_feats has {len(fakes)}")
    n = len(fakes)
    fnames, rnames = P.names_of("fake_feats", n, f_list), P.names_of("real_feats", n, f_list)
    dtype = _check_all(fakes + reals, fnames + rnames)
    for i in range(n):
        if reals[i].shape != fakes[i].shape:
            raise ValueError(f"{rnames[i]}: shape {tuple(reals[i].shape)} differs from {fnames[i]}'s "
                             f"shape {tuple(fakes[i].shape)}")
    coefs = _layer_coefs(weights, n)
    if detach_real:
        reals = [r.detach() for r in reals]
    fs = [_as(f, dtype) for f in fakes]
    labels = [P.aux_tensor(r, rn, f, fn) for r, f, rn, fn in zip(reals, fs, rnames, fnames)]
    plan = P.terms_plan([Elem.ABS] * n, [0.0] * n, coefs, Reduction.MEAN)
    return P.execute(P.Bound(plan, (fs, labels, [None] * n), fs[0].device, dtype), backend)


# torch-compatible drop-ins (fused BCE-with-logits and MSE), see fusedgan.compat
from .compat import binary_cross_entropy_with_logits, mse_loss  # noqa: F401,E402
