"""The functional API: ``discriminator_loss``, ``generator_loss`` and ``feature_matching_loss``.

Arguments are checked here (errors name the argument), labels and weights are brought to the
form the kernels read, and the call goes to the backend chosen by ``fusedgan.backends``: the
reference formulas, or one fused operator through ``autograd.apply_loss_terms``.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Union

import torch

from . import backends, ops, reference
from .autograd import LossTermsFunction, TermSpec, apply_loss_terms
from .kinds import (DEFAULT_LABELS, KINDS, LOGISTIC, RELATIVISTIC, Elem, Reduction, Term, is_relativistic,
                    kind_spec, reduction_code)

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


class _LossTermsStatsFunction(LossTermsFunction):
    """``LossTermsFunction`` running ``loss_terms_stats``: one more, non-differentiable output
    ``stats`` (``[n, 3]``) from the same pass; backward is the parent's (it ignores the extra
    gradient slot).  Returns ``(total, terms, stats)``.  (Belongs next to its parent in
    autograd.py; kept here while autograd.py has another owner.)"""

    @staticmethod
    def forward(ctx, spec: TermSpec, *tensors):
        n = len(spec.elems)
        logits = tensors[:n]
        need_grad = [bool(ctx.needs_input_grad[1 + i]) for i in range(n)]
        recompute = spec.backend in ops.RECOMPUTE_BACKENDS
        total, terms, grads, _values, stats = ops.loss_terms_stats(
            spec.backend, list(logits), list(tensors[n : 2 * n]), list(tensors[2 * n :]),
            list(spec.elems), list(spec.label_values), list(spec.coefs), spec.reduction,
            [False] * n if recompute else need_grad,
        )
        ctx.spec = spec
        ctx.need_grad = need_grad
        ctx.aux_need_grad = any(ctx.needs_input_grad[1 + n :])
        ctx.aux_present = [t is not None for t in tensors[n:]]
        ctx.save_for_backward(*grads, *logits, *[t for t in tensors[n:] if t is not None])
        ctx.mark_non_differentiable(terms, stats)
        ctx.set_materialize_grads(False)
        return total, terms, stats


# ---------------------------------------------------------------------------------------------
# Lists of scales, relativistic logits, statistics: everything becomes one list of terms given to
# one operator call (coefficients carry the scale weights and 1/num_scales).


class _T(NamedTuple):
    """One operator term: logits, label (tensor or None, value), weight, element function, coef."""

    x: Tensor
    label: Optional[Tensor]
    label_value: float
    weight: Optional[Tensor]
    elem: int
    coef: float


def _scales(value, name: str):
    """``(list of tensors, is_list)``: a list/tuple of logits (one per scale) or one tensor."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"{name}: expected at least one tensor (one per scale), got an empty {type(value).__name__}")
        for i, v in enumerate(value):
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{name}[{i}]: expected a torch.Tensor, got {type(v).__name__}")
        return list(value), True
    return [value], False


def _names(name: str, n: int, is_list: bool):
    return [f"{name}[{i}]" for i in range(n)] if is_list else [name]


def _scale_factors(n: int, is_list: bool, scale_weights, scale_reduction) -> list:
    """Per-scale coefficient: ``scale_weights[s]`` divided by ``n`` for ``scale_reduction="mean"``."""
    if scale_reduction not in ("mean", "sum"):
        raise ValueError(f"scale_reduction: expected 'mean' or 'sum', got {scale_reduction!r}")
    if scale_weights is None:
        w = [1.0] * n
    else:
        if not is_list:
            raise ValueError("scale_weights: only for lists of logits (one tensor per scale)")
        if isinstance(scale_weights, torch.Tensor) or not isinstance(scale_weights, (list, tuple)):
            raise TypeError("scale_weights: expected a list or tuple of numbers (kernel coefficients, "
                            f"read on the host), got {type(scale_weights).__name__}")
        if len(scale_weights) != n:
            raise ValueError(f"scale_weights: expected {n} weights (one per scale), got {len(scale_weights)}")
        w = [_number(v, f"scale_weights[{i}]") for i, v in enumerate(scale_weights)]
    div = float(n) if scale_reduction == "mean" else 1.0
    return [wi / div for wi in w]


def _check_extras(reduction: Reduction, is_list: bool, return_per_scale: bool, return_stats: bool = False):
    if reduction == Reduction.NONE:
        if is_list:
            raise ValueError("reduction: 'none' is not supported for lists of scales (use 'mean' or 'sum')")
        if return_per_scale:
            raise ValueError("return_per_scale: needs reduction 'mean' or 'sum'")
        if return_stats:
            raise ValueError("return_stats: needs reduction 'mean' or 'sum'")


