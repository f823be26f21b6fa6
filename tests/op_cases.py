"""The per-operator test triple, shared by tests/test_ops.py (native and Python operators) and
tests/test_triton_ops.py (the Triton twins, under TRITON_INTERPRET=1).

For every entry of ``fusedgan.ops.OPS``: sample inputs (fresh random, odd shapes, non-contiguous,
empty, extreme logits), and three checks:

1. correctness: the operator against its reference evaluated in float64 on the same inputs;
2. gradients: gradcheck and gradgradcheck of the autograd operators (for each kernel variant:
   native and Triton), which cover the kernel operators they call (``loss_terms``,
   ``loss_grads``, ``group_penalty``, ``group_scale_mul`` and their twins) and the exact-backward
   operators (double backward);
3. ``torch.library.opcheck`` (schema, fake implementation, autograd registration, aot dispatch).
"""
from __future__ import annotations

import torch

from fusedgan import backends, ops
from fusedgan.codes import Elem, PenaltyKind, Reduction, RelLogit, acc_dtype

from helpers import DEVICE

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def available(name: str, device: str = DEVICE) -> bool:
    """Whether operator ``name`` runs on ``device`` in this process."""
    info = ops.OPS[name]
    if info.impl == "triton":
        return backends.can_run("triton", device)
    key = {"cpu": "CPU", "cuda": "CUDA"}[device]
    if info.impl == "python":
        return ops.has_kernel(name, "CompositeImplicitAutograd")
    return ops.has_kernel(name, key) or ops.has_kernel(name, "CompositeExplicitAutograd")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _x(shape, dtype, seed, *, noncontig=False, extreme=False, scale=3.0):
    g = _gen(seed)
    base = torch.randn((*shape, 2) if noncontig else shape, generator=g, dtype=torch.float64) * scale
    if extreme and base.numel() >= 4:
        flat = base.view(-1)
        flat[:4] = torch.tensor([1e4, -1e4, 30.0, -88.0], dtype=torch.float64)
    x = base[..., 1] if noncontig else base
    if dtype == torch.float16:
        x = x.clamp(-6e4, 6e4)
    return x.to(dtype).to(DEVICE)


def _loss_terms_args(dtype, reduction, seed, stats_or_need=True):
    """One term per element function (every ``Elem``): label/weight operands of every mode, in the
    logits' dtype and in the acc dtype (read in their own precision: labels[0], weights[2])."""
    xs = [_x((7, 5), dtype, seed, extreme=True), _x((13,), dtype, seed + 1, noncontig=True),
          _x((3, 1, 4), dtype, seed + 2), _x((0,), dtype, seed + 3), _x((9,), dtype, seed + 4),
          _x((6,), dtype, seed + 8, extreme=True), _x((2, 3), dtype, seed + 9, noncontig=True),
          _x((11,), dtype, seed + 10)]
    acc = acc_dtype(dtype)
    labels = [torch.rand(7, 5, generator=_gen(seed + 5), dtype=torch.float64).to(acc).to(DEVICE), None,
              torch.tensor([0.25], dtype=dtype, device=DEVICE), None,
              _x((9,), dtype, seed + 6), None, torch.tensor([0.5], dtype=dtype, device=DEVICE),
              _x((11,), dtype, seed + 11)]
    weights = [torch.tensor([1.5], dtype=dtype, device=DEVICE), None,
               torch.rand(3, 1, 4, generator=_gen(seed + 7), dtype=torch.float64).to(acc).to(DEVICE), None, None,
               None, None, torch.tensor([0.5], dtype=dtype, device=DEVICE)]
    elems = [int(Elem.BCE), int(Elem.HINGE), int(Elem.HALF_SQUARE), int(Elem.LINEAR), int(Elem.ABS),
             int(Elem.SOFTPLUS_NEG), int(Elem.SQ_RELU_ABOVE), int(Elem.SQ_RELU_BELOW)]
    assert sorted(elems) == sorted(int(e) for e in Elem), "a new Elem: give it a term here"
    return (xs, labels, weights, elems, [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.5, 2.0, -1.0, 0.75, 1.0, 1.0, 1.25], int(reduction))


N_TERMS = len(Elem)  # terms of _loss_terms_args
NEED_GRAD = [i != 1 for i in range(N_TERMS)]  # term 1 without a gradient


