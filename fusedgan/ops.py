"""The operator registry: every ``fusedgan::`` operator in one table, registered in one place.

Three families, each with ONE autograd implementation in C++ (csrc/) that every fused backend
shares; the device (or ``triton=True``) picks the kernel through the dispatcher:

| autograd op (C++)  | forward kernel                          | backward kernel                    |
|--------------------|-----------------------------------------|------------------------------------|
| ``gan_loss``       | ``loss_terms`` / ``loss_terms_stats``   | saved gradient, or ``loss_grads``  |
| ``rel_gan_loss``   | ``loss_terms`` / ``loss_terms_stats``   | saved gradient                     |
| ``gan_penalty``    | ``group_penalty``                       | ``group_scale_mul``                |

Each kernel op has a CPU and a CUDA implementation (C++) and a Triton twin ``triton_<name>`` with
the same schema.  Derivatives of every order go through the ``*_exact_backward`` ops below, which
differentiate the reference formulas.  The contracts: docs/operators.md.

``OPS`` lists every operator with its reference (the contract in differentiable PyTorch: the
tests' fp64 oracle, and what the ``reference`` backend runs for the autograd ops) and its fake
(abstract) implementation.  ``_register()`` runs once, when fusedgan is imported: fakes, the
Python-implemented ops and the Triton ops, so that no call depends on what was imported before.
tests/test_ops.py runs the same three checks on every entry: correctness against the fp64
reference, gradcheck/gradgradcheck through the autograd ops, and ``torch.library.opcheck``.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, Dict, NamedTuple, Optional

import torch

from . import _ext, reference
from .codes import STAT_COLS, PenaltyKind, Reduction, RelLogit, acc_dtype

_NONE = int(Reduction.NONE)

# ---------------------------------------------------------------------------------------------
# References: each operator's contract restated with fusedgan.reference (differentiable).


def reference_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """``loss_terms``: (total, terms, grads, values), gradients by autograd."""
    with torch.enable_grad():
        xs = [x.detach().requires_grad_(True) for x in logits]
        total, terms, values = reference.loss_terms(xs, labels, weights, elems, label_values, coefs, reduction)
        if reduction == _NONE:
            gs = torch.autograd.grad(values, xs, [torch.ones_like(v) for v in values], allow_unused=True)
        else:
            gs = torch.autograd.grad(total, xs, allow_unused=True)
    grads = []
    for x, g, ng in zip(logits, gs, need_grad):
        if not ng:
            grads.append(x.new_empty((0,)))
        else:
            grads.append(torch.zeros_like(x) if g is None else g.to(x.dtype).contiguous())
    if reduction != _NONE:
        values = [x.new_empty((0,)) for x in logits]
    return total.detach(), terms.detach(), grads, [v.detach() for v in values]


def _logit_stats(xs) -> torch.Tensor:
    return torch.stack([reference.logit_sums(x.reshape(-1)) for x in xs])


def reference_loss_terms_stats(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    """``loss_terms_stats``: ``loss_terms`` plus the statistics rows of the logits."""
    out = reference_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad)
    return (*out, _logit_stats(logits))


def reference_loss_grads(logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs):
    """``loss_grads``: each term's gradient times its grad_output (empty where that is None)."""
    _, _, grads, _ = reference_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction,
                                          [go is not None for go in grad_outputs])
    return [g if go is None else (g.to(acc_dtype(g.dtype)) * go.to(acc_dtype(g.dtype))).to(g.dtype)
            for g, go in zip(grads, grad_outputs)]


def reference_gan_loss(logits, labels, weights, elems, label_values, coefs, reduction, stats=False, triton=False):
    """``gan_loss`` (differentiable): [total, terms] or [values..., terms], then stats if asked."""
    outs = reference.loss_terms(list(logits), list(labels), list(weights), elems, label_values, coefs, reduction)
    return _gan_loss_outputs(logits, outs, reduction, stats)


def _gan_loss_outputs(xs, outs, reduction, stats):
    """[total, terms] or [values..., terms], then the statistics of the logits ``xs`` if asked."""
    total, terms, values = outs
    out = list(values) if reduction == _NONE else [total]
    out.append(terms.detach())
    if stats:
        out.append(_logit_stats([x.detach() for x in xs]))
    return out


