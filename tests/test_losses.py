"""Every fused backend x kind x side x reduction x dtype against the float64 reference."""
from __future__ import annotations

import itertools
import os
import zlib

import pytest
import torch

import fusedgan as fg
from helpers import DEVICE, DTYPES, KINDS, REDUCTIONS, assert_close_to_ref, fused_backends, logits

BACKENDS = fused_backends() + (["reference"] if os.environ.get("FUSEDGAN_TEST_REFERENCE") == "1" else [])
LABELLED = ("ns", "mm", "ls")  # kinds whose discriminator takes labels

# name -> (real shape, fake shape, layout); layout "t" builds a non-contiguous (transposed) view
SHAPES = {
    "one": ((1,), (1,), ""),
    "odd": ((7,), (7,), ""),
    "column": ((5, 1), (5, 1), ""),
    "patch": ((3, 1, 30, 30), (2, 1, 30, 30), ""),
    "mixed": ((13,), (6, 1, 4), ""),
    "strided": ((6, 10), (9, 4), "t"),
    "empty_real": ((0,), (5,), ""),
    "both_empty": ((0, 3), (0,), ""),
    "extreme": ((64,), (33,), "x"),
}


def make(shape, dtype, layout, seed):
    if layout == "t":  # a transposed slice: non-contiguous, odd strides
        base = logits((shape[1], 2 * shape[0]), torch.float64, seed=seed)
        x64 = base[:, ::2].t()
    else:
        x64 = logits(shape, torch.float64, extreme=(layout == "x"), seed=seed)
    x64 = x64.to(dtype).double()  # exactly representable in dtype, so all three see the same x
    if layout == "t":
        x = torch.empty((shape[1], 2 * shape[0]), dtype=dtype, device=x64.device)[:, ::2].t()
        x.copy_(x64)
        assert not x.is_contiguous()
        return x
    return x64.to(dtype)


def options(kind, side, opt, real, fake, dtype):
    """Keyword arguments for option set ``opt`` in ``dtype``."""
    if opt == "plain":
        return {}
    if opt == "soft":
        # label smoothing with labels every dtype holds exactly (0.9 would differ by 2e-8 between
        # the fp32 kernel and the fp64 oracle, swamping sigmoid(x) - t where it cancels)
        return {"real_label": 0.875, "fake_label": 0.125} if side == "D" else {"target": 0.75}
    if opt == "tensor_labels":
        def lab(x, lo, hi):  # one label per sample, broadcast over the rest
            shape = (x.shape[0],) + (1,) * (x.dim() - 1) if x.dim() else ()
            return (torch.rand(shape, dtype=torch.float64) * (hi - lo) + lo).to(dtype).to(x.device)
        if side == "D":
            return {"real_label": lab(real, 0.7, 1.0), "fake_label": lab(fake, 0.0, 0.3)}
        return {"target": lab(fake, 0.6, 1.0)}
    if opt == "weights":
        def w(x):
            return (torch.rand(x.shape, dtype=torch.float64) * 2).to(dtype).to(x.device)
        if side == "D":
            return {"real_weight": w(real), "fake_weight": w(fake)}
        return {"weight": w(fake)}
    raise AssertionError(opt)


def cast_opts(opts, dtype):
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in opts.items()}


