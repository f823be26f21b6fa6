"""pytest-benchmark fixtures: the providers compared side by side in one run."""
from __future__ import annotations

import os

import pytest
import torch

import fusedgan as fg

DEVICE = os.environ.get("FUSEDGAN_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
SIZES = [int(s) for s in os.environ.get("FUSEDGAN_BENCH_SIZES", "64,65536,16777216").split(",")]


def fused_providers():
    return [b for b in fg.available_backends(DEVICE) if b != "reference" and not (b == "triton" and DEVICE == "cpu")]


PROVIDERS = [f"fused-{b}" for b in fused_providers()] + ["eager", "compile"]


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="session")
def compiled():
    """torch.compile of the reference, cached per (side, kind) so each compiles once."""
    cache = {}

    def get(fn):
        if fn not in cache:
            cache[fn] = torch.compile(fn)
        return cache[fn]

    return get
