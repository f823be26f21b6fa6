"""Forward+backward of the gradient penalties: fused backends vs eager reference vs torch.compile.

    python -m pytest benchmarks/test_bench_penalties.py
    FUSEDGAN_BENCH_PENALTY_SHAPES=4x3x16x16 python -m pytest benchmarks/test_bench_penalties.py \
        --benchmark-disable                                               # CI smoke

Environment: ``FUSEDGAN_BENCH_PENALTY_SHAPES`` (comma-separated, ``x``-separated dims; default
``64x3x128x128,8x3x32x32``) and ``FUSEDGAN_BENCH_PENALTY_DTYPES`` (default ``float32``; e.g.
``float32,bfloat16``).  A step is ``penalty(g).backward()`` on a leaf ``g``: one ``group_sumsq``
pass forward and one ``group_scale_mul`` pass backward for the fused backends.  Compare the rows
of one group in pytest-benchmark's table; there are no timed assertions here.
"""
from __future__ import annotations

import os

import pytest
import torch

from conftest import DEVICE, PROVIDERS, sync
from fusedgan import penalties, reference

SHAPES = [tuple(int(d) for d in s.split("x"))
          for s in os.environ.get("FUSEDGAN_BENCH_PENALTY_SHAPES", "64x3x128x128,8x3x32x32").split(",")]
DTYPES = [getattr(torch, d) for d in os.environ.get("FUSEDGAN_BENCH_PENALTY_DTYPES", "float32").split(",")]

PENALTIES = {
    "gp": (lambda g, b: penalties.gradient_penalty(g, backend=b), reference.gradient_penalty),
    "gp-pixel": (lambda g, b: penalties.gradient_penalty(g, norm="pixel", backend=b),
                 lambda g: reference.gradient_penalty(g, norm="pixel")),
    "r1": (lambda g, b: penalties.r1_penalty(g, backend=b), reference.r1_penalty),
}
_compiled = {}


def make_step(provider, name):
    fused, ref = PENALTIES[name]
    if provider.startswith("fused-"):
        backend = provider[len("fused-"):]
        return lambda g: fused(g, backend).backward()
    if provider == "eager":
        return lambda g: ref(g).backward()
    if name not in _compiled:  # torch.compile of the reference: forward and backward (AOTAutograd)
        _compiled[name] = torch.compile(ref)
    fn = _compiled[name]
    return lambda g: fn(g).backward()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(PENALTIES))
def test_penalty_fwd_bwd(benchmark, name, shape, dtype, provider):
    torch.manual_seed(0)
    g = (torch.randn(shape, device=DEVICE) * 0.01).to(dtype).requires_grad_(True)
    step = make_step(provider, name)
    step(g)  # warm-up (and compilation)
    sync()
    benchmark.group = f"{name}-{'x'.join(map(str, shape))}-{str(dtype).replace('torch.', '')}"
    benchmark.extra_info.update(device=DEVICE, provider=provider, shape=list(shape))

    def run():
        g.grad = None
        step(g)
        sync()

    benchmark(run)
    assert g.grad is not None and g.grad.shape == g.shape


def test_penalty_sweep_script_runs():
    """benchmarks/penalty_sweep.py end to end on tiny shapes (timings are not checked)."""
    import penalty_sweep

    res = penalty_sweep.main(["--device", DEVICE, "--quick", "--dtypes", "fp32",
                              "--penalties", "gradient_penalty,r1_penalty"])
    assert [r["penalty"] for r in res["rows"]] == ["gradient_penalty", "r1_penalty"]
    for row in res["rows"]:
        assert set(row["ms"]) >= {"eager", "compile"} and len(row["ms"]) >= 3
        assert all(v["median"] > 0 for v in row["ratios"].values())
    assert "| provider | ms |" in penalty_sweep.markdown(res)