def rel_logits(reals, fakes, scales, logits):
    """The relativistic logit of every term of rel_gan_loss, in the acc dtype."""
    acc = acc_dtype(reals[0].dtype)
    r = [x.to(acc) for x in reals]
    f = [x.to(acc) for x in fakes]
    mr, mf = [x.mean() for x in r], [x.mean() for x in f]
    pick = {RelLogit.R_MINUS_MF: lambda s: r[s] - mf[s], RelLogit.F_MINUS_MR: lambda s: f[s] - mr[s],
            RelLogit.R_MINUS_F: lambda s: r[s] - f[s], RelLogit.F_MINUS_R: lambda s: f[s] - r[s]}
    return [pick[RelLogit(code)](s) for s, code in zip(scales, logits)]


def _rel_loss_terms(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction):
    xs = rel_logits(reals, fakes, scales, logits)
    acc = xs[0].dtype
    ws = [None if w is None else w.to(acc) for w in weights]
    return xs, reference.loss_terms(xs, [None] * len(xs), ws, elems, label_values, coefs, reduction)


def reference_rel_gan_loss(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                           stats=False, triton=False):
    """``rel_gan_loss`` (differentiable): the relativistic logits, then ``gan_loss``'s outputs."""
    xs, outs = _rel_loss_terms(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction)
    return _gan_loss_outputs(xs, outs, reduction, stats)


def _group_values(g, A, C, B, kind, center, one_sided, gamma, batch):
    """Per-group penalty values [A, B] from the sums of squares s (returned too, for its gradient)."""
    s = g.detach().to(acc_dtype(g.dtype)).reshape(A, C, B).square().sum(1).requires_grad_(True)
    if kind == PenaltyKind.R1:
        return s, (gamma / 2) * s / batch
    d = reference.safe_sqrt(s) - center
    return s, (torch.relu(d) if one_sided else d).square()


def reference_group_penalty(g, A, C, B, kind, center, one_sided, reduction, gamma, batch):
    """``group_penalty``: (value, scale) with ``scale = d value / d g / g`` per group (0 at g = 0)."""
    with torch.enable_grad():
        s, per = _group_values(g, A, C, B, kind, center, one_sided, gamma, batch)
        value = per if reduction == _NONE else per.sum() if reduction == int(Reduction.SUM) else per.mean()
        (ds,) = torch.autograd.grad(value if reduction != _NONE else per.sum(), s)
    return value.detach(), 2 * ds  # d value / d g = d value / d s * 2 g


def reference_group_sumsq(g, A, C, B):
    return g.to(acc_dtype(g.dtype)).reshape(A, C, B).square().sum(1)


def reference_group_scale_mul(g, scale, grad_output, A, C, B):
    acc = acc_dtype(g.dtype)
    s = scale.to(acc).reshape(A, 1, B) * grad_output.to(acc).reshape(())
    return (s * g.to(acc).reshape(A, C, B)).reshape(g.shape).to(g.dtype)


def reference_gan_penalty(g, A, C, B, kind, center, one_sided, reduction, gamma, batch, value_shape, norm,
                          triton=False):
    """``gan_penalty`` (differentiable): the reference penalty of ``g``."""
    if kind == PenaltyKind.R1:
        return reference.r1_penalty(g, gamma)
    red = {int(r): r.name.lower() for r in Reduction}[reduction]
    return reference.gradient_penalty(g, center=center, one_sided=one_sided, norm=norm, reduction=red)


# ---------------------------------------------------------------------------------------------
# Exact backward ops: called by the C++ autograd Functions when backward runs with grad mode on
# (create_graph=True) or a label / weight needs a gradient.  They differentiate the references,
# so every derivative of every order is exact.


def _alias(t, want):
    """A fresh graph leaf (or a view keeping an existing graph) for each argument position: a
    tensor passed twice gets each position's partial gradient."""
    if t is None:
        return None
    return t.view_as(t) if t.requires_grad else t.detach().requires_grad_(bool(want))


def _grads_for(given, wanted, outs, grad_outputs, create_graph):
    """d outs / d given (where wanted) with grad_outputs; zeros where unused, empty where not wanted."""
    used = [(o, g) for o, g in zip(outs, grad_outputs) if g is not None]
    targets = [t for t, w in zip(given, wanted) if t is not None and w]
    got = iter(torch.autograd.grad([o for o, _ in used], targets, [g for _, g in used],
                                   create_graph=create_graph, allow_unused=True) if used and targets
               else [None] * len(targets))
    out = []
    for t, w in zip(given, wanted):
        if t is None or not w:
            out.append(torch.empty((0,)) if t is None else t.new_empty((0,)))
            continue
        g = next(got)
        out.append(torch.zeros_like(t) if g is None else g.to(t.dtype))
    return out


