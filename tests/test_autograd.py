"""Autograd behaviour of the fused Functions: gradcheck, double backward, determinism, opcheck."""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from fusedgan import ops
from fusedgan.kinds import Elem, Reduction
from helpers import DEVICE, KINDS, fused_backends, logits

BACKENDS = fused_backends()


def f64(*shape):
    return logits(shape, torch.float64).requires_grad_(True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(backend, kind, reduction):
    r, f = f64(5, 2), f64(7)

    def d(a, b):
        return fg.discriminator_loss(a, b, kind, reduction=reduction, backend=backend)

    def g(b):
        return fg.generator_loss(b, kind, reduction=reduction, backend=backend)

    assert torch.autograd.gradcheck(d, (r, f))
    assert torch.autograd.gradcheck(g, (f,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_is_exact(backend, kind):
    """create_graph=True recomputes through the reference: second derivatives are not zero."""
    r, f = f64(6), f64(4)
    assert torch.autograd.gradgradcheck(lambda a, b: fg.discriminator_loss(a, b, kind, backend=backend), (r, f))
    assert torch.autograd.gradgradcheck(lambda b: fg.generator_loss(b, kind, reduction="none", backend=backend), (f,))
    if kind in ("ns", "mm", "ls"):  # curvature exists: a silent zero would fail here
        (gr,) = torch.autograd.grad(fg.discriminator_loss(r, f, kind, backend=backend), r, create_graph=True)
        (hr,) = torch.autograd.grad(gr.sum(), r)
        (gr_ref,) = torch.autograd.grad(fg.reference.discriminator_loss(r, f, kind), r, create_graph=True)
        (hr_ref,) = torch.autograd.grad(gr_ref.sum(), r)
        torch.testing.assert_close(hr, hr_ref)
        assert hr.abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_labels_and_weights(backend):
    r, f = f64(5), f64(5)
    t = torch.rand(5, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, t_, w_: fg.discriminator_loss(a, b, "ns", real_label=t_, fake_weight=w_, backend=backend),
        (r, f, t, w),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_retain_graph_backward_twice(backend):
    r = torch.randn(10, device=DEVICE, requires_grad=True)
    loss = fg.generator_loss(r, backend=backend)
    loss.backward(retain_graph=True)
    g1 = r.grad.clone()
    loss.backward()
    torch.testing.assert_close(r.grad, 2 * g1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_deterministic_bits_across_runs_and_threads(backend, dtype):
    r = logits((1000003,), dtype, extreme=True).requires_grad_(True)
    f = logits((70001,), dtype).requires_grad_(True)
    outs = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 2, max(threads, 1)):
            torch.set_num_threads(n)
            r.grad = f.grad = None
            loss = fg.discriminator_loss(r, f, "ns", backend=backend)
            loss.backward()
            outs.append((loss.detach().clone(), r.grad.clone(), f.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            assert torch.equal(a, b)


# -- the operator itself -------------------------------------------------------------------------


def op_args(dtype=torch.float32, reduction=Reduction.MEAN, with_aux=True, need=(True, True)):
    x0, x1 = logits((33,), dtype), logits((4, 5), dtype)
    labels = [torch.rand(33, dtype=dtype, device=DEVICE) if with_aux else None, None]
    weights = [None, torch.rand(1, dtype=dtype, device=DEVICE) if with_aux else None]
    return ([x0, x1], labels, weights, [int(Elem.BCE), int(Elem.HINGE)], [1.0, -1.0], [1.0, 0.5], int(reduction), list(need))


def fused_op_backends():
    return [b for b in BACKENDS]


@pytest.mark.parametrize("backend", fused_op_backends())
@pytest.mark.parametrize("reduction", list(Reduction))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("need", [(True, True), (False, True), (False, False)])
def test_operator_contract(backend, reduction, dtype, need):
    args = op_args(dtype, reduction, need=need)
    op = torch.ops.fusedgan.triton_loss_terms if backend == "triton" else torch.ops.fusedgan.loss_terms
    total, terms, grads, values = op(*args)
    a64 = [[x.double() for x in args[0]], [None if t is None else t.double() for t in args[1]],
           [None if t is None else t.double() for t in args[2]], *args[3:]]
    rt, rterms, rgrads, rvalues = ops.reference_loss_terms(*a64)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert total.dtype == acc and total.dim() == 0 and terms.dtype == acc and terms.shape == (2,)
    # float32 outputs (total, terms: accumulated in float32 from the rounded bf16 inputs the
    # reference starts from too) get the float32 rule; bf16 outputs (grads, values) one bf16 ulp.
    tol = dict(rtol=1e-5, atol=1e-6) if dtype != torch.bfloat16 else dict(rtol=2 ** -8, atol=2 ** -8)
    torch.testing.assert_close(total.double(), rt, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.double(), rterms, rtol=1e-5, atol=1e-6)
    for x, g, rg, ng in zip(args[0], grads, rgrads, need):
        assert g.dtype == x.dtype
        if ng:
            assert g.shape == x.shape and g.is_contiguous()
            torch.testing.assert_close(g.double(), rg, **tol)
        else:
            assert g.shape == (0,)
    for x, v, rv in zip(args[0], values, rvalues):
        assert v.dtype == x.dtype
        if reduction == Reduction.NONE:
            torch.testing.assert_close(v.double(), rv, **tol)
        else:
            assert v.shape == (0,)


@pytest.mark.parametrize("backend", [b for b in fused_op_backends() if b != "triton"])
def test_opcheck(backend):
    for reduction in Reduction:
        for with_aux in (True, False):
            args = op_args(torch.float32, reduction, with_aux)
            torch.library.opcheck(torch.ops.fusedgan.loss_terms, args)
            x0, x1 = (a.detach().requires_grad_(True) for a in args[0])  # the C++ autograd op
            torch.library.opcheck(torch.ops.fusedgan.gan_loss, ([x0, x1], *args[1:-1]))


def test_native_backends_use_the_cpp_autograd_function():
    if "cpu" not in BACKENDS:
        pytest.skip("no native CPU backend built")
    r = torch.randn(8, requires_grad=True)
    with torch.profiler.profile() as prof:
        loss = fg.discriminator_loss(r, r.detach(), "ns", backend="cpu")
    assert "fusedgan::gan_loss" in {e.name for e in prof.events()}
    assert loss.grad_fn.name() == "GanLossBackward"  # the C++ autograd node, no Python in backward
