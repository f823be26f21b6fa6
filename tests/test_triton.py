"""The Triton backend against the float64 reference: kinds x sides x reductions x dtypes x shapes.

Runs on CUDA tensors when a GPU is present, else on CPU tensors through Triton's interpreter, which
must be switched on before triton is imported, so CI runs this file in its own process::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton.py -q

Without CUDA and without ``TRITON_INTERPRET=1`` the module is skipped (with that reason).
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton backend needs CUDA, or TRITON_INTERPRET=1 set before triton is imported "
                "(run: TRITON_INTERPRET=1 python -m pytest tests/test_triton.py)", allow_module_level=True)

import fusedgan as fg  # noqa: E402
from fusedgan import ops  # noqa: E402
from fusedgan.kinds import Elem  # noqa: E402

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)
import fusedgan.triton as ft  # noqa: E402

from helpers import DTYPES, KINDS, REDUCTIONS, assert_close_to_ref, logits, ran_ops  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LABELLED = {"D": ("ns", "mm", "ls"), "G": ("ns", "ls")}

# (real shape, fake shape, layout, options): odd sizes, PatchGAN maps, sizes that differ,
# +-1e4 logits ("x"), transposed non-contiguous views ("t"), an empty tensor.
SCENARIOS = [
    ((1,), (1,), "", "plain"),
    ((3, 1, 5, 5), (7,), "x", "soft"),
    ((6, 10), (9, 4), "t", "weights"),
    ((13,), (6, 1, 4), "x", "tensor_labels"),
    ((0,), (5,), "", "plain"),
]


def make(shape, dtype, layout, seed):
    x64 = logits(shape, torch.float64, extreme=(layout == "x"), seed=seed, device="cpu")
    x = x64.to(dtype).to(DEVICE)
    if layout == "t":  # the transpose of a contiguous (cols, rows) tensor
        x = x.t().contiguous().t()
        assert not x.is_contiguous() or x.numel() <= 1
    return x


def options(kind, side, opt, real, fake, dtype):
    if opt == "plain" or kind not in LABELLED[side] and opt in ("soft", "tensor_labels"):
        return {}
    if opt == "soft":  # dyadic, so every dtype holds the label exactly
        return {"real_label": 0.875, "fake_label": 0.125} if side == "D" else {"target": 0.75}
    gen = torch.Generator().manual_seed(7)

    def rand(shape, lo, hi):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(dtype).to(DEVICE)

    if opt == "tensor_labels":  # one label per sample, broadcast over the rest
        def lab(x, lo, hi):
            return rand((x.shape[0],) + (1,) * (x.dim() - 1), lo, hi)
        if side == "D":
            return {"real_label": lab(real, 0.7, 1.0), "fake_label": lab(fake, 0.0, 0.3)}
        return {"target": lab(fake, 0.6, 1.0)}
    if opt == "weights":
        if side == "D":
            return {"real_weight": rand(real.shape, 0, 2), "fake_weight": rand((), 0.5, 2)}
        return {"weight": rand(fake.shape, 0, 2)}
    raise AssertionError(opt)


def call(side, kind, reduction, r, f, opts, backend):
    if side == "D":
        out = fg.discriminator_loss(r, f, kind, reduction=reduction, backend=backend, **opts)
    else:
        out = fg.generator_loss(f, kind, reduction=reduction, backend=backend, **opts)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def cast(opts, dtype):
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in opts.items()}


def run_and_compare(kind, side, reduction, dtype, scenario, seed):
    rs, fs, layout, opt = scenario
    r_in, f_in = make(rs, dtype, layout, seed), make(fs, dtype, layout, seed + 1)
    opts = options(kind, side, opt, r_in, f_in, dtype)
    results, g_outs = {}, None
    for name, dt in (("triton", dtype), ("ref64", torch.float64), ("same", dtype)):
        r = r_in.detach().to(dt).requires_grad_(True)
        f = f_in.detach().to(dt).requires_grad_(True)
        if name == "triton":
            before = dict(ft.CALLS)
            out = call(side, kind, reduction, r, f, cast(opts, dt), "triton")
            assert fg.backends.last_used() == "triton"
            assert sum(ft.CALLS.values()) > sum(before.values()), "the Triton operator did not run"
            gen = torch.Generator().manual_seed(seed + 2)
            # representable in the input dtype, so the fp64 reference sees the same grad_output
            g_outs = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).double().to(DEVICE)
                      for o in out]
        elif name == "ref64":
            out = call(side, kind, reduction, r, f, cast(opts, dt), "reference")
        else:  # torch's own formula in the input dtype: the fp16/bf16 error yardstick
            fn = fg.reference.discriminator_loss if side == "D" else fg.reference.generator_loss
            out = fn(*((r, f) if side == "D" else (f,)), kind, reduction=reduction, **cast(opts, dt))
            out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        pairs = [(o, g.to(o.dtype)) for o, g in zip(out, g_outs) if o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        xs = (r, f) if side == "D" else (f,)
        grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
        results[name] = ([o.detach() for o in out], [g.detach() for g in grads])
    (to, tg), (ro, rg), (so, sg) = results["triton"], results["ref64"], results["same"]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for i, (a, b, c) in enumerate(zip(to, ro, so)):
        assert a.dtype == (dtype if reduction == "none" else acc), f"loss[{i}] dtype {a.dtype}"
        assert_close_to_ref(a.cpu(), b.cpu(), c.cpu(), dtype, f"loss[{i}]")
    for i, (a, b, c) in enumerate(zip(tg, rg, sg)):
        assert a.dtype == dtype and a.shape == b.shape
        assert_close_to_ref(a.cpu(), b.cpu(), c.cpu(), dtype, f"grad[{i}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, side, reduction, dtype):
    for i, scenario in enumerate(SCENARIOS):
        run_and_compare(kind, side, reduction, dtype, scenario, seed=100 * i + KINDS.index(kind))


@pytest.fixture
def multi_program(monkeypatch):
    """Force the multi-program path (partials + finishing kernel) on small inputs."""
    monkeypatch.setattr(ft, "SINGLE_MAX", -1)
    monkeypatch.setattr(ft, "BLOCK_MEDIUM", 16)
    monkeypatch.setattr(ft, "BLOCK_F64", 16)
    monkeypatch.setattr(ft, "RBLOCK", 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_multi_program_path(multi_program, kind, reduction, dtype):
    for i, scenario in enumerate([((101,), (37,), "x", "weights"), ((0,), (50,), "", "soft"),
                                  ((4, 1, 6, 6), (0,), "", "tensor_labels")]):
        run_and_compare(kind, "D", reduction, dtype, scenario, seed=7 + i)
    run_and_compare(kind, "G", reduction, dtype, ((1,), (9, 5), "t", "plain"), seed=3)


def _op_args(n_terms=3, dtype=torch.float32, reduction=1, need_grad=None, n=(23, 1, 40)):
    gen = torch.Generator().manual_seed(5)
    xs = [(torch.randn(k, generator=gen, dtype=torch.float64) * 4).to(dtype).to(DEVICE) for k in n[:n_terms]]
    labels = [None, torch.rand(1, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE),
              torch.rand(n[2], generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)][:n_terms]
    weights = [torch.rand(n[0], generator=gen, dtype=torch.float64).to(dtype).to(DEVICE), None,
               torch.rand(1, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)][:n_terms]
    elems = [int(Elem.BCE), int(Elem.HINGE), int(Elem.HALF_SQUARE)][:n_terms]
    need_grad = need_grad or [True, False, True][:n_terms]
    return (xs, labels, weights, elems, [0.25, 1.0, 0.0][:n_terms], [1.0, -1.0, 0.5][:n_terms], reduction, need_grad)


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("n_terms", [1, 2, 3])
def test_op_matches_reference_loss_terms(n_terms, reduction):
    """The operator contract directly (three terms: two launch groups, the second adding into total)."""
    args = _op_args(n_terms, torch.float64, reduction)
    out = torch.ops.fusedgan.triton_loss_terms(*args)
    ref = ops.reference_loss_terms(*args)
    for name, a, b in zip(("total", "terms"), out[:2], ref[:2]):
        assert a.dtype == torch.float64 and a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(out[2] + out[3], ref[2] + ref[3]):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_loss_grads_op(reduction):
    """The three-pass backward operator: gradient times grad_output in one launch."""
    args = _op_args(3, torch.float64, reduction, need_grad=[True, True, True])
    xs = args[0]
    if reduction == 0:
        gos = [torch.randn(xs[0].shape, dtype=torch.float64, device=DEVICE), None,
               torch.tensor(2.5, dtype=torch.float64, device=DEVICE).expand(xs[2].shape)]
    else:
        go = torch.tensor(-1.5, dtype=torch.float64, device=DEVICE)
        gos = [go, None, go]
    got = torch.ops.fusedgan.triton_loss_grads(*args[:-1], gos)
    _, _, ref, _ = ops.reference_loss_terms(*args)
    assert got[1].numel() == 0
    for i in (0, 2):
        torch.testing.assert_close(got[i], ref[i] * gos[i], rtol=1e-12, atol=1e-14)


def test_elem_codes_agree():
    assert ft.kernels.ELEMS == {int(e) for e in Elem}


def test_operator_shows_in_profiler():
    r = logits((8,), torch.float32, device=DEVICE).requires_grad_(True)
    f = logits((5,), torch.float32, device=DEVICE).requires_grad_(True)
    names = ran_ops(lambda: fg.discriminator_loss(r, f, "ns", backend="triton").backward())
    assert "fusedgan::triton_loss_terms" in names, names


def test_deterministic(multi_program):
    r = logits((3000,), torch.float32, extreme=True, seed=1, device=DEVICE)
    f = logits((2001,), torch.float32, seed=2, device=DEVICE)
    args = ([r, f], [None, None], [None, None], [0, 0], [1.0, 0.0], [1.0, 1.0], 1, [True, True])
    a = torch.ops.fusedgan.triton_loss_terms(*args)
    b = torch.ops.fusedgan.triton_loss_terms(*args)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert all(torch.equal(x, y) for x, y in zip(a[2], b[2]))


def test_confident_predictions():
    """Saturated logits keep relative accuracy in BCE gradients (no 1 - sigmoid cancellation)."""
    x = torch.tensor([-80.0, -40.0, -20.0, -5.0, 5.0, 20.0, 40.0, 80.0, 1e4, -1e4], device=DEVICE)
    r, f = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fg.discriminator_loss(r, f, "ns", reduction="sum", backend="triton").backward()
    r64, f64 = x.double().cpu().requires_grad_(True), x.double().cpu().requires_grad_(True)
    fg.reference.discriminator_loss(r64, f64, "ns", reduction="sum").backward()
    torch.testing.assert_close(r.grad.double().cpu(), r64.grad, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(f.grad.double().cpu(), f64.grad, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_nan_inf_propagate_like_torch(kind):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5], device=DEVICE)
    for side in ("D", "G"):
        out = call(side, kind, "none", x, x.flip(0), {}, "triton")
        ref = call(side, kind, "none", x.double().cpu(), x.flip(0).double().cpu(), {}, "reference")
        for a, b in zip(out, ref):
            # every element, mm's G at f = -inf included (-BCE(f, 0): NaN in both)
            torch.testing.assert_close(a.double().cpu(), b, equal_nan=True)


def test_opcheck():
    args = _op_args(2, torch.float32, 1, need_grad=[True, False])
    utils = ("test_schema",)
    if DEVICE == "cuda":  # the interpreter cannot run a Triton kernel under FakeTensorMode
        utils += ("test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(torch.ops.fusedgan.triton_loss_terms.default, args, test_utils=utils)
    args = _op_args(0 + 2, torch.float32, 0, need_grad=[True, True])
    gos = [torch.randn(a.shape, device=DEVICE) for a in args[0]]
    torch.library.opcheck(torch.ops.fusedgan.triton_loss_grads.default, (*args[:-1], gos), test_utils=utils)


@pytest.mark.skipif(DEVICE != "cuda", reason="torch.compile of Triton kernels needs CUDA")
def test_compile_fullgraph():
    r = logits((300,), torch.float32, device=DEVICE).requires_grad_(True)
    f = logits((200,), torch.float32, device=DEVICE).requires_grad_(True)

    @torch.compile(fullgraph=True)
    def step(r, f):
        return fg.discriminator_loss(r, f, "ns", backend="triton")

    loss = step(r, f)
    ref = fg.reference.discriminator_loss(r.detach().double(), f.detach().double(), "ns")
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-7)
