"""Plans and the one executor: how every public loss call reaches a kernel.

A public function (``discriminator_loss``, ``generator_loss``, ``feature_matching_loss``, the
torch-compatible drop-ins) checks its arguments and builds a plan: the static part
(``LossPlan``: element functions, labels, coefficients, reduction, what to return), built from
the kinds table and cached per argument combination, plus the tensors.  ``execute`` runs any plan
on any backend: the backend's kernel through the one autograd operator of its family
(``fusedgan::gan_loss`` or ``fusedgan::rel_gan_loss``), or, for the ``reference`` backend, the
same operator's reference in ``fusedgan.ops`` (differentiable PyTorch).  Multi-scale inputs,
statistics and relativistic kinds are terms of the plan, never separate code paths.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Optional, Sequence

import torch

from . import backends, ops
from .codes import STAT_COLS, Reduction, StatCol, acc_dtype
from .kinds import DEFAULT_LABELS, LOGISTIC, RELATIVISTIC, Term, kind_spec

Tensor = torch.Tensor
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NONE = int(Reduction.NONE)
TENSOR = "tensor"  # a label given as a tensor (its value is read by the kernel)


class GANLossResult(NamedTuple):
    """What ``discriminator_loss`` / ``generator_loss`` return when asked for more than the loss:
    ``per_scale`` (``return_per_scale=True``: each scale's ``c_s * loss_s``, detached) and
    ``stats`` (``return_stats=True``: a dict of 0-dim training statistics, ``STAT_KEYS``); the
    fields not asked for are None."""

    loss: Tensor
    per_scale: Optional[Tensor] = None
    stats: Optional[dict] = None


STAT_KEYS = ("mean_real_logit", "mean_fake_logit", "mean_real_prob", "mean_fake_prob",
             "frac_real_positive", "frac_fake_negative")


class LossPlan(NamedTuple):
    """The static part of a loss call: the arguments of one operator call and how to present
    its outputs."""

    op: str  # "gan_loss" or "rel_gan_loss"
    elems: tuple
    label_values: tuple
    coefs: tuple
    reduction: int
    stats: bool = False
    scales: tuple = ()  # rel_gan_loss: the scale each term reads
    rel_logits: tuple = ()  # rel_gan_loss: the relativistic logit each term reads
    n_scales: int = 1
    named: bool = False  # return a GANLossResult
    per_scale: bool = False
    kind: str = ""  # for the statistics
    real_terms: tuple = ()  # terms on real logits (statistics)
    fake_terms: tuple = ()
    single: bool = True  # reduction "none": one tensor (else a tuple, one per term)
    tail: tuple = ()  # the operator's non-tensor arguments, as lists (built once per plan)


class Bound(NamedTuple):
    """A plan with its tensors: the operator's tensor arguments, and what presenting needs."""

    plan: LossPlan
    tensors: tuple  # gan_loss: (logits, labels, weights); rel_gan_loss: (reals, fakes, weights)
    device: torch.device
    dtype: torch.dtype  # per-element values are returned in it
    counts: tuple = (0, 0)  # elements of all real / fake logits (statistics)


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the public functions (errors name the argument).


def number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number or a tensor, got {type(value).__name__}")
    return float(value)


def check_logits(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of logits, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: logits must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense (strided) tensor, got layout {x.layout}")


def check_same_device(xs: Sequence[Tensor], names: Sequence[str]) -> None:
    for x, n in zip(xs[1:], names[1:]):
        if x.device != xs[0].device:
            raise ValueError(f"{n}: is on {x.device} but {names[0]} is on {xs[0].device}")


def common_dtype(xs: Sequence[Tensor]) -> torch.dtype:
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def none_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The logits' dtype for reduction="none": float32 for half logits under autocast, whose
    float32-listed losses return float32 per-element losses (the kernel writes values in the
    dtype it reads)."""
    if dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(device.type):
        return torch.float32
    return dtype


def operand_dtype(value: Tensor, x: Tensor) -> Tensor:
    """A label or weight as the kernels read it: in its own precision, never rounded to half
    logits.  Kept as is in x's dtype or x's acc dtype (float32; float64 for float64 logits: fp32
    operands are not copied, half ones are widened in the kernel); any other dtype is cast once
    to the acc dtype (docs/operators.md)."""
    acc = acc_dtype(x.dtype)
    return value if value.dtype == x.dtype or value.dtype == acc else value.to(acc)


def aux_tensor(value, name: str, x: Tensor, x_name: str) -> Tensor:
    """A label or weight tensor in the kernel's form: ``operand_dtype``, one element or x's numel."""
    if value.dtype not in FLOAT_DTYPES and value.dtype not in (torch.int64, torch.int32, torch.bool):
        raise TypeError(f"{name}: expected a real floating-point tensor, got {value.dtype}")
    if value.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense (strided) tensor, got layout {value.layout}")
    # a negative-bit view (torch._neg_view, .conj().imag): kernels read memory, so materialise the
    # sign (self when there is none; no is_neg() branch, which torch.compile cannot trace)
    value = value.resolve_neg()
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
            f"{name}: shape {tuple(value.shape)} is not broadcastable to {x_name}'s shape {tuple(x.shape)}")
    value = operand_dtype(value, x)
    if value.numel() == 1:
        return value.reshape(1)
    return value.expand(x.shape).contiguous()


def weight(value, name: str, x: Tensor, x_name: str) -> Optional[Tensor]:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or None, got {type(value).__name__}")
    return aux_tensor(value, name, x, x_name)


def label_key(value, name: str):
    """A user label as a plan key: its float value, or TENSOR."""
    return TENSOR if isinstance(value, torch.Tensor) else number(value, name)


def scales_of(value, name: str):
    """``(list of tensors, is_list)``: a list/tuple of logits (one per scale) or one tensor."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"{name}: expected at least one tensor (one per scale), got an empty "
                             f"{type(value).__name__}")
        for i, v in enumerate(value):
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{name}[{i}]: expected a torch.Tensor, got {type(v).__name__}")
        return list(value), True
    return [value], False


def names_of(name: str, n: int, is_list: bool) -> list:
    return [f"{name}[{i}]" for i in range(n)] if is_list else [name]


def scale_factors(n: int, is_list: bool, scale_weights, scale_reduction) -> tuple:
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
        w = [number(v, f"scale_weights[{i}]") for i, v in enumerate(scale_weights)]
    div = float(n) if scale_reduction == "mean" else 1.0
    return tuple(wi / div for wi in w)


def check_extras(red: int, is_list: bool, per_scale: bool, stats: bool = False) -> None:
    if red == _NONE:
        if is_list:
            raise ValueError("reduction: 'none' is not supported for lists of scales (use 'mean' or 'sum')")
        if per_scale:
            raise ValueError("return_per_scale: needs reduction 'mean' or 'sum'")
        if stats:
            raise ValueError("return_stats: needs reduction 'mean' or 'sum'")


# ---------------------------------------------------------------------------------------------
# Static plans from the kinds table (cached: a training loop repeats the same call).


def _term_label(term: Term, labels: dict, kind: str) -> float:
    """The label value of one term: the user's (``labels[name]``; 0.0 for a tensor, which the
    kernel reads) or the kind's own, which the user may not change."""
    if isinstance(term.label, str):
        value = labels[term.label]
        return 0.0 if value == TENSOR else value
    for name, value in labels.items():
        if value == TENSOR or value != DEFAULT_LABELS[name]:
            raise ValueError(f"{name}: loss kind {kind!r} takes no {name}")
    return float(term.label)


@functools.lru_cache(maxsize=1024)
def side_plan(kind: str, side: str, red: int, labels: tuple, factors: tuple, stats: bool = False,
              per_scale: bool = False) -> LossPlan:
    """The plan of one side (``"D"`` or ``"G"``) of ``kind`` over ``len(factors)`` scales.

    ``labels``: ``(name, value)`` pairs of the side's label arguments (value: float or TENSOR).
    Terms are per scale in the kinds table's order (D: real then fake; relativistic: its rows).
    """
    spec = kind_spec(kind)
    lab = dict(labels)
    rel = kind in RELATIVISTIC
    if rel:
        _term_label(Term(0, 0.0), lab, kind)  # relativistic kinds take no labels
        rows = spec.d if side == "D" else spec.g
    else:
        rows = (spec.d_real, spec.d_fake) if side == "D" else (spec.g_fake,)
    elems, values, coefs, scales, logits = [], [], [], [], []
    for s, c in enumerate(factors):
        for row in rows:
            elems.append(int(row.elem))
            values.append(float(row.label) if rel else _term_label(row, lab, kind))
            coefs.append(float(row.coef) * c)
            scales.append(s)
            logits.append(int(row.logit) if rel else -1)
    k = len(rows)
    return _with_tail(LossPlan(
        op="rel_gan_loss" if rel else "gan_loss", elems=tuple(elems), label_values=tuple(values),
        coefs=tuple(coefs), reduction=red, stats=stats, scales=tuple(scales) if rel else (),
        rel_logits=tuple(logits) if rel else (), n_scales=len(factors), named=stats or per_scale,
        per_scale=per_scale, kind=kind, real_terms=tuple(range(0, k * len(factors), k)),
        fake_terms=tuple(range(1, k * len(factors), k)) if k > 1 else (),
        single=k == 1))


def _with_tail(p: LossPlan) -> LossPlan:
    """``p`` with its operator arguments after the tensors, built once (a cached plan is reused
    by every later call with the same arguments; the operators never modify their lists)."""
    rel = (list(p.scales), list(p.rel_logits)) if p.op == "rel_gan_loss" else ()
    return p._replace(tail=(*rel, list(p.elems), list(p.label_values), list(p.coefs), p.reduction, p.stats))


def terms_plan(elems, label_values, coefs, reduction: int) -> LossPlan:
    """A plan of explicit terms (feature matching, the torch-compatible drop-ins)."""
    return _terms_plan(tuple(int(e) for e in elems), tuple(float(v) for v in label_values),
                       tuple(float(c) for c in coefs), int(reduction))


@functools.lru_cache(maxsize=1024)
def _terms_plan(elems: tuple, label_values: tuple, coefs: tuple, reduction: int) -> LossPlan:
    return _with_tail(LossPlan("gan_loss", elems, label_values, coefs, reduction, single=len(elems) == 1))


# ---------------------------------------------------------------------------------------------
# The executor.


def run(op: str, args: tuple, device: torch.device, backend: Optional[str]):
    """One autograd operator of ``fusedgan.ops`` on the backend chosen for ``device``."""
    return run_on(backends.resolve(device, backend), op, args)


def run_on(name: str, op: str, args: tuple):
    """``run`` on the backend ``name`` (what ``backends.resolve`` chose)."""
    if name == "reference":
        return ops.OPS[op].reference(*args)
    return ops.call(op, (*args, name == "triton"))


def run_logits(p: LossPlan, logits: list, device: torch.device, backend: Optional[str]) -> Tensor:
    """The loss of a plain plan (number labels, no weights, a reduced loss and nothing else) on
    checked logits of one dtype: ``execute`` of that call, with less Python per step.  ``logits``:
    gan_loss' list, or ``[real, fake]`` of a one-scale rel_gan_loss plan."""
    if p.op == "gan_loss":
        none = [None] * len(logits)
        return run(p.op, (logits, none, none, *p.tail), device, backend)[0]
    return run(p.op, (logits[:1], logits[1:], [None] * len(p.elems), *p.tail), device, backend)[0]


def execute(b: Bound, backend: Optional[str]):
    """Run a bound plan and present its outputs: the loss, per-element values, or a GANLossResult."""
    p = b.plan
    out = run(p.op, (*b.tensors, *p.tail), b.device, backend)
    if p.reduction == _NONE:
        values = [v.to(b.dtype) for v in out[:len(p.elems)]]
        return values[0] if p.single else tuple(values)
    if not p.named:
        return out[0]
    per_scale = out[1].view(p.n_scales, -1).sum(1) if p.per_scale else None
    stats = logit_stats(p, out[2], *b.counts) if p.stats else None
    return GANLossResult(out[0], per_scale, stats)


def logit_stats(p: LossPlan, sums: Tensor, n_real: int, n_fake: int) -> dict:
    """Training statistics from the per-term rows ``[sum x, sum sigmoid(x), count x > 0,
    count x < 0]`` (``STAT_COLS`` columns) of the real and fake terms of all scales (0-dim
    tensors, no host sync; the mean of nothing is NaN, as in torch)."""
    assert sums.shape[-1] == STAT_COLS
    real = sums[list(p.real_terms)].sum(0)
    if p.kind == "rsgan":  # one pairwise logit d = r - f per scale: the fake side sees -d
        fake = torch.stack([-real[StatCol.SUM_X], n_real - real[StatCol.SUM_SIGMOID],
                            real[StatCol.COUNT_NEG], real[StatCol.COUNT_POS]])
        n_fake = n_real
    else:
        fake = sums[list(p.fake_terms)].sum(0)
    nan = torch.full_like(real[0], math.nan)
    r = real / n_real if n_real else real * nan
    f = fake / n_fake if n_fake else fake * nan
    logistic = p.kind in LOGISTIC
    return {
        "mean_real_logit": r[StatCol.SUM_X],
        "mean_fake_logit": f[StatCol.SUM_X],
        "mean_real_prob": r[StatCol.SUM_SIGMOID] if logistic else nan,
        "mean_fake_prob": f[StatCol.SUM_SIGMOID] if logistic else nan,
        "frac_real_positive": r[StatCol.COUNT_POS],
        "frac_fake_negative": f[StatCol.COUNT_NEG],
    }


__all__ = ["Bound", "GANLossResult", "LossPlan", "STAT_KEYS", "execute", "operand_dtype", "run", "side_plan",
           "terms_plan"]