def _rel_terms(kind: str, rows, r: Tensor, f: Tensor, fname: str, weights=(None, None)) -> list:
    """Operator terms of a relativistic kind on one scale: the relativistic logits are formed
    here, in the acc dtype (autograd carries the means' gradient), and read once by the kernel."""
    _rel_check(kind, r, f, fname)
    acc = _acc(r.dtype)
    r, f = r.to(acc), f.to(acc)
    mr = r.mean() if kind != "rsgan" else None
    mf = f.mean() if kind != "rsgan" else None
    out = []
    for row, w in zip(rows, weights):
        x = ops.rel_logit(row.logit, r, f, mr, mf)
        out.append(_T(x, None, float(row.label), None if w is None else w.to(acc), int(row.elem), float(row.coef)))
    return out


def _use_rel_op(rel: bool, backend: str) -> bool:
    """Relativistic kinds go through ``fusedgan::rel_gan_loss`` (C++ autograd, on any fused
    backend: for Triton its loss pass is ``triton_loss_terms``): the means, the relativistic
    logits and the gradient through the means inside one operator.  A build without the C++
    extension composes them from torch ops around one fused call instead."""
    return rel and ops.HAS_REL_GAN_LOSS and (backend in ops.NATIVE_AUTOGRAD_BACKENDS or backend == "triton")


def _rel_check(kind: str, r: Tensor, f: Tensor, fname: str) -> None:
    if kind == "rsgan" and r.shape != f.shape:
        raise ValueError(f"{fname}: rsgan pairs real and fake logits elementwise, so their shapes must "
                         f"be equal; got real {tuple(r.shape)} and fake {tuple(f.shape)}")


def _rel_op_terms(args: dict, s: int, rows, weights, factor: float) -> None:
    """Append scale ``s``'s terms (``rows`` of a RelKind side) to the operator's argument lists."""
    for row, w in zip(rows, weights):
        args["weights"].append(w)
        args["scales"].append(s)
        args["logits"].append(ops.REL_LOGIT_CODES[row.logit])
        args["elems"].append(int(row.elem))
        args["label_values"].append(float(row.label))
        args["coefs"].append(float(row.coef) * factor)


def _rel_op_args() -> dict:
    return {k: [] for k in ("weights", "scales", "logits", "elems", "label_values", "coefs")}


def _rel_op(reals, fakes, args: dict, red: Reduction, backend: str, stats: bool = False):
    a = args
    triton = backend == "triton"
    if triton:
        ops.triton_op()  # registers fusedgan::triton_loss_terms(_stats), which the C++ operator calls
    return torch.ops.fusedgan.rel_gan_loss(list(reals), list(fakes), a["weights"], a["scales"], a["logits"],
                                           a["elems"], a["label_values"], a["coefs"], int(red), stats, triton)


def _run(backend: str, terms: list, reduction: Reduction, stats: bool = False):
    """One operator call over ``terms``: ``(total, terms)`` / ``(*values, terms)`` /
    ``(total, terms, stats)``."""
    spec = TermSpec(backend, tuple(t.elem for t in terms), tuple(t.label_value for t in terms),
                    tuple(t.coef for t in terms), int(reduction))
    xs, labs, ws = [t.x for t in terms], [t.label for t in terms], [t.weight for t in terms]
    if stats:
        return _LossTermsStatsFunction.apply(spec, *xs, *labs, *ws)
    return apply_loss_terms(spec, xs, labs, ws)


STAT_KEYS = ("mean_real_logit", "mean_fake_logit", "mean_real_prob", "mean_fake_prob",
             "frac_real_positive", "frac_fake_negative")


def _stats_dict(real_sums: Tensor, n_real: int, fake_sums: Tensor, n_fake: int, logistic: bool) -> dict:
    """Training statistics from ``[sum x, sum sigmoid(x), count x > 0, count x < 0]`` of the real
    and fake logits (0-dim tensors, no host sync; the mean of nothing is NaN, as in torch)."""
    nan = torch.full_like(real_sums[0], math.nan)
    r, f = real_sums / n_real if n_real else real_sums * nan, fake_sums / n_fake if n_fake else fake_sums * nan
    return {
        "mean_real_logit": r[0],
        "mean_fake_logit": f[0],
        "mean_real_prob": r[1] if logistic else nan,
        "mean_fake_prob": f[1] if logistic else nan,
        "frac_real_positive": r[2],
        "frac_fake_negative": f[3],
    }