def call(side, kind, reduction, r, f, opts, backend):
    if side == "D":
        return fg.discriminator_loss(r, f, kind, reduction=reduction, backend=backend, **opts)
    return fg.generator_loss(f, kind, reduction=reduction, backend=backend, **opts)


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def run_and_compare(backend, kind, side, reduction, dtype, shape_name, opt, seed):
    rs, fs, layout = SHAPES[shape_name]
    r_in, f_in = make(rs, dtype, layout, seed), make(fs, dtype, layout, seed + 1)
    opts = options(kind, side, opt, r_in, f_in, dtype)

    results = {}
    for name, dt, be in (("fused", dtype, backend), ("ref64", torch.float64, "reference"), ("same", dtype, "reference")):
        r = r_in.detach().to(dt).requires_grad_(True)
        f = f_in.detach().to(dt).requires_grad_(True)
        if name == "same":  # torch's own formula in the input dtype (the fp16/bf16 error yardstick)
            fn = fg.reference.discriminator_loss if side == "D" else fg.reference.generator_loss
            args = (r, f) if side == "D" else (f,)
            out = as_tuple(fn(*args, kind, reduction=reduction, **cast_opts(opts, dt)))
        else:
            out = as_tuple(call(side, kind, reduction, r, f, cast_opts(opts, dt), be))
        if name == "fused":
            assert fg.backends.last_used() == backend
            g_outs = [torch.randn(o.shape, dtype=torch.float64, device=o.device) for o in out]
        outs_with_grad = [(o, g.to(o.dtype)) for o, g in zip(out, g_outs) if o.requires_grad]
        if outs_with_grad:
            torch.autograd.backward([o for o, _ in outs_with_grad], [g for _, g in outs_with_grad])
        grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in ((r, f) if side == "D" else (f,))]
        results[name] = ([o.detach() for o in out], [g.detach() for g in grads])

    (fo, fg_), (ro, rg), (so, sg) = results["fused"], results["ref64"], results["same"]
    # the size of what the reduction summed: |per-element losses| reduced the same way
    r64, f64 = r_in.double(), f_in.double()
    elementwise = as_tuple(call(side, kind, "none", r64, f64, cast_opts(opts, torch.float64), "reference"))
    red = {"mean": lambda v: v.abs().mean(), "sum": lambda v: v.abs().sum(), "none": lambda v: v.abs().max() if v.numel() else v.sum()}
    magnitude = sum(float(red[reduction](v.nan_to_num(0.0, 0.0, 0.0))) for v in elementwise)
    assert len(fo) == len(ro)
    for i, (a, b, c) in enumerate(zip(fo, ro, so)):
        expect_dtype = dtype if reduction == "none" else (torch.float64 if dtype == torch.float64 else torch.float32)
        assert a.dtype == expect_dtype, f"output {i} dtype {a.dtype}, expected {expect_dtype}"
        assert_close_to_ref(a, b, c, dtype, f"loss[{i}]", scale=magnitude)
    for i, (a, b, c) in enumerate(zip(fg_, rg, sg)):
        assert a.dtype == dtype
        assert_close_to_ref(a, b, c, dtype, f"grad[{i}]")


def cases():
    for kind, side, opt in itertools.product(KINDS, ("D", "G"), ("plain", "soft", "tensor_labels", "weights")):
        if opt in ("soft", "tensor_labels") and not (kind in LABELLED and (side == "D" or kind in ("ns", "ls"))):
            continue
        yield kind, side, opt


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind,side,opt", list(cases()))
def test_matches_reference(backend, kind, side, opt, reduction, dtype):
    for i, shape_name in enumerate(SHAPES):
        run_and_compare(backend, kind, side, reduction, dtype, shape_name, opt, seed=1000 * i + zlib.crc32(f"{kind}{side}{opt}".encode()) % 997)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_large_odd_size(backend, kind):
    """1000003 elements: many chunks / blocks, a ragged tail, fp32 accumulation accuracy."""
    torch.manual_seed(0)
    r = logits((1000003,), torch.float32, extreme=True).requires_grad_(True)
    f = logits((999999,), torch.float32).requires_grad_(True)
    loss = fg.discriminator_loss(r, f, kind, backend=backend)
    loss.backward()
    r64, f64 = r.detach().double().requires_grad_(True), f.detach().double().requires_grad_(True)
    ref = fg.reference.discriminator_loss(r64, f64, kind)
    ref.backward()
    loss, ref = loss.detach(), ref.detach()
    assert abs(float(loss) - float(ref)) <= 1e-6 * max(abs(float(ref)), 1e-3)
    torch.testing.assert_close(r.grad.double(), r64.grad, rtol=2e-6, atol=1e-30)
    torch.testing.assert_close(f.grad.double(), f64.grad, rtol=2e-6, atol=1e-30)


