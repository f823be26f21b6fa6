"""The eager entry into the operators with autograd (``fusedgan._C.OpCall``, csrc/python_calls.cpp).

Eager calls on plain tensors enter ``fusedgan::<op>`` through its OpCall instead of torch.ops
(``fusedgan.ops.call``).  These tests check that every public route takes it (its call counter
moves), that it gives what torch.ops gives bit for bit (values, gradients, errors), and that it
steps aside, visibly, wherever torch.ops has work to do: tensor subclasses and torch function
modes (__torch_function__), torch.compile.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import fusedgan as fg
from fusedgan import nn as fnn
from fusedgan import backends, ops
from fusedgan.codes import Elem, Reduction

pytestmark = pytest.mark.skipif(not ops.OP_CALLS, reason="needs the C++ extension")


def _counts() -> dict:
    return {name: entry.calls for name, entry in ops.OP_CALLS.items()}


def _moved(before: dict) -> dict:
    return {name: entry.calls - before[name] for name, entry in ops.OP_CALLS.items()
            if entry.calls != before[name]}


def _x(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).float().requires_grad_()


def _raw_args(x, label=None):
    """gan_loss arguments of one ns-G term on ``x`` (label tensor optional)."""
    return ([x], [label], [None], [int(Elem.BCE)], [1.0], [1.0], int(Reduction.MEAN), False, False)


def test_every_autograd_operator_has_an_entry():
    assert set(ops.OP_CALLS) == set(ops.AUTOGRAD_OPS)
    for name, entry in ops.OP_CALLS.items():
        assert entry.name == f"fusedgan::{name}"


ROUTES = {
    "generator_loss": (lambda r, f: fg.generator_loss(f, "ns"), "gan_loss"),
    "generator_loss backend=cpu": (lambda r, f: fg.generator_loss(f, "hinge", backend="cpu"), "gan_loss"),
    "discriminator_loss": (lambda r, f: fg.discriminator_loss(r, f, "ls"), "gan_loss"),
    "tensor labels": (lambda r, f: fg.discriminator_loss(r, f, "ns", real_label=torch.full_like(r, 0.9).detach()),
                      "gan_loss"),
    "rsgan": (lambda r, f: fg.generator_loss(f, "rsgan", real=r), "rel_gan_loss"),
    "GANLoss": (lambda r, f: fnn.GANLoss("ns")(r, f), "gan_loss"),
    "drop-in bce": (lambda r, f: fg.functional.binary_cross_entropy_with_logits(
        f, torch.rand(f.shape, generator=torch.Generator().manual_seed(3))),
                    "gan_loss"),
    "r1_penalty": (lambda r, f: fg.r1_penalty((r * 2).view(8, 8)), "gan_penalty"),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_eager_calls_take_the_entry_and_match_torch_ops(route, monkeypatch):
    fn, op = ROUTES[route]
    r, f = _x(seed=1), _x(seed=2)

    def run():
        loss = fn(r, f)
        loss = loss.loss if hasattr(loss, "loss") else loss
        return loss.detach(), torch.autograd.grad(loss, (r, f), allow_unused=True)

    before = _counts()
    value, grads = run()
    assert _moved(before) == {op: 1}, route
    assert backends.last_used() == "cpu"
    monkeypatch.setattr(ops, "OP_CALLS", {})  # torch.ops only
    value_ops, grads_ops = run()
    assert torch.equal(value, value_ops)
    for a, b in zip(grads, grads_ops):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


def test_raw_entry_matches_torch_ops_and_counts():
    x = _x()
    entry = ops.OP_CALLS["gan_loss"]
    n = entry.calls
    got = entry(*_raw_args(x))
    want = torch.ops.fusedgan.gan_loss.default(*_raw_args(x))
    assert entry.calls == n + 1
    assert [type(t) for t in got] == [torch.Tensor, torch.Tensor]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert got[0].grad_fn.name() == "GanLossBackward"
    # hand value: softplus(-x).mean() is what the ns G term is
    torch.testing.assert_close(got[0], F.softplus(-x).mean().detach(), rtol=1e-6, atol=1e-7)
    # the schema's defaults fill trailing arguments (stats, triton); tuples read as lists
    assert torch.equal(entry(*_raw_args(x)[:7])[0], got[0])
    assert torch.equal(entry(*[tuple(a) if isinstance(a, list) else a for a in _raw_args(x)])[0], got[0])
    assert entry.calls == n + 3


@pytest.mark.parametrize("bad", [
    lambda a: (*a[:6], "mean", *a[7:]),          # a str where the schema has int
    lambda a: (*a[:3], [True], *a[4:]),          # a bool in int[]
    lambda a: (a[0][0], *a[1:]),                 # a Tensor where the schema has Tensor[]
    lambda a: (*a, False),                       # one argument too many
    lambda a: a[:6],                             # a required argument missing
])
def test_entry_declines_what_it_does_not_convert(bad):
    entry = ops.OP_CALLS["gan_loss"]
    n = entry.calls
    assert entry(*bad(_raw_args(_x()))) is None
    assert entry.calls == n


def test_errors_read_as_from_torch_ops():
    x = _x()
    args = ([x], [None, None], [None], [int(Elem.BCE)], [1.0], [1.0], 1, False, False)
    with pytest.raises(RuntimeError) as fast:
        ops.OP_CALLS["gan_loss"](*args)
    with pytest.raises(RuntimeError) as slow:
        torch.ops.fusedgan.gan_loss.default(*args)
    assert "labels and weights need one entry per logits tensor" in str(fast.value)
    assert str(fast.value) == str(slow.value)
    assert "Exception raised from" not in str(fast.value)


class _Sub(torch.Tensor):
    seen: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.seen.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_a_tensor_subclass_goes_through_torch_ops():
    x = _x().detach().as_subclass(_Sub).requires_grad_()
    _Sub.seen.clear()
    before = _counts()
    assert ops.OP_CALLS["gan_loss"](*_raw_args(x)) is None
    assert ops.OP_CALLS["gan_loss"](*_raw_args(_x(), label=torch.ones(64).as_subclass(_Sub))) is None
    loss = fg.generator_loss(x, "ns", backend="cpu")
    assert _moved(before) == {}
    assert any("gan_loss" in s for s in _Sub.seen), _Sub.seen
    torch.testing.assert_close(loss.as_subclass(torch.Tensor), F.softplus(-x.as_subclass(torch.Tensor)).mean())


def _logging_mode(base, hook: str):
    """A torch function or dispatch mode that records the name of every call it sees."""
    def __init__(self):
        base.__init__(self)
        self.seen = []

    def handler(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))
    return type(f"_Log{base.__name__}", (base,), {"__init__": __init__, hook: handler})


_FunctionLog = _logging_mode(TorchFunctionMode, "__torch_function__")
_DispatchLog = _logging_mode(TorchDispatchMode, "__torch_dispatch__")


def test_a_torch_function_mode_goes_through_torch_ops():
    x = _x()
    before = _counts()
    with _FunctionLog() as mode:
        fg.generator_loss(x, "ns", backend="cpu")
        assert ops.OP_CALLS["gan_loss"](*_raw_args(x)) is None
    assert _moved(before) == {}
    assert "fusedgan.gan_loss.default" in mode.seen


def test_a_dispatch_mode_sees_the_entry_s_calls():
    x = _x()
    before = _counts()
    with _DispatchLog() as mode:
        loss = fg.generator_loss(x, "ns", backend="cpu")
    assert _moved(before) == {"gan_loss": 1}
    assert any("fusedgan.loss_terms" in s for s in mode.seen), mode.seen
    torch.testing.assert_close(loss.detach(), F.softplus(-x).mean().detach())


def test_the_profiler_records_the_operator():
    x = _x()
    before = _counts()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fg.generator_loss(x, "ns", backend="cpu").backward()
    assert _moved(before) == {"gan_loss": 1}
    names = {e.key for e in prof.key_averages()}
    assert {"fusedgan::gan_loss", "fusedgan::loss_terms"} <= names, names


def test_torch_compile_traces_torch_ops():
    x = _x()
    fn = torch.compile(lambda t: fg.generator_loss(t, "ns", backend="cpu"), backend="eager", fullgraph=True)
    fn(x)  # compiles
    before = _counts()
    loss = fn(x)
    assert _moved(before) == {}
    torch.testing.assert_close(loss.detach(), F.softplus(-x).mean().detach())


def test_inference_mode_and_no_grad_through_the_entry():
    x = _x()
    before = _counts()
    with torch.inference_mode():
        a = fg.generator_loss(x.detach(), "ns")
    with torch.no_grad():
        b = fg.generator_loss(x, "ns")
    assert _moved(before) == {"gan_loss": 2}
    assert a.grad_fn is None and b.grad_fn is None
    assert torch.equal(a, b)


@pytest.mark.parametrize("side", ["D", "G"])
def test_repeated_relativistic_calls_take_the_short_route(side, monkeypatch):
    """rsgan's second call on, with its plan remembered, goes straight to rel_gan_loss (no binding
    of weights); the value and gradients stay torch's formula, and unequal shapes still raise."""
    r, f = _x(seed=3), _x(seed=4)
    loss_of = ((lambda a, b: fg.discriminator_loss(a, b, "rsgan")) if side == "D"
               else (lambda a, b: fg.generator_loss(b, "rsgan", real=a)))
    d = (r - f) if side == "D" else (f - r)
    want = F.softplus(-d).mean()
    want_grads = torch.autograd.grad(want, (r, f))
    before = _counts()
    for i in range(3):
        if i == 1:  # the plan is remembered: the general path (binding, execute) is not taken
            monkeypatch.setattr(fg.plan, "execute", None)
        loss = loss_of(r, f)
        torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-7)
        for a, b in zip(torch.autograd.grad(loss, (r, f)), want_grads):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert _moved(before) == {"rel_gan_loss": 3}
    monkeypatch.undo()
    with pytest.raises(ValueError, match="rsgan pairs real and fake logits elementwise"):
        loss_of(r, f[:10])


def test_torch_compile_compiles_once():
    """Eager calls never fill torch.ops' overload cache (they take OpCall), so it is filled at
    import: a first fill inside a compiled function is a side effect whose guard recompiled the
    next call (found by tests/test_regularizers.py::test_lecam_compile_state_dict)."""
    assert set(ops.AUTOGRAD_OPS) <= set(ops._OVERLOADS)
    torch._dynamo.reset()
    graphs = []

    def count(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = torch.compile(lambda r, f: fg.discriminator_loss(r, f, "ns") + fg.generator_loss(f, "rsgan", real=r),
                       backend=count, fullgraph=True)
    r, f = _x(seed=6), _x(seed=7)
    for _ in range(3):
        fn(r, f).backward()
    assert len(graphs) == 1
