"""DistributedDataParallel: two gloo processes on CPU train a small GAN with fused losses and an
R1 penalty; the parameters equal those of the same run with the reference losses.

The D step has two shapes, as in StyleGAN2's lazy regularization: loss + R1 in one backward, and
an R1-only backward.  The R1-only backward does not reach D's last bias (the input gradient of
``D`` does not depend on it); DDP (``find_unused_parameters=False``) would then wait for that
gradient forever, so the penalty is tied to the logits with ``0 * logits.sum()`` (see
docs/penalties.md, "DistributedDataParallel: the penalty-only backward").
"""
from __future__ import annotations

import importlib
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
STEPS = 4
GAMMA = 1.0


def _fused_cpu() -> str | None:
    from fusedgan import backends

    names = [n for n in ("cpu", "triton") if n in backends.available_backends("cpu")]
    return names[0] if names else None


def _train(backend: str, rank: int):
    import fusedgan
    from fusedgan import backends

    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    G = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    D = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Softplus(), torch.nn.Linear(16, 1))
    G = torch.nn.parallel.DistributedDataParallel(G)
    D = torch.nn.parallel.DistributedDataParallel(D)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.05)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    used = set()
    with backends.use_backend(backend):
        for step in range(STEPS):
            real = torch.randn(8, 6, generator=gen).requires_grad_()
            z = torch.randn(8, 4, generator=gen)

            # D: loss + R1 in one backward
            opt_d.zero_grad(set_to_none=True)
            r, f = D(real), D(G(z).detach())
            loss = fusedgan.discriminator_loss(r, f, "ns")
            used.add(backends.last_used())
            (g,) = torch.autograd.grad(r.sum(), real, create_graph=True)
            r1 = g.square().sum(dim=1).mean()
            (loss + 0.5 * GAMMA * r1).backward()
            opt_d.step()

            if step % 2 == 1:  # lazy R1: a penalty-only backward
                opt_d.zero_grad(set_to_none=True)
                real2 = real.detach().requires_grad_()
                r = D(real2)
                (g,) = torch.autograd.grad(r.sum(), real2, create_graph=True)
                r1 = g.square().sum(dim=1).mean()
                (0.5 * GAMMA * 2 * r1 + 0 * r.sum()).backward()  # 0 * r.sum(): every D parameter in the graph
                opt_d.step()

            # G
            opt_g.zero_grad(set_to_none=True)
            lg = fusedgan.generator_loss(D(G(z)), "ns")
            used.add(backends.last_used())
            lg.backward()
            opt_g.step()
    params = [p.detach().clone() for p in (*G.module.parameters(), *D.module.parameters())]
    return params, used


def _gloo_threads() -> int:
    """This process's live gloo threads (pt_gloo_runloop, gloo_tcp_loop); -1 where /proc is absent."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return -1
    n = 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += "gloo" in f.read()
        except OSError:
            pass
    return n


def _worker(rank: int, init_file: str, out_dir: str, fused: str):
    torch.set_num_threads(1)
    # Before the group exists: torch.distributed.nn.functional writes `group=group.WORLD` as
    # default arguments, evaluated at import.  DDP's constructor imports torch._dynamo, which
    # imports that module; imported while the group is alive, the defaults hold the gloo group
    # for the life of the process, destroy_process_group cannot free it, and its three threads
    # (two pt_gloo_runloop, gloo_tcp_loop) live on into interpreter shutdown, which then tears
    # the group down.  Imported here (fusedgan imports torch._dynamo as well), the defaults hold
    # None.  Without these two imports the assertion on gloo_threads_after_destroy fails (3).
    importlib.import_module("torch._dynamo")
    importlib.import_module("fusedgan")

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        result = {}
        for backend in (fused, "reference"):
            params, used = _train(backend, rank)
            result[backend] = (params, sorted(used))
        # Every rank's last collectives finish before any rank tears the group down.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # The group really is gone: its threads were joined here, not left to process exit.
    result["gloo_threads_after_destroy"] = _gloo_threads()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo unavailable")
def test_ddp_fused_equals_reference():
    fused = _fused_cpu()
    if fused is None:
        pytest.skip("no fused CPU backend here (fusedgan._C not built and Triton interpreter off)")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(init_file, tmp, fused), nprocs=WORLD, join=True)
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    for res in results:
        assert res["gloo_threads_after_destroy"] in (0, -1), "the gloo group outlived destroy_process_group"
        fused_params, fused_used = res[fused]
        ref_params, ref_used = res["reference"]
        assert fused_used == [fused] and ref_used == ["reference"]
        for a, b in zip(fused_params, ref_params):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # DDP kept the ranks in step
    for a, b in zip(results[0][fused][0], results[1][fused][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