def _stats(kind: str, sums: Tensor, real_idx, fake_idx, n_real: int, n_fake: int) -> dict:
    """Combine per-term ``sums`` ([n, STAT_COLS]) over the real and fake terms of all scales
    (``n_real`` / ``n_fake`` elements in all)."""
    real = sums[list(real_idx)].sum(0)
    if kind == "rsgan":  # one pairwise logit d = r - f per scale: the fake side sees -d
        fake, n_fake = torch.stack([-real[0], n_real - real[1], real[3], real[2]]), n_real
    else:
        fake = sums[list(fake_idx)].sum(0)
    return _stats_dict(real, n_real, fake, n_fake, kind in LOGISTIC)


# -- the fast path ---------------------------------------------------------------------------
# The common call (plain tensors of one float dtype on one device, a non-relativistic kind, mean
# or sum, labels given as numbers, no weights, a backend whose Function is in C++) is checked and
# sent to the same operator with no general machinery: on a 64-element logit map the Python work
# of the general path costs about as much as the kernel and the autograd engine together.  Any
# other call, or a call the fast path would reject, takes the general path (which raises the
# errors); tests/test_losses.py holds the two paths to the same results.

_FAST_REDUCTIONS = {"mean": int(Reduction.MEAN), "sum": int(Reduction.SUM)}
_FAST_DTYPES = frozenset(_FLOAT_DTYPES)


def _fast_label(term: Term, value, name: str):
    """The label value of ``term`` given the user's ``value``, or None when the general path must
    decide (a tensor, a bool, or a number the kind does not accept)."""
    if type(value) is not float and type(value) is not int:
        return None
    if isinstance(term.label, str):
        return float(value)
    return term.label if value == DEFAULT_LABELS[name] else None


def _fast_backend(x: Tensor, backend) -> Optional[str]:
    if x.dtype not in _FAST_DTYPES:
        return None
    name = backends.resolve(x.device, backend)
    return name if name in ops.NATIVE_AUTOGRAD_BACKENDS else None


def _fast_d(real, fake, kind, reduction, real_label, fake_label, backend):
    """The loss by the fast path, or None when the call needs the general one."""
    spec = KINDS.get(kind) if type(kind) is str else None
    red = _FAST_REDUCTIONS.get(reduction) if type(reduction) is str else None
    if spec is None or red is None or type(real) is not torch.Tensor or type(fake) is not torch.Tensor:
        return None
    if real.dtype != fake.dtype or real.device != fake.device:
        return None
    lr = _fast_label(spec.d_real, real_label, "real_label")
    lf = _fast_label(spec.d_fake, fake_label, "fake_label")
    if lr is None or lf is None or _fast_backend(real, backend) is None:
        return None
    return torch.ops.fusedgan.gan_loss([real, fake], [None, None], [None, None],
                                       [int(spec.d_real.elem), int(spec.d_fake.elem)], [lr, lf],
                                       [float(spec.d_real.coef), float(spec.d_fake.coef)], red)[0]


