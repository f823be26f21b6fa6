"""The eager entry (``fusedgan._C.OpCall``) on the Triton backend: CUDA, or CPU tensors under
Triton's interpreter, in its own process::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_op_calls.py -q

The entry calls the same operator with ``triton=True``; the dispatcher then runs the Triton twin
(a Python kernel, entered with the GIL the entry released).  Checked against torch.ops and torch.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton backend needs CUDA, or TRITON_INTERPRET=1 set before triton is imported "
                "(run: TRITON_INTERPRET=1 python -m pytest tests/test_triton_op_calls.py)", allow_module_level=True)

import fusedgan as fg  # noqa: E402
from fusedgan import backends, ops  # noqa: E402

if not fg.ops.HAS_TRITON or not ops.OP_CALLS:
    pytest.skip(f"Triton operators or the extension missing: {fg.ops.TRITON_ERROR}", allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CALLS = {
    "gan_loss": lambda r, f: fg.discriminator_loss(r, f, "ns", backend="triton"),
    "rel_gan_loss": lambda r, f: fg.generator_loss(f, "rsgan", real=r, backend="triton"),
    "gan_penalty": lambda r, f: fg.r1_penalty((r * 2).view(4, 25), backend="triton"),
}


@pytest.mark.parametrize("op", list(CALLS))
def test_triton_calls_take_the_entry_and_match_torch_ops(op, monkeypatch):
    g = torch.Generator().manual_seed(5)
    r = torch.randn(100, generator=g).to(DEVICE).requires_grad_()
    f = torch.randn(100, generator=g).to(DEVICE).requires_grad_()

    def run():
        loss = CALLS[op](r, f)
        return loss.detach(), torch.autograd.grad(loss, (r, f), allow_unused=True)

    before = ops.OP_CALLS[op].calls
    value, grads = run()
    assert ops.OP_CALLS[op].calls == before + 1
    assert backends.last_used() == "triton"
    monkeypatch.setattr(ops, "OP_CALLS", {})
    value_ops, grads_ops = run()
    torch.testing.assert_close(value, value_ops, rtol=0, atol=0)
    for a, b in zip(grads, grads_ops):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    if op == "gan_loss":  # and torch's own formula
        want = F.softplus(-r).mean() + F.softplus(f).mean()
        torch.testing.assert_close(value, want.detach(), rtol=1e-6, atol=1e-6)


def test_triton_kernel_errors_reach_python_through_the_entry():
    x = torch.randn(8, device=DEVICE, requires_grad=True)
    args = ([x], [torch.ones(3, device=DEVICE)], [None], [0], [1.0], [1.0], 1, False, True)
    with pytest.raises(Exception) as fast:
        ops.OP_CALLS["gan_loss"](*args)
    with pytest.raises(Exception) as slow:
        torch.ops.fusedgan.gan_loss.default(*args)
    assert type(fast.value) is type(slow.value) is ValueError  # raised by the Python launcher
    assert str(fast.value) == str(slow.value) == "labels: expected 1 or 8 elements, got 3"
