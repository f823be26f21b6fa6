"""Forward+backward of the D and G losses: fused backends vs eager reference vs torch.compile.

    python -m pytest benchmarks                      # full run (sizes 64, 2^16, 2^24)
    FUSEDGAN_BENCH_SIZES=64,4096 python -m pytest benchmarks --benchmark-disable   # CI smoke

Ratios belong in the table pytest-benchmark prints (compare the rows of one size); there are no
timed assertions here.  ``python -m fusedgan bench`` writes the full sweep with plots.
"""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from conftest import DEVICE, PROVIDERS, SIZES, sync


def d_step_ref(r, f, kind):
    fg.reference.discriminator_loss(r, f, kind).backward()


def g_step_ref(f, kind):
    fg.reference.generator_loss(f, kind).backward()


def make_step(provider, side, kind, compiled):
    if provider.startswith("fused-"):
        backend = provider[len("fused-"):]
        if side == "D":
            return lambda r, f: fg.discriminator_loss(r, f, kind, backend=backend).backward()
        return lambda r, f: fg.generator_loss(f, kind, backend=backend).backward()
    if provider == "eager":
        return (lambda r, f: d_step_ref(r, f, kind)) if side == "D" else (lambda r, f: g_step_ref(f, kind))
    # torch.compile of the reference: loss and backward both compiled (AOTAutograd)
    loss = compiled(fg.reference.discriminator_loss if side == "D" else fg.reference.generator_loss)
    if side == "D":
        return lambda r, f: loss(r, f, kind).backward()
    return lambda r, f: loss(f, kind).backward()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("side,kind", [("D", "ns"), ("G", "ns"), ("D", "hinge"), ("D", "ls")])
def test_loss_fwd_bwd(benchmark, compiled, provider, size, side, kind):
    torch.manual_seed(0)
    r = torch.randn(size, device=DEVICE, requires_grad=True)
    f = torch.randn(size, device=DEVICE, requires_grad=True)
    step = make_step(provider, side, kind, compiled)
    step(r, f)  # warm-up (and compilation for "compile")
    sync()
    benchmark.group = f"{side}-{kind}-{size}"
    benchmark.extra_info.update(device=DEVICE, provider=provider, elements=size)

    def run():
        r.grad = f.grad = None
        step(r, f)
        sync()

    benchmark(run)
    assert (f.grad if side == "G" else r.grad) is not None