def _fast_g(fake, kind, reduction, target, backend):
    spec = KINDS.get(kind) if type(kind) is str else None
    red = _FAST_REDUCTIONS.get(reduction) if type(reduction) is str else None
    if spec is None or red is None or type(fake) is not torch.Tensor:
        return None
    t = _fast_label(spec.g_fake, target, "target")
    if t is None or _fast_backend(fake, backend) is None:
        return None
    return torch.ops.fusedgan.gan_loss([fake], [None], [None], [int(spec.g_fake.elem)], [t],
                                       [float(spec.g_fake.coef)], red)[0]


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
    run in one operator call.  ``return_per_scale=True`` adds the tensor of the ``c_s * loss_s``
    (detached; they sum to the loss); ``return_stats=True`` adds a dict of 0-dim training
    statistics (``STAT_KEYS``) computed in the same pass.  The result is ``loss``, or the tuple
    ``(loss, per_scale?, stats?)`` of what was asked for.
    """
    if (real_weight is None and fake_weight is None and scale_weights is None and not return_per_scale
            and not return_stats and scale_reduction == "mean"):
        out = _fast_d(real, fake, kind, reduction, real_label, fake_label, backend)
        if out is not None:
            return out
    spec = kind_spec(kind)
    rel = is_relativistic(kind)
    red = reduction_code(reduction)
    reals, real_list = _scales(real, "real")
    fakes, fake_list = _scales(fake, "fake")
    if real_list != fake_list:
        raise TypeError("real: is a list of scales but fake is not" if real_list else
                        "fake: is a list of scales but real is not")
    is_list = real_list
    if len(reals) != len(fakes):
        raise ValueError(f"fake: has {len(fakes)} scales but real has {len(reals)}")
    _check_extras(red, is_list, return_per_scale, return_stats)
    S = len(reals)
    factors = _scale_factors(S, is_list, scale_weights, scale_reduction)
    rnames, fnames = _names("real", S, is_list), _names("fake", S, is_list)
    for x, n in zip(reals + fakes, rnames + fnames):
        _check_logits(x, n)
    for x, n in zip(reals[1:] + fakes, rnames[1:] + fnames):
        _check_same_device(x, n, reals[0], rnames[0])
    if is_list:
        for value, name in ((real_weight, "real_weight"), (fake_weight, "fake_weight")):
            if value is not None:
                raise ValueError(f"{name}: elementwise weights are not supported for lists of scales")
    if rel:
        for name, value in (("real_label", real_label), ("fake_label", fake_label)):
            if isinstance(value, torch.Tensor) or _number(value, name) != DEFAULT_LABELS[name]:
                raise ValueError(f"{name}: loss kind {kind!r} takes no {name}")
        if kind == "rsgan":
            for value, name in ((real_weight, "real_weight"), (fake_weight, "fake_weight")):
                if value is not None:
                    raise ValueError(f"{name}: loss kind 'rsgan' takes no weights")
    dtype = _common_dtype(*reals, *fakes)
    name = backends.resolve(reals[0].device, backend)
    simple = not (is_list or rel or return_per_scale or return_stats)

    # Arguments are checked (and the terms built) whichever backend runs.
    terms, real_idx, fake_idx = [], [], []
    rel_op = _use_rel_op(rel, name)
    rel_args = _rel_op_args()
    for s, (r, f, c) in enumerate(zip(reals, fakes, factors)):
        if rel:
            ws = (real_weight, fake_weight)
            if real_weight is not None:
                ws = (_weight(real_weight, "real_weight", r, rnames[s]), ws[1])
            if fake_weight is not None:
                ws = (ws[0], _weight(fake_weight, "fake_weight", f, fnames[s]))
            if rel_op:
                _rel_check(kind, r, f, fnames[s])
                real_idx.append(len(rel_args["scales"]))  # the real-logit term first (kinds.RelKind)
                if len(spec.d) > 1:
                    fake_idx.append(len(rel_args["scales"]) + 1)
                _rel_op_terms(rel_args, s, spec.d, ws, c)
                continue
            st = _rel_terms(kind, spec.d, r, f, fnames[s], ws)
        else:
            r_c, f_c = r.to(dtype), f.to(dtype)
            lab_r, val_r = _label(spec.d_real, {"real_label": real_label}, kind, r_c, rnames[s])
            lab_f, val_f = _label(spec.d_fake, {"fake_label": fake_label}, kind, f_c, fnames[s])
            w_r = _weight(real_weight, "real_weight", r_c, rnames[s])
            w_f = _weight(fake_weight, "fake_weight", f_c, fnames[s])
            st = [_T(r_c, lab_r, val_r, w_r, int(spec.d_real.elem), float(spec.d_real.coef)),
                  _T(f_c, lab_f, val_f, w_f, int(spec.d_fake.elem), float(spec.d_fake.coef))]
        real_idx.append(len(terms))
        if len(st) > 1:
            fake_idx.append(len(terms) + 1)
        terms.extend(t._replace(coef=t.coef * c) for t in st)
    if name == "reference":
        acc = _acc(dtype)
        if simple:
            out = reference.discriminator_loss(
                real.to(acc), fake.to(acc), kind, reduction=reduction, real_label=real_label,
                fake_label=fake_label, real_weight=real_weight, fake_weight=fake_weight,
            )
            return (out[0].to(dtype), out[1].to(dtype)) if red == Reduction.NONE else out
        if red == Reduction.NONE:  # single-tensor relativistic
            out = reference.discriminator_loss(reals[0].to(acc), fakes[0].to(acc), kind, reduction="none",
                                               real_weight=real_weight, fake_weight=fake_weight)
            return out.to(dtype) if kind == "rsgan" else (out[0].to(dtype), out[1].to(dtype))
        per = [c * reference.discriminator_loss(
                   r.to(acc), f.to(acc), kind, reduction=reduction, real_label=real_label,
                   fake_label=fake_label, real_weight=real_weight, fake_weight=fake_weight)
               for r, f, c in zip(reals, fakes, factors)]
        loss = per[0]
        for p in per[1:]:
            loss = loss + p
        extras = []
        if return_per_scale:
            extras.append(torch.stack([p.detach() for p in per]))
        if return_stats:
            rs, fs = [], []
            for r, f in zip(reals, fakes):
                r, f = r.detach().to(acc), f.detach().to(acc)
                if kind == "rsgan":
                    rs.append(r - f)
                elif rel:
                    rs.append(r - f.mean())
                    fs.append(f - r.mean())
                else:
                    rs.append(r)
                    fs.append(f)
            real_sums = torch.stack([reference.logit_sums(x) for x in rs]).sum(0)
            n_real = sum(x.numel() for x in rs)
            if kind == "rsgan":
                fake_sums = torch.stack([-real_sums[0], n_real - real_sums[1], real_sums[3], real_sums[2]])
                n_fake = n_real
            else:
                fake_sums = torch.stack([reference.logit_sums(x) for x in fs]).sum(0)
                n_fake = sum(x.numel() for x in fs)
            extras.append(_stats_dict(real_sums, n_real, fake_sums, n_fake, kind in LOGISTIC))
        return (loss, *extras) if extras else loss

    out = _rel_op(reals, fakes, rel_args, red, name, return_stats) if rel_op else \
        _run(name, terms, red, stats=return_stats)
    if red == Reduction.NONE:
        values = [v.to(dtype) for v in out[:-1]]  # relativistic logits ran in the acc dtype
        return values[0] if kind == "rsgan" else tuple(values)
    loss = out[0]
    if simple:
        return loss
    extras = []
    if return_per_scale:
        extras.append(out[1].view(S, -1).sum(1))
    if return_stats:
        n_real = sum(r.numel() for r in reals)
        extras.append(_stats(kind, out[2], real_idx, fake_idx, n_real, sum(f.numel() for f in fakes)))
    return (loss, *extras) if extras else loss


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
    ``scale_reduction``, ``return_per_scale``).
    """
    if weight is None and real is None and scale_weights is None and not return_per_scale and scale_reduction == "mean":
        out = _fast_g(fake, kind, reduction, target, backend)
        if out is not None:
            return out
    spec = kind_spec(kind)
    rel = is_relativistic(kind)
    red = reduction_code(reduction)
    fakes, is_list = _scales(fake, "fake")
    if rel:
        if real is None:
            raise ValueError(f"real: loss kind {kind!r} is relativistic: generator_loss needs the real "
                             "logits, generator_loss(fake, kind, real=real)")
        reals, real_list = _scales(real, "real")
        if real_list != is_list:
            raise TypeError("real: is a list of scales but fake is not" if real_list else
                            "real: fake is a list of scales but real is not")
        if len(reals) != len(fakes):
            raise ValueError(f"real: has {len(reals)} scales but fake has {len(fakes)}")
        if isinstance(target, torch.Tensor) or _number(target, "target") != DEFAULT_LABELS["target"]:
            raise ValueError(f"target: loss kind {kind!r} takes no target")
        if weight is not None:
            raise ValueError(f"weight: loss kind {kind!r} takes no weight")
    elif real is not None:
        raise ValueError(f"real: only relativistic kinds ({', '.join(RELATIVISTIC)}) take real logits; "
                         f"{kind!r} does not")
    else:
        reals = []
    _check_extras(red, is_list, return_per_scale)
    S = len(fakes)
    factors = _scale_factors(S, is_list, scale_weights, scale_reduction)
    fnames, rnames = _names("fake", S, is_list), _names("real", len(reals), is_list)
    for x, n in zip(fakes + reals, fnames + rnames):
        _check_logits(x, n)
    for x, n in zip(fakes[1:] + reals, fnames[1:] + rnames):
        _check_same_device(x, n, fakes[0], fnames[0])
    if is_list and weight is not None:
        raise ValueError("weight: elementwise weights are not supported for lists of scales")
    dtype = _common_dtype(*fakes, *reals)
    name = backends.resolve(fakes[0].device, backend)
    simple = not (is_list or rel or return_per_scale)

    terms = []
    rel_op = _use_rel_op(rel, name)
    rel_args = _rel_op_args()
    for s, (f, c) in enumerate(zip(fakes, factors)):
        if rel:
            _rel_check(kind, reals[s], f, fnames[s])
            if rel_op:
                _rel_op_terms(rel_args, s, spec.g, [None] * len(spec.g), c)
                continue
            st = _rel_terms(kind, spec.g, reals[s], f, fnames[s])
        else:
            f_c = f.to(dtype)
            lab, val = _label(spec.g_fake, {"target": target}, kind, f_c, fnames[s])
            w = _weight(weight, "weight", f_c, fnames[s])
            st = [_T(f_c, lab, val, w, int(spec.g_fake.elem), float(spec.g_fake.coef))]
        terms.extend(t._replace(coef=t.coef * c) for t in st)
    if name == "reference":
        acc = _acc(dtype)
        if simple:
            out = reference.generator_loss(fake.to(_acc(fake.dtype)), kind, reduction=reduction, target=target, weight=weight)
            return out.to(fake.dtype) if red == Reduction.NONE else out
        if red == Reduction.NONE:  # single-tensor relativistic
            out = reference.generator_loss(fakes[0].to(acc), kind, reduction="none", real=reals[0].to(acc))
            return out.to(dtype) if kind == "rsgan" else (out[0].to(dtype), out[1].to(dtype))
        per = [c * reference.generator_loss(f.to(acc), kind, reduction=reduction, target=target,
                                            real=r.to(acc) if rel else None)
               for f, r, c in zip(fakes, reals if rel else fakes, factors)]
        loss = per[0]
        for p in per[1:]:
            loss = loss + p
        return (loss, torch.stack([p.detach() for p in per])) if return_per_scale else loss

    out = _rel_op(reals, fakes, rel_args, red, name) if rel_op else _run(name, terms, red)
    if red == Reduction.NONE:
        values = [v.to(dtype) for v in out[:-1]]  # relativistic logits ran in the acc dtype
        if rel and kind != "rsgan":
            return tuple(values)
        return values[0]
    if return_per_scale:
        return out[0], out[1].view(S, -1).sum(1)
    return out[0]


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
    fakes, f_list = _scales(fake_feats, "fake_feats")
    reals, r_list = _scales(real_feats, "real_feats")
    if f_list != r_list:
        raise TypeError("real_feats: must be a list when fake_feats is, and a tensor when it is a tensor")
    if len(reals) != len(fakes):
        raise ValueError(f"real_feats: has {len(reals)} tensors but fake_feats has {len(fakes)}")
    n = len(fakes)
    fnames, rnames = _names("fake_feats", n, f_list), _names("real_feats", n, f_list)
    for x, nm in zip(fakes + reals, fnames + rnames):
        _check_logits(x, nm)
    for i in range(n):
        _check_same_device(fakes[i], fnames[i], fakes[0], fnames[0])
        _check_same_device(reals[i], rnames[i], fakes[0], fnames[0])
        if reals[i].shape != fakes[i].shape:
            raise ValueError(f"{rnames[i]}: shape {tuple(reals[i].shape)} differs from {fnames[i]}'s "
                             f"shape {tuple(fakes[i].shape)}")
    if weights is None:
        coefs = [1.0] * n
    else:
        if isinstance(weights, torch.Tensor) or not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights: expected a list or tuple of numbers, got {type(weights).__name__}")
        if len(weights) != n:
            raise ValueError(f"weights: expected {n} weights (one per layer), got {len(weights)}")
        coefs = [_number(w, f"weights[{i}]") for i, w in enumerate(weights)]
    if detach_real:
        reals = [r.detach() for r in reals]
    dtype = _common_dtype(*fakes, *reals)
    name = backends.resolve(fakes[0].device, backend)
    if name == "reference":
        acc = _acc(dtype)
        return reference.feature_matching_loss([f.to(acc) for f in fakes], [r.to(acc) for r in reals], coefs)
    terms = []
    for i, (f, r, c) in enumerate(zip(fakes, reals, coefs)):
        f_c = f.to(dtype)
        lab = _aux_tensor(r, rnames[i], f_c, fnames[i])
        terms.append(_T(f_c, lab, 0.0, None, int(Elem.ABS), c))
    return _run(name, terms, Reduction.MEAN)[0]


# torch-compatible drop-ins (fused BCE-with-logits and MSE), see fusedgan.compat
from .compat import binary_cross_entropy_with_logits, mse_loss  # noqa: F401,E402