def _grad_outputs(xs, reduction, seed):
    if reduction == Reduction.NONE:
        gos = [torch.randn(x.shape, generator=_gen(seed + i), dtype=torch.float64).to(x.dtype).to(DEVICE)
               for i, x in enumerate(xs)]
    else:
        go = torch.randn((), generator=_gen(seed), dtype=torch.float64).to(acc_dtype(xs[0].dtype)).to(DEVICE)
        gos = [go] * len(xs)
    gos[1] = None  # a term without a gradient
    return gos


def _rel_args(dtype, reduction, seed, pairwise=False):
    reals = [_x((6, 4), dtype, seed), _x((5,), dtype, seed + 1)]
    fakes = [_x((6, 4), dtype, seed + 2) if pairwise else _x((3, 3), dtype, seed + 2), _x((5,), dtype, seed + 3)]
    if pairwise:
        logits = [int(RelLogit.R_MINUS_F), int(RelLogit.F_MINUS_R)]
        weights = [None, None]
        elems = [int(Elem.BCE), int(Elem.BCE)]
    else:
        logits = [int(RelLogit.R_MINUS_MF), int(RelLogit.F_MINUS_MR)]
        weights = [torch.rand(6, 4, generator=_gen(seed + 4), dtype=torch.float64).to(dtype).to(DEVICE), None]
        elems = [int(Elem.HINGE), int(Elem.HALF_SQUARE)]
    return reals, fakes, weights, [0, 1], logits, elems, [1.0, -1.0], [1.0, 2.0], int(reduction)


_LAYOUTS = [(4, 30, 1), (3, 5, 7), (1, 100, 1), (2, 3, 1), (2, 0, 3)]


def _g(A, C, B, dtype, seed):
    return _x((A * C * B,), dtype, seed, scale=0.3).reshape(A, C * B)


def _penalty_args(dtype, seed):
    out = []
    for i, (A, C, B) in enumerate(_LAYOUTS):
        g = _g(A, C, B, dtype, seed + i)
        for red in Reduction:
            out.append((g, A, C, B, int(PenaltyKind.GP), 1.0, bool(i % 2), int(red), 0.0, A))
    g = _g(1, 60, 1, dtype, seed + 9).reshape(4, 15)
    out.append((g, 1, 60, 1, int(PenaltyKind.R1), 0.0, False, int(Reduction.MEAN), 10.0, 4))
    return out


def samples(name: str, dtype, seed: int = 0) -> list:
    """Argument tuples for operator ``name`` (a Triton twin takes its C++ operator's samples)."""
    base = name[len("triton_"):] if name.startswith("triton_") else name
    if base in ("loss_terms", "loss_terms_stats"):
        return [(*_loss_terms_args(dtype, r, seed + 10 * int(r)), NEED_GRAD) for r in Reduction]
    if base == "loss_grads":
        out = []
        for r in Reduction:
            a = _loss_terms_args(dtype, r, seed + 10 * int(r))
            out.append((*a, _grad_outputs(a[0], r, seed + 100)))
        return out
    if base == "gan_loss":
        return [(*_loss_terms_args(dtype, r, seed + 10 * int(r)), stats)
                for r in Reduction for stats in ((False, True) if r != Reduction.NONE else (False,))]
    if base == "rel_gan_loss":
        return [(*_rel_args(dtype, r, seed, pw), stats) for r in Reduction for pw in (False, True)
                for stats in ((False, True) if r != Reduction.NONE else (False,))]
    if base == "group_sumsq":
        return [(_g(A, C, B, dtype, seed + i), A, C, B) for i, (A, C, B) in enumerate(_LAYOUTS)]
    if base == "group_scale_mul":
        out = []
        for i, (A, C, B) in enumerate(_LAYOUTS):
            scale = torch.randn(A, B, generator=_gen(seed + i), dtype=torch.float64).to(acc_dtype(dtype)).to(DEVICE)
            out.append((_g(A, C, B, dtype, seed + i), scale, torch.tensor(0.75, device=DEVICE), A, C, B))
        return out
    if base == "group_penalty":
        return _penalty_args(dtype, seed)
    if base == "gan_penalty":
        out = []
        for g, A, C, B, kind, center, one_sided, red, gamma, batch in _penalty_args(dtype, seed):
            if B != 1 or A == 1:  # the sample norm's layout; the pixel norm is covered by penalties
                continue
            shape = [A] if red == Reduction.NONE else []
            out.append((g, A, C, B, kind, center, one_sided, red, gamma, batch, shape, "sample"))
        g = _g(1, 60, 1, dtype, seed + 9).reshape(4, 15)
        out.append((g, 1, 60, 1, int(PenaltyKind.R1), 0.0, False, int(Reduction.MEAN), 10.0, 4, [], "sample"))
        return out
    if base == "loss_terms_exact_backward":
        out = []
        for r in Reduction:
            a = _loss_terms_args(dtype, r, seed)
            gos = _grad_outputs(a[0], r, seed + 1)
            gos = gos if r == Reduction.NONE else gos[:1]
            out.append((*a, gos, [True] * N_TERMS + [False] * (2 * N_TERMS)))
        return out
    if base == "rel_gan_loss_exact_backward":
        a = _rel_args(dtype, Reduction.MEAN, seed)
        go = torch.tensor(1.25, dtype=acc_dtype(dtype), device=DEVICE)
        return [(*a, [go], [True, True, True, True, True])]
    if base == "penalty_exact_backward":
        g = _g(4, 30, 1, dtype, seed).reshape(4, 30)
        go = torch.tensor(0.5, dtype=acc_dtype(dtype), device=DEVICE)
        return [(g, go, int(PenaltyKind.GP), 1.0, False, "sample", int(Reduction.MEAN), 0.0),
                (g, go, int(PenaltyKind.R1), 0.0, False, "sample", int(Reduction.MEAN), 10.0)]
    raise KeyError(f"no samples for operator {name!r}: add them here")


