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

``fusedgan::loss_terms_stats`` / ``fusedgan::triton_loss_terms_stats``: the same arguments, and
one more output ``stats`` (``[n, STAT_COLS]`` = ``[n, 4]``, acc dtype): per term the unweighted
sums of ``x``, ``sigmoid(x)``, ``[x > 0]`` and ``[x < 0]`` from the same pass (docs/operators.md).
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


def loss_terms_stats_fake(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """``loss_terms_fake`` plus ``stats``: ``[n, STAT_COLS]`` in the acc dtype."""
    total, terms, grads, values = loss_terms_fake(logits, labels, weights, elems, label_values, coefs,
                                                  reduction, need_grad)
    return total, terms, grads, values, terms.new_empty((len(logits), reference.STAT_COLS))


def _has_native(op: str, key: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fusedgan::{op}", key)
    except RuntimeError:  # an extension built before the operator existed
        return False


# loss_terms_stats (training statistics from the loss pass), when this build defines it.
HAS_STATS_CPU = _ext._C is not None and _has_native("loss_terms_stats", "CPU")
HAS_STATS_CUDA = _ext._C is not None and _has_native("loss_terms_stats", "CUDA")
if HAS_STATS_CPU or HAS_STATS_CUDA:
    torch.library.register_fake("fusedgan::loss_terms_stats")(loss_terms_stats_fake)


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


def loss_terms_stats(backend, logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """``loss_terms`` plus ``stats`` (per term: sums of x, sigmoid(x), [x > 0], [x < 0]) from the
    same pass."""
    if backend == "triton":
        triton_op()
        op = torch.ops.fusedgan.triton_loss_terms_stats
    elif backend in ("cpu", "cuda"):
        if not (HAS_STATS_CPU if backend == "cpu" else HAS_STATS_CUDA):
            raise RuntimeError(f"backend: this build of fusedgan._C has no {backend} kernel for "
                               "fusedgan::loss_terms_stats (return_stats=True); rebuild, or use "
                               "backend='reference'")
        op = torch.ops.fusedgan.loss_terms_stats
    else:
        raise ValueError(f"backend: {backend!r} has no fused operator")
    return op(logits, labels, weights, elems, label_values, coefs, int(reduction), need_grad)


def reference_loss_terms_stats(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """The ``loss_terms_stats`` contract evaluated by the reference."""
    out = reference_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad)
    stats = torch.stack([reference.logit_sums(x.reshape(-1)) for x in logits])
    return (*out, stats)


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


# -- exact backward of fusedgan::gan_loss (the C++ autograd entry point, csrc/autograd.cpp) ------
# Called from C++ backward when grad mode is on (create_graph=True) or a label/weight needs a
# gradient: it differentiates the reference formulas, so derivatives of every order are exact.

_EXACT_BACKWARD_SCHEMA = (
    "loss_terms_exact_backward(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, Tensor?[] grad_outputs, bool[] wanted) -> Tensor[]"
)


def exact_backward(logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs, wanted):
    n = len(logits)
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        # One alias per argument position: a tensor passed twice gets each position's partial.
        inputs = [None if t is None else t.view_as(t) for t in (*logits, *labels, *weights)]
        targets = [t for t, w in zip(inputs, wanted) if t is not None and w]
        total, _, values = reference.loss_terms(
            inputs[:n], inputs[n : 2 * n], inputs[2 * n :], elems, label_values, coefs, reduction
        )
        if reduction == Reduction.NONE:
            pairs = [(v.reshape(x.shape), g) for v, x, g in zip(values, logits, grad_outputs) if g is not None]
        else:
            pairs = [(total, grad_outputs[0])] if grad_outputs[0] is not None else []
        got = []
        if pairs and targets:
            outs, gos = zip(*pairs)
            got = list(torch.autograd.grad(outs, targets, gos, create_graph=create_graph, allow_unused=True))
    got = iter(got)
    result = []
    for t, w in zip((*logits, *labels, *weights), wanted):
        if t is None or not w:
            result.append(logits[0].new_empty((0,)))
            continue
        g = next(got, None)
        result.append(torch.zeros_like(t) if g is None else g.to(t.dtype))
    return result


def gan_loss_fake(logits, labels, weights, elems, label_values, coefs, reduction):
    total, terms, _, values = loss_terms_fake(logits, labels, weights, elems, label_values, coefs, reduction,
                                              [False] * len(logits))
    return [*values, terms] if reduction == Reduction.NONE else [total, terms]


HAS_GAN_LOSS = (_ext.HAS_CPU or _ext.HAS_CUDA) and _has_native("gan_loss", "Autograd")
# Backends whose autograd runs in C++ (fusedgan::gan_loss); the others use autograd.py's Function.
NATIVE_AUTOGRAD_BACKENDS = frozenset({"cpu", "cuda"} if HAS_GAN_LOSS else ())

if HAS_GAN_LOSS:
    _lib = torch.library.Library("fusedgan", "FRAGMENT")
    _lib.define(_EXACT_BACKWARD_SCHEMA)
    _lib.impl("loss_terms_exact_backward", exact_backward, "CompositeImplicitAutograd")
    torch.library.register_fake("fusedgan::gan_loss")(gan_loss_fake)


# -- fusedgan::rel_gan_loss (csrc/relativistic.cpp): the relativistic kinds in one operator ------

_REL_EXACT_BACKWARD_SCHEMA = (
    "rel_gan_loss_exact_backward(Tensor[] reals, Tensor[] fakes, Tensor?[] weights, int[] scales, "
    "int[] logits, int[] elems, float[] label_values, float[] coefs, int reduction, Tensor?[] grad_outputs, "
    "bool[] wanted) -> Tensor[]"
)


# The relativistic logits, by name (kinds.py's RelTerm.logit) and by the operator's code.
REL_LOGIT_CODES = {"r-mf": 0, "f-mr": 1, "r-f": 2, "f-r": 3}
_REL_LOGIT_NAMES = {v: k for k, v in REL_LOGIT_CODES.items()}


def rel_logit(name: str, r, f, mr, mf):
    """``r - mf``, ``f - mr``, ``r - f`` or ``f - r`` (``mr``/``mf`` may be None when unused)."""
    return {"r-mf": lambda: r - mf, "f-mr": lambda: f - mr, "r-f": lambda: r - f, "f-r": lambda: f - r}[name]()


def rel_logits(reals, fakes, scales, logits):
    """The relativistic logit of every term of rel_gan_loss, in the acc dtype."""
    acc = _acc_dtype(reals[0].dtype)
    r = [x.to(acc) for x in reals]
    f = [x.to(acc) for x in fakes]
    mr, mf = [x.mean() for x in r], [x.mean() for x in f]
    return [rel_logit(_REL_LOGIT_NAMES[code], r[s], f[s], mr[s], mf[s]) for s, code in zip(scales, logits)]


def rel_exact_backward(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                       grad_outputs, wanted):
    """Gradients of rel_gan_loss's outputs for the given tensors (reals, fakes, present weights),
    by differentiating the reference formulas: exact to every order.  ``grad_outputs``: one for
    the total (MEAN / SUM), or one per term's per-element values (NONE; None where that output
    got no gradient)."""
    create_graph = torch.is_grad_enabled()
    given = [*reals, *fakes, *[w for w in weights if w is not None]]
    with torch.enable_grad():
        alias = [t.view_as(t) if t.requires_grad else t.detach().requires_grad_(bool(w)) for t, w in zip(given, wanted)]
        S = len(reals)
        it = iter(alias[2 * S:])
        ws = [None if w is None else next(it) for w in weights]
        acc = _acc_dtype(reals[0].dtype)
        xs = rel_logits(alias[:S], alias[S:2 * S], scales, logits)
        total, _, values = reference.loss_terms(xs, [None] * len(xs), [None if w is None else w.to(acc) for w in ws],
                                                elems, label_values, coefs, reduction)
        outs = values if reduction == int(Reduction.NONE) else [total]
        used = [(o, g) for o, g in zip(outs, grad_outputs) if g is not None]
        targets = [a for a, w in zip(alias, wanted) if w]
        got = iter(torch.autograd.grad([o for o, _ in used], targets, [g for _, g in used],
                                       create_graph=create_graph, allow_unused=True)
                   if targets and used else [None] * len(targets))
    out = []
    for t, w in zip(given, wanted):
        if not w:
            out.append(t.new_empty((0,)))
            continue
        g = next(got)
        out.append(torch.zeros_like(t) if g is None else g.to(t.dtype))
    return out


def rel_gan_loss_fake(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                      stats=False, triton=False):
    acc = _acc_dtype(reals[0].dtype)
    terms = reals[0].new_empty((len(scales),), dtype=acc)
    if reduction == int(Reduction.NONE):  # [values of each term..., terms]
        return [(reals if code in (0, 2) else fakes)[s].new_empty(
                    (reals if code in (0, 2) else fakes)[s].shape, dtype=acc)
                for s, code in zip(scales, logits)] + [terms]
    out = [reals[0].new_empty((), dtype=acc), terms]
    if stats:
        out.append(reals[0].new_empty((len(scales), reference.STAT_COLS), dtype=acc))
    return out


HAS_REL_GAN_LOSS = _ext._C is not None and _has_native("rel_gan_loss", "Autograd")
if HAS_REL_GAN_LOSS:
    _rel_lib = torch.library.Library("fusedgan", "FRAGMENT")
    _rel_lib.define(_REL_EXACT_BACKWARD_SCHEMA)
    _rel_lib.impl("rel_gan_loss_exact_backward", rel_exact_backward, "CompositeImplicitAutograd")
    torch.library.register_fake("fusedgan::rel_gan_loss")(rel_gan_loss_fake)