@pytest.mark.skipif("cpu" not in fused_backends("cpu"), reason="fusedgan._C is not built")
@pytest.mark.parametrize("kind,side", [("wgan", "D"), ("wgan", "G"), ("hinge", "G")])
def test_cpu_linear_means_survive_cancellation(kind, side):
    """Means over +-1e4 logits cancel 10^7-fold; the CPU kernel's compensated sum keeps 1e-6."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1 << 20, generator=gen, dtype=torch.float64) * 3
    x[torch.randperm(x.numel(), generator=gen)[:2000]] = 1e4
    x[torch.randperm(x.numel(), generator=gen)[:2000]] = -1e4
    y = torch.randn(1 << 19, generator=gen, dtype=torch.float64) * 3
    args = (x.float(), y.float()) if side == "D" else (x.float(),)
    args64 = (x, y) if side == "D" else (x,)
    fn = fg.discriminator_loss if side == "D" else fg.generator_loss
    out = float(fn(*args, kind, backend="cpu"))
    ref = float(fn(*args64, kind, backend="reference"))
    assert abs(out - ref) <= 1e-6 * abs(ref), (out, ref)
    # An infinite logit still gives an infinite mean, never the NaN of inf - inf in the compensation.
    z = x.float().clone()
    z[5] = float("inf")
    assert fg.generator_loss(z, "wgan", backend="cpu").item() == -float("inf")


@pytest.mark.parametrize("backend", BACKENDS)
def test_confident_predictions(backend):
    """Saturated logits: BCE gradients stay relative-accurate (sigmoid(x)-1 computed as -sigmoid(-x))."""
    x = torch.tensor([-80.0, -40.0, -20.0, -5.0, 5.0, 20.0, 40.0, 80.0, 1e4, -1e4], device=DEVICE)
    r = x.clone().requires_grad_(True)
    f = x.clone().requires_grad_(True)
    fg.discriminator_loss(r, f, "ns", reduction="sum", backend=backend).backward()
    r64, f64 = x.double().requires_grad_(True), x.double().requires_grad_(True)
    fg.reference.discriminator_loss(r64, f64, "ns", reduction="sum").backward()
    torch.testing.assert_close(r.grad.double(), r64.grad, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(f.grad.double(), f64.grad, rtol=1e-6, atol=0.0)
    assert (r.grad[:4] < 0).all() and (r.grad[4:8] < 0).all()  # never rounded to 0 before underflow


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_nan_inf_propagate_like_torch(backend, kind):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5], device=DEVICE)
    for side in ("D", "G"):
        r, f = x.clone().requires_grad_(True), x.clone().flip(0).requires_grad_(True)
        out = as_tuple(call(side, kind, "none", r, f, {}, backend))
        ref = as_tuple(call(side, kind, "none", x.double(), x.flip(0).double(), {}, "reference"))
        for a, b in zip(out, ref):
            torch.testing.assert_close(a.double(), b, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_inputs_skip_gradients(backend):
    r, f = logits((100,), torch.float32), logits((50,), torch.float32)
    out = fg.discriminator_loss(r, f, "ns", backend=backend)
    assert not out.requires_grad
    ref = fg.reference.discriminator_loss(r.double(), f.double(), "ns")
    assert abs(float(out) - float(ref)) <= 1e-6 * abs(float(ref))
    r.requires_grad_(True)  # only one side needs a gradient
    fg.discriminator_loss(r, f, "ls", backend=backend).backward()
    assert r.grad is not None and f.grad is None


def _call(side, real, fake, **kw):
    if side == "D":
        return fg.discriminator_loss(real, fake, "ns", **kw)
    return fg.generator_loss(fake, "ns", **kw)


@pytest.mark.parametrize("side", ["D", "G"])
def test_repeated_calls_keep_the_checks(side):
    """A repeated call (its plan remembered) goes straight to the operator only for plain logits
    of one floating dtype on one device; anything else still gets the full checks, which name the
    argument, and mixed dtypes are promoted as on the first call."""
    real, fake = torch.randn(6, 1), torch.randn(5, 1)
    first = _call(side, real, fake, backend="cpu")
    r2, f2 = real.clone().requires_grad_(), fake.clone().requires_grad_()
    again = _call(side, r2, f2, backend="cpu")
    assert torch.equal(first, again)
    ref = _call(side, real.double(), fake.double(), backend="reference")
    torch.testing.assert_close(again.double(), ref)
    # the gradient through the short route: sum of the terms' gradients, per element
    got = torch.autograd.grad(again, [f2])[0]
    f64 = fake.double().requires_grad_()
    want = torch.autograd.grad(_call(side, real.double(), f64, backend="reference"), [f64])[0]
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="^fake: logits must be"):
        _call(side, real, fake.to(torch.int64), backend="cpu")
    with pytest.raises(TypeError, match="^fake: expected a dense"):
        _call(side, real, fake.to_sparse(), backend="cpu")
    if side == "D":
        with pytest.raises(TypeError, match="^real: logits must be"):
            _call(side, real.to(torch.int32), fake, backend="cpu")
        with pytest.raises(ValueError, match="^fake: is on meta"):
            _call(side, real, fake.to("meta"), backend="cpu")
        mixed = _call(side, real, fake.double(), backend="cpu")  # promoted, as the full route does
        assert mixed.dtype == torch.float64
        torch.testing.assert_close(mixed, ref)