def to64(v):
    """Every floating tensor in a nested argument, as float64 (non-contiguity kept)."""
    if isinstance(v, torch.Tensor):
        return v.double() if v.is_floating_point() else v
    if isinstance(v, (list, tuple)):
        return type(v)(to64(a) for a in v)
    return v


def flat(v) -> list:
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for a in v for t in flat(a)]
    return []


_RTOL = {torch.float64: 1e-10, torch.float32: 3e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


def assert_matches(got, want, what: str) -> None:
    """Each output tensor against the float64 reference: a relative tolerance of its own dtype
    (an fp32 loss from fp16 inputs gets the fp32 rule), scaled by the largest finite magnitude;
    NaN and inf patterns must match exactly."""
    g, w = flat(got), flat(want)
    assert len(g) == len(w), f"{what}: {len(g)} outputs, reference {len(w)}"
    for i, (a, b) in enumerate(zip(g, w)):
        assert a.shape == b.shape, f"{what}[{i}]: shape {tuple(a.shape)} != {tuple(b.shape)}"
        if a.numel() == 0:
            continue
        a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
        assert torch.equal(torch.isnan(a64), torch.isnan(b64)), f"{what}[{i}]: NaN pattern differs"
        inf = torch.isinf(b64)
        assert torch.equal(a64[inf], b64[inf]), f"{what}[{i}]: inf pattern differs"
        fin = torch.isfinite(b64)
        if not fin.any():
            continue
        rtol = _RTOL[a.dtype]
        scale = float(b64[fin].abs().max())
        err = float((a64[fin] - b64[fin]).abs().max())
        assert err <= rtol * max(scale, 1e-30) + 1e-300, (
            f"{what}[{i}] ({a.dtype}): max error {err:.3e} > {rtol} x {scale:.3e}")


# ---------------------------------------------------------------------------------------------
# The oracle of each operator: its reference in float64; for the exact-backward operators (which
# ARE references), the gradient of the fused autograd operator computed by the kernels.


def _kernel_grads(op, args, n_out, inputs, grad_outputs):
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        out = op(*args(leaves))
        out = [out] if isinstance(out, torch.Tensor) else out[:n_out]
        outs = [o for o, g in zip(out, grad_outputs) if g is not None]
        gos = [g for g in grad_outputs if g is not None]
        return torch.autograd.grad(outs, leaves, gos, allow_unused=True)


def _refill(optional, tensors):
    """``optional`` with its non-None entries replaced, in order, by ``tensors``."""
    it = iter(tensors)
    return [None if o is None else next(it) for o in optional]


def oracle(name: str):
    base = name[len("triton_"):] if name.startswith("triton_") else name
    if base == "loss_terms_exact_backward":
        def f(logits, labels, weights, elems, lv, coefs, red, gos, wanted):
            n = len(logits)
            got = _kernel_grads(torch.ops.fusedgan.gan_loss,
                                lambda xs: (xs, labels, weights, elems, lv, coefs, red), n if red == 0 else 1,
                                logits, gos)
            return [g if g is not None else torch.zeros_like(x) for g, x in zip(got, logits)] + \
                   [t.new_empty((0,)) if t is not None else torch.empty(0) for t in (*labels, *weights)]
        return f
    if base == "rel_gan_loss_exact_backward":
        def f(reals, fakes, weights, scales, logits, elems, lv, coefs, red, gos, wanted):
            S = len(reals)
            ws = [w for w in weights if w is not None]
            got = _kernel_grads(torch.ops.fusedgan.rel_gan_loss,
                                lambda t: (t[:S], t[S:], weights, scales, logits, elems, lv, coefs, red), 1,
                                [*reals, *fakes], gos)
            # No kernel differentiates weights: theirs come from the fp64 reference.
            wg = _kernel_grads(ops.reference_rel_gan_loss,
                               lambda t: (reals, fakes, _refill(weights, t), scales, logits, elems, lv, coefs, red),
                               1, ws, gos)
            return list(got) + [g if want else w.new_empty((0,))
                                for g, w, want in zip(wg, ws, wanted[2 * S:])]
        return f
    if base == "penalty_exact_backward":
        def f(g, go, kind, center, one_sided, norm, red, gamma):
            A = g.shape[0] if kind == PenaltyKind.GP else 1
            args = lambda t: (t[0], A, g.numel() // A, 1, kind, center, one_sided, red, gamma, g.shape[0],  # noqa: E731
                              [], norm)
            return _kernel_grads(torch.ops.fusedgan.gan_penalty, args, 1, [g], [go])[0]
        return f
    return ops.OPS[name].reference


def check_correct(name: str, dtype) -> None:
    op = getattr(torch.ops.fusedgan, name)
    for i, args in enumerate(samples(name, dtype)):
        got = op(*args)
        want = oracle(name)(*to64(args))
        assert_matches(got, want, f"{name}[sample {i}, {dtype}]")


# Which outputs of an autograd operator are differentiable, and which inputs to perturb.
def _diff_outputs(name, args, out):
    if name == "gan_penalty":
        return out
    n_terms = len(args[3]) if name == "gan_loss" else len(args[3])
    red = args[6] if name == "gan_loss" else args[8]
    return tuple(out[:n_terms]) if red == int(Reduction.NONE) else out[0]


def check_gradients(name: str, triton: bool) -> None:
    """gradcheck and gradgradcheck (float64) of an autograd operator with the native or the Triton
    kernels; the perturbed inputs are the logits (gradient g)."""
    op = getattr(torch.ops.fusedgan, name)
    for args in samples(name, torch.float64, seed=7)[:4]:
        args = list(args)
        if name == "gan_loss":
            xs = [x.detach() for x in args[0][:3]]  # small terms keep gradcheck fast
            args = [xs, args[1][:3], args[2][:3], args[3][:3], args[4][:3], args[5][:3], args[6], False]

            def f(*t, a=args):
                return _diff_outputs(name, a, op(list(t), *a[1:], triton))
        elif name == "rel_gan_loss":
            S = len(args[0])
            xs = [*args[0], *args[1]]

            def f(*t, a=args, S=S):
                return _diff_outputs(name, a, op(list(t[:S]), list(t[S:]), *a[2:], triton))
        else:
            xs = [args[0]]

            def f(*t, a=args):
                return op(t[0], *a[1:], triton)
        inputs = [x.detach().clone().requires_grad_(True) for x in xs]
        torch.autograd.gradcheck(f, inputs, fast_mode=True)
        torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def _opcheck_utils(name: str, args) -> tuple:
    """Every opcheck test, except that the Triton interpreter cannot run a kernel on fake tensors:
    on CPU tensors a Triton twin gets the schema check only (FakeTensor/AOT run on CUDA)."""
    cpu = all(t.device.type == "cpu" for t in flat(args))
    if name.startswith("triton_") and cpu:
        return ("test_schema",)
    return ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def check_opcheck(name: str) -> None:
    info = ops.OPS[name]
    op = getattr(torch.ops.fusedgan, name).default
    checked = 0
    for args in samples(name, torch.float32)[:3]:
        outs = op(*args)  # opcheck compares outputs without equal_nan: NaN samples (a mean over
        if any(torch.isnan(t).any() for t in flat(outs)):  # an empty term) are checked elsewhere
            continue
        checked += 1
        if info.autograd:  # exercise the autograd registration too
            args = tuple([a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                          else a for a in arg] if isinstance(arg, list) else
                         arg.detach().requires_grad_(True) if isinstance(arg, torch.Tensor) else arg
                         for arg in args)
        torch.library.opcheck(op, args, test_utils=_opcheck_utils(name, args))
    assert checked, f"{name}: no NaN-free sample for opcheck"