def exact_backward(logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs, wanted):
    create_graph = torch.is_grad_enabled()
    given = [*logits, *labels, *weights]
    with torch.enable_grad():
        alias = [_alias(t, w) for t, w in zip(given, wanted)]
        n = len(logits)
        total, _, values = reference.loss_terms(alias[:n], alias[n:2 * n], alias[2 * n:], elems, label_values,
                                                coefs, reduction)
        outs = [v.reshape(x.shape) for v, x in zip(values, logits)] if reduction == _NONE else [total]
        return _grads_for(alias, wanted, outs, grad_outputs, create_graph)


def rel_exact_backward(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                       grad_outputs, wanted):
    """Gradients for the given tensors (reals, fakes, present weights); ``grad_outputs``: one for
    the total (MEAN / SUM) or one per term's values (NONE; None where unused)."""
    create_graph = torch.is_grad_enabled()
    given = [*reals, *fakes, *[w for w in weights if w is not None]]
    with torch.enable_grad():
        alias = [_alias(t, w) for t, w in zip(given, wanted)]
        S = len(reals)
        it = iter(alias[2 * S:])
        ws = [None if w is None else next(it) for w in weights]
        _, (total, _, values) = _rel_loss_terms(alias[:S], alias[S:2 * S], ws, scales, logits, elems,
                                                label_values, coefs, reduction)
        return _grads_for(alias, wanted, values if reduction == _NONE else [total], grad_outputs, create_graph)


