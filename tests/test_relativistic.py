"""Relativistic kinds (rsgan, ragan, ralsgan, rahinge) on both sides against the float64 reference.

The reference itself is checked against the issue's formulas written out once more here; every
fused backend must match it in value and in the gradients of ``real`` and ``fake`` (the means
``E r``, ``E f`` are differentiated through, and the generator's gradient reaches ``real``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fusedgan as fg
from fusedgan import backends, reference
from helpers import fused_backends, logits, ran_ops

REL = ["rsgan", "ragan", "ralsgan", "rahinge"]
BACKENDS = fused_backends() + ["reference"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# (real shape, fake shape, non-contiguous): rsgan needs equal shapes
SHAPES = [((1,), (1,), False), ((7,), (7,), False), ((3, 1, 5, 5), (3, 1, 5, 5), True), ((13,), (6, 1, 4), False)]


def issue_formula(side, kind, r, f):
    """Issue 5 section 2, written out (fp64)."""
    sp = F.softplus
    if kind == "rsgan":
        return sp(-(r - f)).mean() if side == "D" else sp(-(f - r)).mean()
    mr, mf = r.mean(), f.mean()
    if side == "G":  # roles swapped
        r, f, mr, mf = f, r, mf, mr
    if kind == "ragan":
        return sp(-(r - mf)).mean() + sp(f - mr).mean()
    if kind == "ralsgan":
        return ((r - mf - 1) ** 2).mean() + ((f - mr + 1) ** 2).mean()
    return F.relu(1 - (r - mf)).mean() + F.relu(1 + (f - mr)).mean()


def make(shape, dtype, strided, seed):
    x = logits(shape, torch.float64, seed=seed).to(dtype)
    if strided and x.dim() >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
        assert not x.is_contiguous()
    return x


def tol(dtype):
    # the relativistic logits are formed in fp32 (fp64 for fp64) from the inputs' exact values
    return (1e-11, 1e-11) if dtype == torch.float64 else (2e-5, 2e-5)


def check(side, kind, backend, dtype, rs, fs, strided, reduction="mean", seed=0):
    if kind == "rsgan" and rs != fs:
        return
    r = make(rs, dtype, strided, seed).requires_grad_(True)
    f = make(fs, dtype, strided, seed + 1).requires_grad_(True)
    r64 = r.detach().double().requires_grad_(True)
    f64 = f.detach().double().requires_grad_(True)
    if side == "D":
        out = fg.discriminator_loss(r, f, kind, reduction=reduction, backend=backend)
        ref = reference.discriminator_loss(r64, f64, kind, reduction=reduction)
    else:
        out = fg.generator_loss(f, kind, real=r, reduction=reduction, backend=backend)
        ref = reference.generator_loss(f64, kind, real=r64, reduction=reduction)
    assert backends.last_used() == backend
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    rtol, atol = tol(dtype)
    loss = 0
    for o, e in zip(outs, refs, strict=True):
        if reduction == "none":
            assert o.dtype == dtype and o.shape == e.shape
            atol_v = atol if dtype in (torch.float32, torch.float64) else 4 * torch.finfo(dtype).eps * float(e.detach().abs().max())
            torch.testing.assert_close(o.double(), e, rtol=rtol if atol_v == atol else 1e-2, atol=atol_v)
        else:
            assert o.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
            torch.testing.assert_close(o.double(), e, rtol=rtol, atol=atol)
        loss = loss + (o.double() * torch.linspace(0.5, 1.5, o.numel(), dtype=torch.float64).view(o.shape)).sum()
        ref_loss = (e * torch.linspace(0.5, 1.5, e.numel(), dtype=torch.float64).view(e.shape)).sum()
        if reduction != "none":
            break
    if reduction == "none":
        ref_loss = sum((e * torch.linspace(0.5, 1.5, e.numel(), dtype=torch.float64).view(e.shape)).sum() for e in refs)
    g = torch.autograd.grad(loss, (r, f))
    g64 = torch.autograd.grad(ref_loss, (r64, f64))
    for a, b, name in zip(g, g64, ("real", "fake")):
        assert a is not None, f"no gradient reached {name}"
        assert a.dtype == dtype and a.shape == b.shape
        scale = float(b.abs().max()) if b.numel() else 0.0
        at = atol * max(scale, 1e-3) if dtype in (torch.float32, torch.float64) else 8 * torch.finfo(dtype).eps * scale + 1e-6
        torch.testing.assert_close(a.double(), b, rtol=rtol if dtype in (torch.float32, torch.float64) else 2e-2, atol=at)


@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("kind", REL)
def test_reference_is_the_issue_formula(side, kind):
    r = logits((9,), torch.float64, seed=1)
    f = logits((9,) if kind == "rsgan" else (4, 3), torch.float64, seed=2)
    if side == "D":
        got = reference.discriminator_loss(r, f, kind)
    else:
        got = reference.generator_loss(f, kind, real=r)
    torch.testing.assert_close(got, issue_formula(side, kind, r, f), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("kind", REL)
def test_against_reference(kind, side, dtype, backend):
    for i, (rs, fs, strided) in enumerate(SHAPES):
        check(side, kind, backend, dtype, rs, fs, strided, seed=10 * i)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("kind", REL)
def test_reductions(kind, side, reduction, backend):
    check(side, kind, backend, torch.float64, (5, 3), (5, 3), False, reduction=reduction, seed=3)
    check(side, kind, backend, torch.float32, (4, 2), (4, 2), True, reduction=reduction, seed=4)
    check(side, kind, backend, torch.bfloat16, (4, 3), (4, 3), False, reduction=reduction, seed=5)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", REL)
def test_one_fused_operator_call(kind, backend):
    """Each side is one fusedgan::rel_gan_loss call (the means, shifts and the gradient through
    the means inside it) running one loss pass: fusedgan::loss_terms on the C++ backends,
    fusedgan::triton_loss_terms on Triton."""
    r = torch.randn(8, requires_grad=True)
    f = torch.randn(8, requires_grad=True)
    ops = ran_ops(lambda: (fg.discriminator_loss(r, f, kind, backend=backend)
                           + fg.generator_loss(f, kind, real=r, backend=backend)).backward())
    kernel = "fusedgan::triton_loss_terms" if backend == "triton" else "fusedgan::loss_terms"
    assert ops == {"fusedgan::rel_gan_loss", kernel}


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", REL)
def test_reduction_none_in_one_operator(kind, backend):
    """reduction='none' runs inside rel_gan_loss too: per-element losses out, and backward forms
    the path through the means from the elementwise grad_output (-sum(G * go) / N).  Values
    against the reference; gradcheck (random grad_output per element), gradgradcheck (the exact
    backward); one output left without a gradient; a weight that needs a gradient."""
    r = logits((3, 4), torch.float64, seed=1).requires_grad_(True)
    f = logits((3, 4) if kind == "rsgan" else (5,), torch.float64, seed=2).requires_grad_(True)

    def d(a, b, be=backend):
        return fg.discriminator_loss(a, b, kind, reduction="none", backend=be)

    def g(a, b, be=backend):
        return fg.generator_loss(b, kind, real=a, reduction="none", backend=be)

    kernel = "fusedgan::triton_loss_terms" if backend == "triton" else "fusedgan::loss_terms"
    for fn in (d, g):
        assert ran_ops(lambda: fn(r, f)) == {"fusedgan::rel_gan_loss", kernel}
        assert backends.last_used() == backend
        torch.testing.assert_close(fn(r, f), fn(r.detach(), f.detach(), "reference"))
        torch.autograd.gradcheck(fn, (r, f))
        torch.autograd.gradgradcheck(fn, (r, f))
        if kind != "rsgan":  # only the first term's values get a gradient
            go = torch.randn(r.shape, dtype=torch.float64)
            got = torch.autograd.grad(fn(r, f)[0 if fn is d else 1], (r, f), go)
            r2, f2 = r.detach().requires_grad_(True), f.detach().requires_grad_(True)
            want = torch.autograd.grad(fn(r2, f2, "reference")[0 if fn is d else 1], (r2, f2), go)
            for x, y in zip(got, want):
                torch.testing.assert_close(x, y)
    if kind != "rsgan":
        w = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
        torch.autograd.gradcheck(lambda a, b, c: fg.discriminator_loss(a, b, kind, reduction="none", real_weight=c,
                                                                       backend=backend), (r, f, w))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", ["rsgan", "ragan"])
def test_operator_equals_the_reference_backend(kind, backend):
    """fusedgan::rel_gan_loss (the means and relativistic logits inside the operator) against the
    reference backend (the same plan through fusedgan.ops' reference, autograd carrying the
    means): the same losses, statistics and gradients, for mean, none and return_stats."""
    r = logits((4, 5), torch.float64, seed=7).requires_grad_(True)
    f = logits((4, 5), torch.float64, seed=8).requires_grad_(True)

    def run():
        out = []
        for red in ("mean", "none"):
            d = fg.discriminator_loss(r, f, kind, reduction=red, backend=backend)
            g = fg.generator_loss(f, kind, real=r, reduction=red, backend=backend)
            loss = sum(x.sum() for x in (d if isinstance(d, tuple) else (d,))) + \
                sum(x.sum() for x in (g if isinstance(g, tuple) else (g,)))
            out.extend(t.detach() for t in (loss, *torch.autograd.grad(loss, (r, f))))
        loss, _, stats = fg.discriminator_loss(r, f, kind, return_stats=True, backend=backend)
        return out + [loss.detach(), *stats.values()], ran_ops(lambda: fg.discriminator_loss(r, f, kind, backend=backend))

    with_op, ops_with = run()
    assert backends.last_used() == backend
    backend, fused_backend = "reference", backend
    composed, ops_without = run()
    assert "fusedgan::rel_gan_loss" in ops_with and not any(n.startswith("fusedgan::") for n in ops_without)
    assert backends.last_used() == "reference" != fused_backend
    for a, b in zip(with_op, composed):
        torch.testing.assert_close(a, b, equal_nan=True)


NATIVE = [b for b in fused_backends() if b in ("cpu", "cuda")]


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("kind", REL)
def test_rel_operator_gradcheck_multiscale_weights(kind, backend):
    """fusedgan::rel_gan_loss in float64: two scales of different sizes, weights, sum reduction;
    gradcheck (first order: the saved gradients) and gradgradcheck (the exact backward)."""
    shapes = [((6,), (6,)), ((2, 3, 2), (2, 3, 2))] if kind == "rsgan" else [((6,), (4,)), ((2, 3, 2), (5,))]
    xs = [logits(s, torch.float64, seed=i).requires_grad_(True) for i, pair in enumerate(shapes) for s in pair]
    w = None if kind == "rsgan" else torch.rand(6, dtype=torch.float64)

    def d(*t):
        reals, fakes = list(t[0::2]), list(t[1::2])
        return fg.discriminator_loss(reals, fakes, kind, reduction="sum", scale_weights=[0.7, 1.3], backend=backend)

    def g(*t):
        reals, fakes = list(t[0::2]), list(t[1::2])
        return fg.generator_loss(fakes, kind, real=reals, scale_reduction="sum", backend=backend)

    torch.autograd.gradcheck(d, xs)
    torch.autograd.gradcheck(g, xs)
    torch.autograd.gradgradcheck(d, xs)
    if w is not None:  # elementwise weights on the single-scale call, against the reference
        r, f = xs[0].detach().requires_grad_(True), xs[1].detach().requires_grad_(True)
        out = fg.discriminator_loss(r, f, kind, real_weight=w, fake_weight=w[:4], backend=backend)
        ref = fg.discriminator_loss(r.detach(), f.detach(), kind, real_weight=w, fake_weight=w[:4],
                                    backend="reference")
        torch.testing.assert_close(out.detach(), ref)
        torch.autograd.gradcheck(lambda a, b: fg.discriminator_loss(a, b, kind, real_weight=w, fake_weight=w[:4],
                                                                    backend=backend), (r, f))


@pytest.mark.parametrize("backend", NATIVE)
def test_rel_operator_weight_gradient_is_exact(backend):
    """A weight that needs a gradient sends backward through the reference (exact, every order)."""
    r = torch.randn(5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b, c: fg.discriminator_loss(a, b, "ragan", real_weight=c, backend=backend),
                             (r, f, w))


@pytest.mark.parametrize("backend", NATIVE)
def test_rel_operator_opcheck(backend):
    r = torch.randn(6, requires_grad=True)
    f = torch.randn(4, requires_grad=True)
    args = ([r], [f], [None, None], [0, 0], [0, 1], [0, 0], [1.0, 0.0], [1.0, 1.0])
    for reduction, stats in ((1, False), (1, True), (0, False)):  # mean; mean with stats; none
        torch.library.opcheck(torch.ops.fusedgan.rel_gan_loss, (*args, reduction, stats),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_generator_gradient_reaches_real_unless_detached(backend):
    r = torch.randn(6, requires_grad=True)
    f = torch.randn(6, requires_grad=True)
    fg.generator_loss(f, "ragan", real=r, backend=backend).backward()
    assert r.grad is not None and r.grad.abs().sum() > 0
    r.grad = None
    fg.generator_loss(f, "ragan", real=r.detach(), backend=backend).backward()
    assert r.grad is None and f.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward(backend):
    r = torch.randn(5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(5, dtype=torch.float64, requires_grad=True)
    for kind in REL:
        torch.autograd.gradgradcheck(lambda a, b: fg.discriminator_loss(a, b, kind, backend=backend), (r, f))
        torch.autograd.gradgradcheck(lambda a, b: fg.generator_loss(b, kind, real=a, backend=backend), (r, f))


def test_bad_input():
    r, f = torch.randn(4), torch.randn(5)
    with pytest.raises(ValueError, match="^fake: rsgan"):
        fg.discriminator_loss(r, f, "rsgan")
    with pytest.raises(ValueError, match="^fake: rsgan"):
        fg.generator_loss(f, "rsgan", real=r)
    with pytest.raises(ValueError, match="^real: "):
        fg.generator_loss(f, "ragan")
    with pytest.raises(ValueError, match="^real: "):
        fg.generator_loss(f, "ns", real=r)
    with pytest.raises(ValueError, match="^real_label: "):
        fg.discriminator_loss(r, f, "ragan", real_label=0.9)
    with pytest.raises(ValueError, match="^target: "):
        fg.generator_loss(f, "ragan", real=r, target=0.9)
    with pytest.raises(ValueError, match="^kind: "):
        fg.discriminator_loss(r, f, "rels")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["rsgan", "ragan", "ralsgan", "rahinge"])
def test_gan_loss_module_relativistic(kind, backend):
    loss = fg.nn.GANLoss(kind, backend=backend)
    r, f = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(loss.discriminator(r, f), fg.reference.discriminator_loss(r, f, kind))
    torch.testing.assert_close(loss.generator(f, real=r), fg.reference.generator_loss(f, kind, real=r))
    with pytest.raises(ValueError, match="real"):
        loss.generator(f)
    with pytest.raises(TypeError, match="real"):
        fg.nn.GANLoss(kind, real=r)  # the real logits are a call argument, not an option


@pytest.mark.parametrize("backend", NATIVE)
def test_rel_operator_compiles_fullgraph(backend):
    """A D + G step of a relativistic kind under torch.compile(fullgraph=True), two sizes (dynamic)."""
    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(r, f):
        return (fg.discriminator_loss(r, f, "ragan", backend=backend)
                + fg.generator_loss(f, "ragan", real=r, backend=backend))

    for n_r, n_f in ((6, 4), (9, 7)):
        r = torch.randn(n_r, dtype=torch.float64, requires_grad=True)
        f = torch.randn(n_f, dtype=torch.float64, requires_grad=True)
        step(r, f).backward()
        r2, f2 = r.detach().clone().requires_grad_(True), f.detach().clone().requires_grad_(True)
        (fg.discriminator_loss(r2, f2, "ragan", backend="reference")
         + fg.generator_loss(f2, "ragan", real=r2, backend="reference")).backward()
        torch.testing.assert_close(r.grad, r2.grad)
        torch.testing.assert_close(f.grad, f2.grad)
