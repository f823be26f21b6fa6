"""Test-session plumbing: which tests run a fused kernel.

About a quarter of the suite says nothing about the fused kernels (the reference against itself,
benchmark and CLI smoke tests).  To report the fused-kernel count separately (tests/run.sh's
summary), every call of a fusedgan kernel or autograd operator from Python is counted per test
and written to the JUnit report as the test's ``fused_kernels`` property: through
``torch.ops.fusedgan.<op>(...)`` (what compiled graphs and the operator tests call) and through
the operators' eager entries (``fusedgan._C.OpCall``, which count their own calls: what the public
functions' fused route runs).  Calls that only reach the reference (``backend="reference"``,
a drop-in that falls back to torch) are not counted.
"""
from __future__ import annotations

import pytest
import torch
import torch._ops

_count = [0]
_kernel_ops: set = set()


def _counted(orig, qualname):
    def call(self, *args, **kwargs):
        if getattr(self, qualname, "").split(".")[0] in _kernel_ops:
            _count[0] += 1
        return orig(self, *args, **kwargs)

    return call


def pytest_configure(config):
    try:
        from fusedgan import ops
    except Exception:  # noqa: BLE001 - a broken import is reported by the tests themselves
        return
    _kernel_ops.update(f"fusedgan::{n}" for n, o in ops.OPS.items() if o.impl in ("cpp", "triton"))
    torch._ops.OpOverloadPacket.__call__ = _counted(torch._ops.OpOverloadPacket.__call__, "_qualified_op_name")
    torch._ops.OpOverload.__call__ = _counted(torch._ops.OpOverload.__call__, "_name")


def _calls() -> int:
    try:
        from fusedgan import ops
    except Exception:  # noqa: BLE001
        return _count[0]
    return _count[0] + sum(entry.calls for entry in ops.OP_CALLS.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    before = _calls()
    yield
    item.user_properties.append(("fused_kernels", _calls() - before))