def penalty_exact_backward(g, grad_output, kind, center, one_sided, norm, reduction, gamma):
    """d value / d g * grad_output by differentiating the reference (every order exact)."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        gi = _alias(g, True)
        value = reference_gan_penalty(gi, 0, 0, 0, kind, center, one_sided, reduction, gamma, 0, (), norm)
        (grad,) = torch.autograd.grad(value, gi, grad_output.to(value.dtype), create_graph=create_graph)
    return grad.to(g.dtype)


_PYTHON_OPS = {
    "loss_terms_exact_backward": (
        "loss_terms_exact_backward(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
        "float[] label_values, float[] coefs, int reduction, Tensor?[] grad_outputs, bool[] wanted) -> Tensor[]",
        exact_backward),
    "rel_gan_loss_exact_backward": (
        "rel_gan_loss_exact_backward(Tensor[] reals, Tensor[] fakes, Tensor?[] weights, int[] scales, "
        "int[] logits, int[] elems, float[] label_values, float[] coefs, int reduction, "
        "Tensor?[] grad_outputs, bool[] wanted) -> Tensor[]",
        rel_exact_backward),
    "penalty_exact_backward": (
        "penalty_exact_backward(Tensor g, Tensor grad_output, int kind, float center, bool one_sided, "
        "str norm, int reduction, float gamma) -> Tensor",
        penalty_exact_backward),
}

# ---------------------------------------------------------------------------------------------
# Fakes: output shapes and dtypes without computing (torch.compile, meta tensors).


def _check_devices(op: str, first, **lists) -> None:
    """Every tensor argument on the first logits' device, as the kernels require: a fake must
    raise where the kernel would (a meta label beside CPU logits would otherwise dispatch here
    and return uninitialised CPU memory)."""
    for name, ts in lists.items():
        for i, t in enumerate(ts):
            if t is not None and t.device != first.device:
                raise RuntimeError(f"fusedgan::{op}: {name}[{i}] is on {t.device} but logits[0] is on "
                                   f"{first.device}")


def loss_terms_fake(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    x0 = logits[0]
    _check_devices("loss_terms", x0, logits=logits, labels=labels, weights=weights)
    acc = acc_dtype(x0.dtype)
    total = x0.new_empty((), dtype=acc)
    terms = x0.new_empty((len(logits),), dtype=acc)
    grads = [x.new_empty(x.shape) if ng else x.new_empty((0,)) for x, ng in zip(logits, need_grad)]
    values = [x.new_empty(x.shape) if reduction == _NONE else x.new_empty((0,)) for x in logits]
    return total, terms, grads, values


def loss_terms_stats_fake(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    total, terms, grads, values = loss_terms_fake(logits, labels, weights, elems, label_values, coefs,
                                                  reduction, need_grad)
    return total, terms, grads, values, terms.new_empty((len(logits), STAT_COLS))


def loss_grads_fake(logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs):
    _check_devices("loss_grads", logits[0], logits=logits, labels=labels, weights=weights,
                   grad_outputs=grad_outputs)
    return [x.new_empty(x.shape) if go is not None else x.new_empty((0,)) for x, go in zip(logits, grad_outputs)]


def gan_loss_fake(logits, labels, weights, elems, label_values, coefs, reduction, stats=False, triton=False):
    total, terms, _, values = loss_terms_fake(logits, labels, weights, elems, label_values, coefs, reduction,
                                              [False] * len(logits))
    out = [*values, terms] if reduction == _NONE else [total, terms]
    return out + [terms.new_empty((len(logits), STAT_COLS))] if stats else out


def rel_gan_loss_fake(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                      stats=False, triton=False):
    _check_devices("rel_gan_loss", reals[0], reals=reals, fakes=fakes, weights=weights)
    acc = acc_dtype(reals[0].dtype)
    terms = reals[0].new_empty((len(scales),), dtype=acc)
    reads_real = (int(RelLogit.R_MINUS_MF), int(RelLogit.R_MINUS_F))
    if reduction == _NONE:  # [values of each term..., terms]: each in its logit's shape
        out = [(reals if code in reads_real else fakes)[s].new_empty(
                   (reals if code in reads_real else fakes)[s].shape, dtype=acc)
               for s, code in zip(scales, logits)] + [terms]
    else:
        out = [reals[0].new_empty((), dtype=acc), terms]
    return out + [terms.new_empty((len(scales), STAT_COLS))] if stats else out


def group_sumsq_fake(g, A, C, B):
    return g.new_empty((A, B), dtype=acc_dtype(g.dtype))


def group_scale_mul_fake(g, scale, grad_output, A, C, B):
    return g.new_empty(g.shape)


def group_penalty_fake(g, A, C, B, kind, center, one_sided, reduction, gamma, batch):
    acc = acc_dtype(g.dtype)
    value = g.new_empty((A, B) if reduction == _NONE else (), dtype=acc)
    return value, g.new_empty((A, B), dtype=acc)


def gan_penalty_fake(g, A, C, B, kind, center, one_sided, reduction, gamma, batch, value_shape, norm,
                     triton=False):
    return g.new_empty(tuple(value_shape) if reduction == _NONE else (), dtype=acc_dtype(g.dtype))


# ---------------------------------------------------------------------------------------------
# The registry.


class OpInfo(NamedTuple):
    name: str  # the operator is torch.ops.fusedgan.<name>
    reference: Callable  # its contract in differentiable PyTorch
    fake: Optional[Callable]  # C++ ops' abstract implementation (Triton ops trace their launcher)
    autograd: bool  # an autograd op: gradcheck and gradgradcheck apply
    impl: str  # "cpp" (csrc/), "triton" (fusedgan/triton/, needs Triton) or "python" (this module)


def _table() -> Dict[str, OpInfo]:
    kernels = {  # name: (reference, fake); each has a Triton twin triton_<name>
        "loss_terms": (reference_loss_terms, loss_terms_fake),
        "loss_terms_stats": (reference_loss_terms_stats, loss_terms_stats_fake),
        "loss_grads": (reference_loss_grads, loss_grads_fake),
        "group_sumsq": (reference_group_sumsq, group_sumsq_fake),
        "group_scale_mul": (reference_group_scale_mul, group_scale_mul_fake),
        "group_penalty": (reference_group_penalty, group_penalty_fake),
    }
    table = {}
    for name, (ref, fake) in kernels.items():
        table[name] = OpInfo(name, ref, fake, False, "cpp")
        table["triton_" + name] = OpInfo("triton_" + name, ref, None, False, "triton")
    for name, ref, fake in (("gan_loss", reference_gan_loss, gan_loss_fake),
                            ("rel_gan_loss", reference_rel_gan_loss, rel_gan_loss_fake),
                            ("gan_penalty", reference_gan_penalty, gan_penalty_fake)):
        table[name] = OpInfo(name, ref, fake, True, "cpp")
    for name, (_, fn) in _PYTHON_OPS.items():
        table[name] = OpInfo(name, fn, None, False, "python")
    return table


OPS: Dict[str, OpInfo] = _table()
AUTOGRAD_OPS = ("gan_loss", "rel_gan_loss", "gan_penalty")


def has_kernel(name: str, key: str) -> bool:
    """Whether ``fusedgan::<name>`` is registered with a kernel for dispatch key ``key``."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fusedgan::{name}", key)
    except RuntimeError:  # not registered
        return False


