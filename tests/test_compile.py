"""torch.compile: a whole D step and G step (models, fusedgan losses, backward) compile with
fullgraph=True, without graph breaks, and give eager's losses and gradients.

``Tensor.backward()`` inside a compiled function needs ``torch._dynamo.config.trace_autograd_ops``
(torch >= 2.10); where it is missing, the step compiles up to the loss and backward runs on the
compiled graph's AOT backward.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

import fusedgan
from fusedgan import backends, compat

FUSED = [n for n in ("cpu", "triton") if n in backends.available_backends("cpu")]
TRACE_BACKWARD = hasattr(torch._dynamo.config, "trace_autograd_ops")


@pytest.fixture
def fused():
    if not FUSED:
        pytest.skip("no fused CPU backend here (fusedgan._C not built and Triton interpreter off)")
    with backends.use_backend(FUSED[0]):
        yield FUSED[0]


def _config():
    if TRACE_BACKWARD:
        return torch._dynamo.config.patch(trace_autograd_ops=True)
    return contextlib.nullcontext()


def _models():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    D = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
    return G, D


def _grads(module):
    out = [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return out


def _make_steps(G, D):
    lsgan = compat.CycleGANLoss("lsgan")
    bce = compat.BCEWithLogitsLoss()

    def d_step(z, real):
        fake = G(z).detach()
        r, f = D(real), D(fake)
        loss = fusedgan.discriminator_loss(r, f, "ns") + 0.5 * lsgan(f, False) + 0.1 * bce(r, torch.ones_like(r))
        if TRACE_BACKWARD:
            loss.backward()
            return loss.detach()
        return loss

    def g_step(z):
        f = D(G(z))
        loss = fusedgan.generator_loss(f, "ns") + compat.mse_loss(f, torch.ones_like(f))
        if TRACE_BACKWARD:
            loss.backward()
            return loss.detach()
        return loss

    return d_step, g_step


def _run(step, *args):
    loss = step(*args)
    if not TRACE_BACKWARD:
        loss.backward()
        loss = loss.detach()
    return loss


def test_gan_steps_compile_fullgraph(fused):
    G, D = _models()
    d_step, g_step = _make_steps(G, D)
    z, real = torch.randn(8, 4), torch.randn(8, 6)

    with _config():
        for step, args in ((d_step, (z, real)), (g_step, (z,))):
            torch._dynamo.reset()
            explain = torch._dynamo.explain(step)(*args)
            assert explain.graph_break_count == 0, explain.break_reasons
            assert explain.graph_count == 1
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)

        want_d = _run(d_step, z, real)
        want_d_grads = _grads(D)
        want_g = _run(g_step, z)
        want_g_grads = _grads(G)
        D.zero_grad(set_to_none=True)

        torch._dynamo.reset()
        backends._last_used = None
        got_d = _run(torch.compile(d_step, fullgraph=True), z, real)
        assert backends.last_used() == fused
        got_d_grads = _grads(D)
        got_g = _run(torch.compile(g_step, fullgraph=True), z)
        got_g_grads = _grads(G)

    torch.testing.assert_close(got_d, want_d)
    torch.testing.assert_close(got_g, want_g)
    for a, b in zip(got_d_grads + got_g_grads, want_d_grads + want_g_grads):
        torch.testing.assert_close(a, b)


def test_patched_torch_losses_compile(fused):
    """A script on patched torch (F.binary_cross_entropy_with_logits, nn.MSELoss) compiles whole."""
    _, D = _models()
    x = torch.randn(8, 6)

    def loss_fn(x):
        out = D(x)
        return (torch.nn.functional.binary_cross_entropy_with_logits(out, torch.zeros_like(out))
                + torch.nn.MSELoss()(out, torch.ones_like(out)))

    with compat.patched():
        torch._dynamo.reset()
        explain = torch._dynamo.explain(loss_fn)(x)
        assert explain.graph_break_count == 0, explain.break_reasons
        torch._dynamo.reset()
        backends._last_used = None
        got = torch.compile(loss_fn, fullgraph=True)(x)
        assert backends.last_used() == fused
        want = loss_fn(x)
    torch.testing.assert_close(got, want)
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------
# CUDA graphs and mode="reduce-overhead" (GPU check only)

CUDA_FUSED = [n for n in ("triton", "cuda") if torch.cuda.is_available() and n in backends.available_backends("cuda")]
needs_cuda = pytest.mark.skipif(
    not CUDA_FUSED, reason="needs a CUDA device with a fused backend (triton or the CUDA extension)"
)


def _cuda_models():
    G, D = _models()
    return G.cuda(), D.cuda()


def _train_step(G, D, opt_d, opt_g, z, real):
    """One D step and one G step: no host synchronisation anywhere, so it can be captured."""
    opt_d.zero_grad(set_to_none=False)
    r, f = D(real), D(G(z).detach())
    ld = fusedgan.discriminator_loss(r, f, "ns") + compat.binary_cross_entropy_with_logits(r, torch.ones_like(r))
    ld.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=False)
    lg = fusedgan.generator_loss(D(G(z)), "ns")
    lg.backward()
    opt_g.step()
    return ld.detach(), lg.detach()


@needs_cuda
@pytest.mark.parametrize("backend", CUDA_FUSED)
def test_cuda_graph_training_step(backend):
    with backends.use_backend(backend):
        G, D = _cuda_models()
        G2, D2 = _cuda_models()  # eager twin, same initial weights
        opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (D, G)]
        opts2 = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (D2, G2)]
        gen = torch.Generator(device="cuda").manual_seed(0)
        batches = [(torch.randn(8, 4, device="cuda", generator=gen), torch.randn(8, 6, device="cuda", generator=gen))
                   for _ in range(5)]
        static_z, static_real = batches[0][0].clone(), batches[0][1].clone()

        # warm up on a side stream (allocates .grad and optimizer state), as torch's docs require
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            _train_step(G, D, *opts, static_z, static_real)
        torch.cuda.current_stream().wait_stream(side)
        _train_step(G2, D2, *opts2, static_z, static_real)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_ld, static_lg = _train_step(G, D, *opts, static_z, static_real)
        assert backends.last_used() == backend

        for z, real in batches[1:]:
            static_z.copy_(z)
            static_real.copy_(real)
            graph.replay()
            ld, lg = _train_step(G2, D2, *opts2, z, real)
            torch.testing.assert_close(static_ld, ld)
            torch.testing.assert_close(static_lg, lg)
        for a, b in zip([*G.parameters(), *D.parameters()], [*G2.parameters(), *D2.parameters()]):
            torch.testing.assert_close(a, b)


@needs_cuda
@pytest.mark.parametrize("backend", CUDA_FUSED)
def test_reduce_overhead_mode(backend):
    G, D = _cuda_models()
    d_step, g_step = _make_steps(G, D)
    z, real = torch.randn(8, 4, device="cuda"), torch.randn(8, 6, device="cuda")
    with backends.use_backend(backend):
        want_d, want_g = d_step(z, real).clone(), g_step(z).clone()
        D.zero_grad(set_to_none=True)
        G.zero_grad(set_to_none=True)
        torch._dynamo.reset()
        cd = torch.compile(lambda z, real: d_step(z, real), mode="reduce-overhead", fullgraph=True)
        cg = torch.compile(lambda z: g_step(z), mode="reduce-overhead", fullgraph=True)
        with _config():
            for _ in range(3):  # record, then replay
                got_d, got_g = cd(z, real).clone(), cg(z).clone()
        torch.testing.assert_close(got_d, want_d)
        torch.testing.assert_close(got_g, want_g)
    torch._dynamo.reset()
