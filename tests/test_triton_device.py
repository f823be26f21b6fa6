"""The device guard of the Triton launchers (fusedgan/triton/_device.py), under the interpreter.

A Triton launch runs on the current CUDA device; every launcher makes its tensors' device current
around its launches.  No multi-GPU machine here: the guard's choice is tested with a stand-in
tensor on ``cuda:1`` (and the current device patched), and every launcher is checked to launch
only inside the guard, entered with its input's device::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_device.py -q
"""
import contextlib
import os
import types

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs CUDA, or TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

import fusedgan as fg  # noqa: E402

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)

import fusedgan.triton as ft  # noqa: E402
from fusedgan.triton import _device  # noqa: E402
from fusedgan.triton import penalty as tp  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_guard_choice(monkeypatch):
    assert isinstance(_device.on_device(torch.zeros(1)), contextlib.nullcontext)
    other = types.SimpleNamespace(device=torch.device("cuda", 1))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    guard = _device.on_device(other)
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert isinstance(_device.on_device(other), contextlib.nullcontext)


@pytest.fixture
def guarded(monkeypatch):
    """Record guard entries (with the device) and launches, failing a launch outside the guard."""
    events, depth = [], [0]

    @contextlib.contextmanager
    def on_device(t):
        events.append(("enter", t.device))
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1

    def wrap(mod):
        orig = mod.wrap_triton

        def wrap_triton(kernel):
            launcher = orig(kernel)

            class _G:
                def __getitem__(_, grid):
                    def run(*a, **k):
                        assert depth[0] > 0, f"{kernel.fn.__name__} launched outside the device guard"
                        events.append(("launch", kernel.fn.__name__))
                        return launcher[grid](*a, **k)
                    return run
            return _G()
        monkeypatch.setattr(mod, "wrap_triton", wrap_triton)

    for mod in (ft, tp):
        monkeypatch.setattr(mod, "_on_device", on_device)
        wrap(mod)
    return events


def test_every_launcher_launches_inside_the_guard(guarded):
    x = torch.randn(3000, device=DEVICE, requires_grad=True)  # 5,000 elements: several programs
    y = torch.randn(2000, device=DEVICE, requires_grad=True)
    out = fg.discriminator_loss(x, y, "ns", backend="triton", return_stats=True)
    out.loss.backward()
    fg.generator_loss(y, "hinge", backend="triton").backward()
    g = torch.randn(3, 4, 5, device=DEVICE, requires_grad=True)
    for norm in ("sample", "pixel", "batch"):
        fg.penalties.gradient_penalty(g, norm=norm, backend="triton").backward()
    torch.ops.fusedgan.triton_group_sumsq(g.detach(), 3, 20, 1)
    assert fg.backends.last_used() == "triton"
    launched = {e[1] for e in guarded if e[0] == "launch"}
    assert {"_loss_kernel", "_row_kernel", "_col_kernel", "_finish_kernel", "_penalty_finish_kernel",
            "_scale_mul_kernel"} <= launched
    assert all(e[1] == torch.device(DEVICE) or e[1].type == DEVICE for e in guarded if e[0] == "enter")