def schema(name: str) -> str:
    """The C++ schema of ``fusedgan::<name>`` without its name: what its Triton twin registers."""
    text = str(getattr(torch.ops.fusedgan, name).default._schema)
    return text[len(f"fusedgan::{name}"):]


_OVERLOADS: Dict[str, object] = {}


def overload(name: str):
    """``torch.ops.fusedgan.<name>.default``, looked up once (the executor calls it per step)."""
    op = _OVERLOADS.get(name)
    if op is None:
        op = _OVERLOADS[name] = getattr(torch.ops.fusedgan, name).default
    return op


_is_compiling = torch.compiler.is_compiling
OP_CALLS: Dict[str, object] = {}  # name -> fusedgan._C.OpCall of each operator with autograd


def call(name: str, args: tuple):
    """``fusedgan::<name>(*args)``: one operator with autograd, entered from eager code through
    its ``OpCall`` (csrc/python_calls.cpp: the same dispatcher call without torch.ops' ~6 us of
    argument handling), and through torch.ops where that entry declines (a tensor subclass, a
    torch function mode: it returns None) or torch.compile traces the call."""
    entry = OP_CALLS.get(name)
    if entry is not None and not _is_compiling():
        out = entry(*args)
        if out is not None:
            return out
    return overload(name)(*args)


TRITON_ERROR: Optional[str] = None  # why the Triton operators are not registered, if they are not


def _register_triton() -> bool:
    global TRITON_ERROR
    if importlib.util.find_spec("triton") is None:
        TRITON_ERROR = "triton is not installed"
        return False
    if os.environ.get("FUSEDGAN_NO_TRITON") == "1":  # e.g. the ASan stage: libtriton's exceptions
        TRITON_ERROR = "disabled by FUSEDGAN_NO_TRITON=1"  # abort under an LD_PRELOADed libasan
        return False
    try:
        from .triton import launchers
    except Exception as exc:  # noqa: BLE001 - any failure means "no Triton backend"
        TRITON_ERROR = f"{type(exc).__name__}: {exc}"
        return False
    from torch.library import triton_op

    try:
        for name, fn in launchers().items():
            # Newer torch registers the schema given; older releases (2.11 on the GPU machines)
            # accept ``schema=`` but infer the schema from the launcher's annotations instead, so
            # the launchers are annotated to match, and the registered schema is checked either way.
            triton_op(f"fusedgan::triton_{name}", mutates_args=(), schema=schema(name))(fn)
            _check_twin_schema(name)
    except Exception as exc:  # noqa: BLE001 - the backend reports why it is missing
        TRITON_ERROR = f"{type(exc).__name__}: {exc}"
        return False
    return True


def _signature(s) -> tuple:
    """A schema's argument names and types and its return types; ``SymInt`` reads as ``int``
    (schema inference writes Python ints as SymInt) and return names are dropped."""
    def norm(t) -> str:
        return str(t).replace("SymInt", "int")
    return ([(a.name, norm(a.type)) for a in s.arguments], [norm(r.type) for r in s.returns])


def _check_twin_schema(name: str) -> None:
    cpp = getattr(torch.ops.fusedgan, name).default._schema
    twin = getattr(torch.ops.fusedgan, f"triton_{name}").default._schema
    if _signature(cpp) != _signature(twin):
        raise RuntimeError(f"fusedgan::triton_{name} was registered as {twin}, which differs from the "
                           f"C++ schema {cpp}: the launcher's annotations must match it")


def _register() -> bool:
    """Register everything once; returns whether the Triton operators are registered."""
    if _ext._C is None:  # no C++ autograd ops: only the reference backend runs
        return False
    lib = torch.library.Library("fusedgan", "FRAGMENT")
    for name, (text, fn) in _PYTHON_OPS.items():
        lib.define(text)
        lib.impl(name, fn, "CompositeImplicitAutograd")
    _LIBS.append(lib)
    entry = getattr(_ext._C, "OpCall", None)  # (None in an extension built before it: torch.ops only)
    for name in AUTOGRAD_OPS:
        if entry is not None:
            OP_CALLS[name] = entry(name)
        overload(name)  # filled now: a first lookup inside torch.compile would recompile the next call
    for op in OPS.values():
        if op.fake is not None and hasattr(torch.ops.fusedgan, op.name):
            torch.library.register_fake(f"fusedgan::{op.name}")(op.fake)
    return _register_triton()


_LIBS: list = []  # the Library objects must live as long as the process
HAS_TRITON = _register()
