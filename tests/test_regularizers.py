"""fusedgan.regularizers: approximate R1/R2, cosine_decay, LeCam, path length, adaptive weight.

Each against a float64 reference written here from the papers' formulas and against hand
values; gradcheck / gradgradcheck; opcheck of the operator call approx_r1_penalty makes;
torch.compile(fullgraph=True); bad input naming the argument; every dtype on every backend that
runs here (the Triton twin has tests/test_triton_regularizers.py), asserting which backend ran.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fusedgan as fg
from fusedgan import backends, regularizers
from fusedgan.codes import Elem, Reduction, RelLogit
from helpers import DEVICE, DTYPES, OpRecorder, fused_backends, ran_ops

BACKENDS = ["reference"] + fused_backends()
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}


def kernel_of(backend):
    if backend == "reference":
        return set()
    return {"fusedgan::rel_gan_loss", "fusedgan::triton_loss_terms" if backend == "triton"
            else "fusedgan::loss_terms"}


# ---------------------------------------------------------------------------------------------
# fp64 references, written from the formulas.


def ref_approx_r1(logits, perturbed, sigma, gamma):
    d = (perturbed.double() - logits.double()).reshape(logits.shape[0], -1)
    return (gamma / 2) * (d.square().sum(1) / sigma ** 2).mean()


def ref_lecam(r, f, ema_r, ema_f):
    r, f = r.double(), f.double()
    return torch.relu(r - ema_f).square().mean() + torch.relu(ema_r - f).square().mean()


def ref_path_length(g, pl_mean, decay):
    g = g.double()
    if g.dim() == 2:
        g = g[:, None]
    lengths = g.square().sum(2).mean(1).sqrt()
    m = pl_mean + decay * (lengths.mean() - pl_mean)
    return (lengths - m).square().mean(), m.detach()


# ---------------------------------------------------------------------------------------------
# approx_r1_penalty


def test_approx_r1_penalty_hand_value():
    # d = [0.1, 0.3]: (2/2) * mean(0.01, 0.09) / 0.1^2 = 5
    logits = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    pert = torch.tensor([[0.1], [1.3]], dtype=torch.float64)
    for backend in BACKENDS:
        out = fg.approx_r1_penalty(logits, pert, sigma=0.1, gamma=2.0, backend=backend)
        assert backends.last_used() == backend
        assert float(out) == pytest.approx(5.0, rel=1e-12)
    # sum over the non-batch dims, mean over the batch: [2, 2] with d = 1 everywhere, sigma 1,
    # gamma 2: mean_b (1 + 1) = 2
    ones = torch.ones(2, 2, dtype=torch.float64)
    assert float(fg.approx_r1_penalty(ones * 0, ones, sigma=1.0, gamma=2.0)) == pytest.approx(2.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (5, 1), (3, 2, 5, 3), (1, 1)])
def test_approx_r1_penalty_matches_reference(backend, dtype, shape):
    """Value and both input gradients against the fp64 formula, a random grad_output, and the
    operator that ran."""
    sigma, gamma = 0.05, 7.5
    base = torch.randn(shape, dtype=torch.float64)
    pert64 = base + sigma * torch.randn(shape, dtype=torch.float64)
    lx = base.to(dtype).to(DEVICE, copy=True).requires_grad_(True)
    px = pert64.to(dtype).to(DEVICE, copy=True).requires_grad_(True)
    go = torch.rand((), dtype=torch.float64) + 0.5
    ops = ran_ops(lambda: fg.approx_r1_penalty(lx, px, sigma=sigma, gamma=gamma, backend=backend))
    assert ops == kernel_of(backend)
    out = fg.approx_r1_penalty(lx, px, sigma=sigma, gamma=gamma, backend=backend)
    assert backends.last_used() == backend
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    gl, gp = torch.autograd.grad(out, (lx, px), go.to(out.dtype))
    assert gl.dtype == dtype and gp.dtype == dtype
    l64 = lx.detach().double().requires_grad_(True)
    p64 = px.detach().double().requires_grad_(True)
    ref = ref_approx_r1(l64, p64, sigma, gamma)
    rl, rp = torch.autograd.grad(ref, (l64, p64), go)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    scale = float(rp.abs().max()) + 1e-30
    torch.testing.assert_close(gp.double(), rp, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(gl.double(), rl, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(gl.double(), -gp.double(), rtol=0, atol=0)  # d/dl = -d/dp exactly


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_r1_penalty_gradcheck(backend):
    l64 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    p64 = (l64.detach() + 0.1 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_(True)

    def fn(a, b):
        return fg.approx_r1_penalty(a, b, sigma=0.1, gamma=3.0, backend=backend)

    torch.autograd.gradcheck(fn, (l64, p64))
    torch.autograd.gradgradcheck(fn, (l64, p64))


@pytest.mark.parametrize("backend", fused_backends())
def test_approx_r1_penalty_opcheck(backend):
    """opcheck of the exact operator call approx_r1_penalty makes (no new operator)."""
    a = torch.randn(6, 2, dtype=torch.float32, requires_grad=True)
    b = torch.randn(6, 2, dtype=torch.float32, requires_grad=True)
    args = ([b], [a], [None], [0], [int(RelLogit.R_MINUS_F)], [int(Elem.HALF_SQUARE)], [0.0],
            [10.0 / (6 * 0.01 ** 2)], int(Reduction.SUM), False, backend == "triton")
    torch.library.opcheck(torch.ops.fusedgan.rel_gan_loss.default, args)


def test_approx_r1_penalty_empty_and_extreme():
    # an empty batch: the mean over no samples is NaN, as torch's mean; zero features: 0
    e = torch.zeros(0, 3)
    assert math.isnan(float(fg.approx_r1_penalty(e, e, sigma=0.1)))
    z = torch.zeros(4, 0)
    assert float(fg.approx_r1_penalty(z, z, sigma=0.1)) == 0.0
    # equal logits: zero penalty, zero gradient
    x = torch.randn(5, requires_grad=True)
    out = fg.approx_r1_penalty(x, x, sigma=0.01)
    out.backward()
    assert float(out.detach()) == 0.0 and float(x.grad.abs().max()) == 0.0
    # non-contiguous inputs
    a = torch.randn(6, 4)[:, ::2]
    b = torch.randn(4, 6).t()[:, ::2]
    torch.testing.assert_close(fg.approx_r1_penalty(a, b, sigma=0.3).double(),
                               ref_approx_r1(a, b, 0.3, 10.0), rtol=1e-5, atol=0)


def test_approx_r1_penalty_compile_fullgraph():
    fn = torch.compile(lambda a, b: fg.approx_r1_penalty(a, b, sigma=0.1, gamma=4.0), fullgraph=True,
                       backend="aot_eager")
    a = torch.randn(8, 1, requires_grad=True)
    b = torch.randn(8, 1, requires_grad=True)
    out = fn(a, b)
    out.backward()
    torch.testing.assert_close(out.double(), ref_approx_r1(a, b, 0.1, 4.0), rtol=1e-5, atol=0)
    torch.testing.assert_close(b.grad, 4.0 * (b - a).detach() / 8 / 0.01, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_r1_step_compile_fullgraph_inductor(backend):
    """A D step with approx_r1 under torch.compile(fullgraph=True) (inductor): the same loss and
    parameter gradients as eager."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    real = torch.randn(32, 2)
    eps = torch.randn(32, 2)

    def step(x, e):
        logits = D(x)
        return fg.approx_r1_penalty(logits, D(x + 0.01 * e), sigma=0.01, gamma=10.0, backend=backend)

    want = step(real, eps)
    gw = torch.autograd.grad(want, list(D.parameters()))
    got = torch.compile(step, fullgraph=True)(real, eps)
    gg = torch.autograd.grad(got, list(D.parameters()))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for a, b in zip(gg, gw):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("bad, kwargs, exc, name", [
    (lambda: (torch.zeros(3, dtype=torch.int64), torch.zeros(3)), {}, TypeError, "logits"),
    (lambda: (torch.zeros(3), torch.zeros(3, dtype=torch.int32)), {}, TypeError, "perturbed_logits"),
    (lambda: (torch.zeros(3), torch.zeros(3, dtype=torch.complex64)), {}, TypeError, "perturbed_logits"),
    (lambda: ([0.0], torch.zeros(3)), {}, TypeError, "logits"),
    (lambda: (torch.zeros(3), torch.zeros(4)), {}, ValueError, "perturbed_logits"),
    (lambda: (torch.zeros(()), torch.zeros(())), {}, ValueError, "logits"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": 0.0}, ValueError, "sigma"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": -1.0}, ValueError, "sigma"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": math.nan}, ValueError, "sigma"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": 1e-300}, ValueError, "sigma"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": "0.1"}, TypeError, "sigma"),
    (lambda: (torch.zeros(3), torch.zeros(3)), {"sigma": 0.1, "gamma": -1.0}, ValueError, "gamma"),
])
def test_approx_r1_penalty_bad_input(bad, kwargs, exc, name):
    a, b = bad()
    kw = {"sigma": 0.1, **kwargs}
    with pytest.raises(exc, match=f"^{name}:"):
        fg.approx_r1_penalty(a, b, **kw)


# ---------------------------------------------------------------------------------------------
# approx_r1 / approx_r2 wrappers


class _Quadratic(nn.Module):
    """D(x) = 0.5 * sum(w * x^2): grad_x D = w * x, so R1 is known in closed form."""

    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.rand(dim, dtype=torch.float64) + 0.5)

    def forward(self, x):
        return 0.5 * (self.w * x.square()).sum(1, keepdim=True)


def test_approx_r1_estimates_exact_r1():
    """On a smooth D the finite-difference estimate averages to the exact R1 (first order in
    sigma): 400 noise draws, sigma small; and fg.r1 agrees with the closed form."""
    torch.manual_seed(0)
    D = _Quadratic(6)
    real = torch.randn(32, 6, dtype=torch.float64)
    exact = 5.0 * (D.w.detach() * real).square().sum(1).mean()
    torch.testing.assert_close(fg.r1(D, real, gamma=10.0).double(), exact, rtol=1e-10, atol=0)
    gen = torch.Generator().manual_seed(1)
    est = torch.stack([fg.approx_r1(D, real, sigma=1e-4, gamma=10.0, generator=gen).detach()
                       for _ in range(400)]).mean()
    assert abs(float(est) / float(exact) - 1) < 0.05


def test_approx_r1_wrapper_noise_logits_and_gradients():
    D = _Quadratic(3)
    real = torch.randn(5, 3, dtype=torch.float64)
    sigma = 0.02
    eps = torch.randn(real.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    want = ref_approx_r1(D(real), D(real + sigma * eps), sigma, 3.0)
    got = fg.approx_r1(D, real, sigma=sigma, gamma=3.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, want)
    # logits= reuses D(real) (its graph too): one extra forward only
    calls = []
    D.register_forward_hook(lambda *a: calls.append(1))
    logits = D(real)
    calls.clear()
    out = fg.approx_r2(D, real, sigma=sigma, gamma=3.0, logits=logits,
                       generator=torch.Generator().manual_seed(7))
    assert len(calls) == 1
    torch.testing.assert_close(out, want)
    (gw,) = torch.autograd.grad(out, D.w)
    (rw,) = torch.autograd.grad(want, D.w)
    torch.testing.assert_close(gw, rw)
    # D returning a tuple: the first element
    tup = fg.approx_r1(lambda x: (D(x), None), real, sigma=sigma, gamma=3.0,
                       generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(tup, want)
    with pytest.raises(TypeError, match="^generator:"):
        fg.approx_r1(D, real, generator=3)
    with pytest.raises(TypeError, match="^real:"):
        fg.approx_r1(D, real.long())
    with pytest.raises(TypeError, match="^fake:"):
        fg.approx_r2(D, [1.0])
    with pytest.raises(ValueError, match="^sigma:"):
        fg.approx_r1(D, real, sigma=0)
    with pytest.raises(TypeError, match="^logits:"):
        fg.approx_r1(D, real, logits=[1.0])


# ---------------------------------------------------------------------------------------------
# cosine_decay


def test_cosine_decay_hand_values():
    cd = fg.cosine_decay
    assert cd(0, total_steps=100, start=150, end=15) == 150.0
    assert cd(50, total_steps=100, start=150, end=15) == pytest.approx(82.5)
    assert cd(25, total_steps=100, start=150, end=15) == pytest.approx(15 + 135 * (1 + math.sqrt(0.5)) / 2)
    assert cd(100, total_steps=100, start=150, end=15) == 15.0
    assert cd(10 ** 6, total_steps=100, start=150, end=15) == 15.0
    # warmup: linear from end to start, then the cosine over the remaining steps
    assert cd(0, total_steps=110, start=150, end=15, warmup_steps=10) == 15.0
    assert cd(5, total_steps=110, start=150, end=15, warmup_steps=10) == pytest.approx(82.5)
    assert cd(10, total_steps=110, start=150, end=15, warmup_steps=10) == 150.0
    assert cd(60, total_steps=110, start=150, end=15, warmup_steps=10) == pytest.approx(82.5)
    assert cd(110, total_steps=110, start=150, end=15, warmup_steps=10) == 15.0
    # an increasing schedule, total 0, warmup == total
    assert cd(1, total_steps=4, start=0.0, end=1.0) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    assert cd(0, total_steps=0, start=3.0, end=1.0) == 1.0
    assert cd(3, total_steps=4, start=3.0, end=1.0, warmup_steps=4) == pytest.approx(2.5)
    assert cd(4, total_steps=4, start=3.0, end=1.0, warmup_steps=4) == 1.0
    assert type(cd(3, total_steps=10, start=1, end=0)) is float
    vals = [cd(s, total_steps=50, start=2.0, end=1.0) for s in range(51)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"step": -1}, ValueError, "step"),
    ({"step": 1.5}, TypeError, "step"),
    ({"step": torch.tensor(1)}, TypeError, "step"),
    ({"total_steps": -1}, ValueError, "total_steps"),
    ({"warmup_steps": 20}, ValueError, "warmup_steps"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"start": math.inf}, ValueError, "start"),
    ({"end": "x"}, TypeError, "end"),
])
def test_cosine_decay_bad_input(kwargs, exc, name):
    kw = {"step": 0, "total_steps": 10, "start": 1.0, "end": 0.1, **kwargs}
    step = kw.pop("step")
    with pytest.raises(exc, match=f"^{name}:"):
        fg.cosine_decay(step, **kw)


# ---------------------------------------------------------------------------------------------
# LeCam


LECAM_KERNEL = {"cpu": ["fusedgan::loss_terms_stats"], "cuda": ["fusedgan::loss_terms_stats"],
                "triton": ["fusedgan::triton_loss_terms_stats"], "reference": []}


def lecam_ops(fn):
    """(fn(), the fusedgan operators below autograd that ran, in order, each call listed)."""
    with OpRecorder() as rec:
        out = fn()
    return out, list(rec.names)


def test_lecam_hand_values_and_ema():
    reg = fg.LeCamRegularizer(decay=0.5)
    assert reg.ema_real.dtype == torch.float32 and float(reg.ema_real) == 0 and float(reg.ema_fake) == 0
    assert set(reg.state_dict()) == {"ema_real", "ema_fake"}
    r = torch.tensor([1.0, -1.0, 3.0])
    f = torch.tensor([-2.0, 0.5])
    # emas 0: mean(relu(r)^2) = (1 + 9) / 3; mean(relu(-f)^2) = 4 / 2
    assert float(reg(r, f)) == pytest.approx(10 / 3 + 2)
    assert float(reg.ema_real) == pytest.approx(0.5 * 1.0)  # mean r = 1
    assert float(reg.ema_fake) == pytest.approx(0.5 * -0.75)
    # the second call uses the averages from before it: ema_real 0.5, ema_fake -0.375
    want = (torch.relu(r + 0.375).square().mean() + torch.relu(0.5 - f).square().mean())
    assert float(reg(r, f)) == pytest.approx(float(want))
    assert float(reg.ema_real) == pytest.approx(0.75)
    # eval mode reads and does not update
    reg.eval()
    reg(r * 10, f * 10)
    assert float(reg.ema_real) == pytest.approx(0.75)


def check_lecam_by_hand(backend, device="cpu"):
    """r = [1, 3], f = [0, -2], ema_real = 0.5, ema_fake = 2, decay 0.9, by hand:
    relu(r - 2)^2 = [0, 1] (mean 0.5); relu(0.5 - f)^2 = [0.25, 6.25] (mean 3.25): 3.75.
    d/dr = 2 relu(r - 2) / 2 = [0, 1]; d/df = -2 relu(0.5 - f) / 2 = [-0.5, -2.5].
    Means 2 and -1: ema_real = 0.9 * 0.5 + 0.1 * 2 = 0.65, ema_fake = 0.9 * 2 + 0.1 * -1 = 1.7."""
    reg = fg.LeCamRegularizer(decay=0.9).to(device)
    reg.ema_real.fill_(0.5)
    reg.ema_fake.fill_(2.0)
    r = torch.tensor([1.0, 3.0], device=device, requires_grad=True)
    f = torch.tensor([0.0, -2.0], device=device, requires_grad=True)
    out, ran = lecam_ops(lambda: reg(r, f, backend=backend))
    assert ran == LECAM_KERNEL[backend], ran  # one fused call: both terms and both sums
    assert backends.last_used() == backend
    assert out.dtype == torch.float32 and float(out.detach()) == pytest.approx(3.75, rel=1e-6)
    gr, gf = torch.autograd.grad(out, (r, f))
    assert gr.tolist() == pytest.approx([0.0, 1.0]) and gf.tolist() == pytest.approx([-0.5, -2.5])
    assert float(reg.ema_real) == pytest.approx(0.65, rel=1e-6)
    assert float(reg.ema_fake) == pytest.approx(1.7, rel=1e-6)
    assert not reg.ema_real.requires_grad and not reg.ema_fake.requires_grad
    # eval: the same pass without the sums (loss_terms), the averages only read
    reg.eval()
    out, ran = lecam_ops(lambda: reg(r, f, backend=backend))
    assert ran == [k.replace("_stats", "") for k in LECAM_KERNEL[backend]], ran
    want = 0.5 * (1.3 ** 2) + 0.5 * ((0.65 ** 2) + (2.65 ** 2))  # relu(r - 1.7)^2, relu(0.65 - f)^2
    assert float(out.detach()) == pytest.approx(want, rel=1e-6)
    assert float(reg.ema_real) == pytest.approx(0.65, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lecam_hand_values_every_backend(backend):
    check_lecam_by_hand(backend, DEVICE)


def check_lecam_matches_reference(backend, dtype, device="cpu"):
    """Three steps against the old plain-torch formula in fp64 (averages from before each
    batch) and the EMA recursion; a random grad_output; mixed shapes."""
    reg = fg.LeCamRegularizer(decay=0.9).to(device)
    ema_r, ema_f = torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for step in range(3):
        r = (torch.randn(16, 1, dtype=torch.float64) + 0.5).to(dtype).to(device).requires_grad_(True)
        f = (torch.randn(3, 3, dtype=torch.float64) - 1).to(dtype).to(device).requires_grad_(True)
        before = reg.ema_real.double().cpu().clone(), reg.ema_fake.double().cpu().clone()  # float32 buffers
        torch.testing.assert_close(before[0], ema_r, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(before[1], ema_f, rtol=1e-5, atol=1e-6)
        out = reg(r, f, backend=backend)
        assert backends.last_used() == backend
        assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        r64 = r.detach().double().cpu().requires_grad_(True)
        f64 = f.detach().double().cpu().requires_grad_(True)
        ref = ref_lecam(r64, f64, *before)
        go = torch.rand(()) + 0.5
        g = torch.autograd.grad(out, (r, f), go.to(out.dtype).to(device))
        rg = torch.autograd.grad(ref, (r64, f64), go.double())
        tol = TOL[dtype]
        torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
        for a, b in zip(g, rg):
            assert a.dtype == dtype
            torch.testing.assert_close(a.double().cpu(), b, rtol=tol, atol=tol)
        ema_r = 0.9 * ema_r + 0.1 * r64.detach().mean()
        ema_f = 0.9 * ema_f + 0.1 * f64.detach().mean()
        assert reg.ema_real.dtype == torch.float32 and reg.ema_fake.dtype == torch.float32
        torch.testing.assert_close(reg.ema_real.double().cpu(), ema_r, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(reg.ema_fake.double().cpu(), ema_f, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lecam_matches_reference(backend, dtype):
    check_lecam_matches_reference(backend, dtype, DEVICE)


def test_lecam_mixed_dtypes_and_noncontiguous():
    reg = fg.LeCamRegularizer(decay=0.5)
    r = torch.randn(6, 4, dtype=torch.float64)[:, ::2].to(torch.bfloat16).requires_grad_(True)
    f = torch.randn(5, 2).t().requires_grad_(True)  # float32, non-contiguous
    out = reg(r, f)
    assert out.dtype == torch.float32
    gr, gf = torch.autograd.grad(out, (r, f))
    assert gr.dtype == torch.bfloat16 and gf.dtype == torch.float32
    r64, f64 = r.detach().double().requires_grad_(True), f.detach().double().requires_grad_(True)
    ref = ref_lecam(r64, f64, torch.tensor(0.0), torch.tensor(0.0))
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    for a, b in zip((gr, gf), torch.autograd.grad(ref, (r64, f64))):
        torch.testing.assert_close(a.double(), b, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(reg.ema_real.double(), 0.5 * r64.detach().mean(), rtol=1e-5, atol=1e-6)


INF, NAN = math.inf, math.nan
SPECIAL_X = [NAN, INF, -INF, 0.0, 1.0, -1.0, 2.5, 1e30, -1e30, 0.5]
SPECIAL_T = [0.5, 0.0, INF, -INF, NAN]


def check_sq_relu_like_torch(backend, device="cpu"):
    """Elements SQ_RELU_ABOVE / SQ_RELU_BELOW at NaN and +-inf logits and thresholds: value and
    gradient as torch's ``relu(x - t).square()`` / ``relu(t - x).square()`` (autograd, same dtype),
    bit for bit in the NaN/inf pattern; thresholds as one element (LeCam's case) and per element."""
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(SPECIAL_X, dtype=dtype)
        for elem, formula in ((Elem.SQ_RELU_ABOVE, lambda a, t: torch.relu(a - t).square()),
                              (Elem.SQ_RELU_BELOW, lambda a, t: torch.relu(t - a).square())):
            labels = [torch.tensor([t], dtype=dtype) for t in SPECIAL_T] + [x.flip(0)]
            for lab in labels:
                xd = x.to(device, copy=True).requires_grad_(True)
                args = ([xd], [lab.to(device)], [None], [int(elem)], [0.0], [1.0], int(Reduction.NONE), False)
                (v,) = fg.plan.run("gan_loss", args, xd.device, backend)[:1]
                (g,) = torch.autograd.grad(v, xd, torch.ones_like(v))
                xt = x.clone().requires_grad_(True)  # torch in the same dtype (1e30^2 is inf in fp32)
                want = formula(xt, lab.expand(x.shape))
                (wg,) = torch.autograd.grad(want, xt, torch.ones_like(want))
                want, wg = want.double(), wg.double()
                what = f"{elem.name} {dtype} t={lab.tolist()}"
                for got, ref in ((v, want), (g, wg)):
                    got = got.detach().double().cpu()
                    assert torch.equal(torch.isnan(got), torch.isnan(ref)), f"{what}: NaN pattern {got} vs {ref}"
                    fin = ~torch.isnan(ref)
                    torch.testing.assert_close(got[fin], ref.detach()[fin], rtol=1e-6, atol=0.0, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sq_relu_nan_inf_like_torch(backend):
    check_sq_relu_like_torch(backend, DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lecam_gradcheck(backend):
    reg = fg.LeCamRegularizer(decay=0.9).to(DEVICE).eval()  # eval: gradcheck calls it many times
    reg.ema_real.fill_(0.3)
    reg.ema_fake.fill_(-0.2)
    r = torch.randn(7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    f = torch.randn(5, dtype=torch.float64, device=DEVICE, requires_grad=True)

    def fn(a, b):
        return reg(a, b, backend=backend)

    torch.autograd.gradcheck(fn, (r, f))
    torch.autograd.gradgradcheck(fn, (r, f))


def test_lecam_compile_state_dict():
    # fullgraph compile, training mode: value, gradients and buffer updates as eager
    eager, comp = fg.LeCamRegularizer(0.8), fg.LeCamRegularizer(0.8)
    cfn = torch.compile(comp, fullgraph=True, backend="aot_eager")
    for step in range(2):
        a, b = torch.randn(8), torch.randn(3, 4)
        ac, bc = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        ae, be = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out_c = cfn(ac, bc)  # (a dispatch mode would stop dynamo: the profiler records instead)
        kernels = [e.name for e in prof.events() if e.name.startswith("fusedgan::loss_terms")]
        if step == 1 and "cpu" in BACKENDS:  # (step 0 compiles: fake calls are recorded too)
            assert kernels == ["fusedgan::loss_terms_stats"], kernels  # the compiled graph runs the fused op
        out_e = eager(ae, be)
        torch.testing.assert_close(out_c, out_e)
        for x, y in zip(torch.autograd.grad(out_c, (ac, bc)), torch.autograd.grad(out_e, (ae, be))):
            torch.testing.assert_close(x, y)
    torch.testing.assert_close(comp.ema_real, eager.ema_real)
    torch.testing.assert_close(comp.ema_fake, eager.ema_fake)
    assert float(comp.ema_real) != 0.0
    fresh = fg.LeCamRegularizer()
    fresh.load_state_dict(eager.state_dict())
    assert float(fresh.ema_fake) == float(eager.ema_fake)


@pytest.mark.parametrize("decay", [-0.1, 1.5, math.nan])
def test_lecam_bad_decay(decay):
    with pytest.raises(ValueError, match="^decay:"):
        fg.LeCamRegularizer(decay)


def test_lecam_bad_input():
    reg = fg.LeCamRegularizer()
    with pytest.raises(TypeError, match="^real_logits:"):
        reg(torch.zeros(3, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(TypeError, match="^fake_logits:"):
        reg(torch.zeros(3), [0.0])
    with pytest.raises(ValueError, match="^fake_logits:"):
        reg(torch.zeros(3), torch.zeros(0))
    with pytest.raises(TypeError, match="^decay:"):
        fg.LeCamRegularizer("0.9")
    with pytest.raises(ValueError, match="^backend:"):
        reg(torch.zeros(3), torch.zeros(2), backend="nope")
    with pytest.raises(ValueError, match="^real_logits:"):  # buffers on another device
        reg(torch.zeros(3, device="meta"), torch.zeros(2, device="meta"))
    with pytest.raises(ValueError, match="^fake_logits:"):
        reg(torch.zeros(3), torch.zeros(2, device="meta"))
    assert float(reg.ema_real) == 0.0 and float(reg.ema_fake) == 0.0  # no failed call touched them


# ---------------------------------------------------------------------------------------------
# Path length


def test_path_length_hand_values():
    pl = fg.PathLengthRegularizer(decay=0.5)
    assert set(pl.state_dict()) == {"pl_mean"} and pl.pl_mean.dtype == torch.float32
    # [B=2, num_ws=2, w_dim=2]: sample 0 rows (3, 4), (0, 0): length sqrt((25 + 0) / 2);
    # sample 1 rows (1, 0) twice: length 1
    g = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    l0, l1 = math.sqrt(12.5), 1.0
    m = 0.5 * (l0 + l1) / 2
    assert float(pl(g)) == pytest.approx(((l0 - m) ** 2 + (l1 - m) ** 2) / 2)
    assert float(pl.pl_mean) == pytest.approx(m, rel=1e-6)
    # [B, w_dim]: the length is the norm
    pl2 = fg.PathLengthRegularizer(decay=1.0)  # m = the batch mean
    v = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert float(pl2(v)) == pytest.approx(((5 - 3) ** 2 + (1 - 3) ** 2) / 2)
    assert float(pl2.pl_mean) == pytest.approx(3.0)
    pl2.eval()
    pl2(v * 3)
    assert float(pl2.pl_mean) == pytest.approx(3.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4, 8), (5, 7), (1, 3, 2)])
def test_path_length_matches_reference(backend, dtype, shape):
    """Value, gradient (through the moving mean's batch mean too) and the buffer against the
    StyleGAN2-ADA formula in fp64, over two steps; the per-sample sums run in gan_penalty."""
    decay = 0.3
    pl = fg.PathLengthRegularizer(decay)
    mean64 = torch.tensor(0.0, dtype=torch.float64)
    for _ in range(2):
        g = (torch.randn(shape, dtype=torch.float64) * 2).to(dtype).requires_grad_(True)
        ops = ran_ops(lambda: pl.lengths(g, backend))
        want_ops = set() if backend == "reference" else {
            "fusedgan::gan_penalty", "fusedgan::triton_group_penalty" if backend == "triton"
            else "fusedgan::group_penalty"}
        assert ops == want_ops
        before = pl.pl_mean.double().clone()  # a float32 buffer
        torch.testing.assert_close(before, mean64, rtol=1e-5, atol=1e-6)
        out = pl(g, backend=backend)
        assert backends.last_used() == backend
        g64 = g.detach().double().requires_grad_(True)
        ref, m = ref_path_length(g64, before, decay)
        go = torch.rand(()) + 0.5
        (gg,) = torch.autograd.grad(out, g, go.to(out.dtype))
        (rg,) = torch.autograd.grad(ref, g64, go.double())
        tol = TOL[dtype]
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
        torch.testing.assert_close(gg.double(), rg, rtol=tol, atol=tol * float(rg.abs().max()))
        torch.testing.assert_close(pl.pl_mean.double(), m, rtol=max(tol, 1e-6), atol=1e-6)
        mean64 = m


@pytest.mark.parametrize("backend", BACKENDS)
def test_path_length_gradcheck(backend):
    pl = fg.PathLengthRegularizer(0.2).eval()
    pl.pl_mean.fill_(0.7)
    g = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: pl(x, backend=backend), (g,))
    torch.autograd.gradgradcheck(lambda x: pl(x, backend=backend), (g,))


def test_path_length_zero_gradient_finite_and_compile():
    pl = fg.PathLengthRegularizer(0.5)
    g = torch.zeros(2, 3, 4, requires_grad=True)
    out = pl(g)
    (grad,) = torch.autograd.grad(out, g)
    assert float(out.detach()) == 0.0 and torch.isfinite(grad).all()
    eager, comp = fg.PathLengthRegularizer(0.5), fg.PathLengthRegularizer(0.5)
    cfn = torch.compile(comp, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 5)
    torch.testing.assert_close(cfn(x), eager(x))
    torch.testing.assert_close(comp.pl_mean, eager.pl_mean)


def test_path_length_bad_input_and_noise():
    pl = fg.PathLengthRegularizer()
    with pytest.raises(TypeError, match="^grad_ws:"):
        pl(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="^grad_ws:"):
        pl(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="^grad_ws:"):
        pl(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="^decay:"):
        fg.PathLengthRegularizer(-0.01)
    with pytest.raises(ValueError, match="^decay:"):
        fg.PathLengthRegularizer(1.01)
    img = torch.zeros(2, 3, 4, 8, dtype=torch.float64)
    n = fg.path_length_noise(img, generator=torch.Generator().manual_seed(3))
    want = torch.randn(img.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / math.sqrt(32)
    torch.testing.assert_close(n, want, rtol=0, atol=0)
    assert fg.path_length_noise(img).shape == img.shape
    for dtype in DTYPES:
        assert fg.path_length_noise(img.to(dtype)).dtype == dtype
    with pytest.raises(ValueError, match="^images:"):
        fg.path_length_noise(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="^images:"):
        fg.path_length_noise(torch.zeros(2, 3, 4, 4, dtype=torch.int32))


def test_path_length_end_to_end_grad_ws():
    """pl(grad_ws) with grad_ws from a tiny synthesis net: the documented usage."""
    torch.manual_seed(0)
    synth = nn.Linear(4, 2 * 3 * 3)
    ws = torch.randn(5, 2, 4, requires_grad=True)
    images = synth(ws).sum(1).view(5, 2, 3, 3)
    noise = fg.path_length_noise(images)
    (gws,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    loss = fg.PathLengthRegularizer()(gws)
    loss.backward()
    assert synth.weight.grad is not None and torch.isfinite(synth.weight.grad).all()


# ---------------------------------------------------------------------------------------------
# Adaptive weight


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_gan_weight(dtype):
    W = nn.Parameter(torch.randn(3, 4, dtype=torch.float64).to(dtype))
    x = torch.randn(4, dtype=torch.float64).to(dtype)
    rec = (W @ x).square().sum()
    g = -(W @ x).sum() * 0.01
    out = fg.adaptive_gan_weight(rec, g, W)
    assert not out.requires_grad and out.dim() == 0
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    W64 = W.detach().double()
    x64 = x.double()
    grec = 2 * torch.outer(W64 @ x64, x64)
    gg = -0.01 * torch.outer(torch.ones(3, dtype=torch.float64), x64)
    want = (grec.norm() / (gg.norm() + 1e-4)).clamp(0, 1e4)
    torch.testing.assert_close(out.double(), want, rtol=TOL[dtype] * 10, atol=0)
    # the graphs are kept: the losses can still be backpropagated
    (rec + g).backward()
    assert W.grad is not None


def test_adaptive_gan_weight_hand_value_and_clamp():
    W = nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (3 * W).sum()  # grad (3, 3): norm 3 sqrt 2
    g = (4 * W[0])  # grad (4, 0): norm 4
    assert float(fg.adaptive_gan_weight(rec, g, W, eps=0.5)) == pytest.approx(3 * math.sqrt(2) / 4.5)
    assert float(fg.adaptive_gan_weight(rec, g * 0 + W.detach().sum() * 0 + 0 * W.sum(), W,
                                        max_weight=7.0)) == 7.0  # g's gradient is 0: clamped
    with pytest.raises(ValueError, match="^g_loss:"):
        fg.adaptive_gan_weight(rec, (3 * W).detach().sum(), W)
    with pytest.raises(ValueError, match="^g_loss:"):
        fg.adaptive_gan_weight(rec, nn.Parameter(torch.tensor(1.0)) * 2, W)
    with pytest.raises(ValueError, match="^rec_loss:"):
        fg.adaptive_gan_weight(3 * W, g, W)
    with pytest.raises(TypeError, match="^rec_loss:"):
        fg.adaptive_gan_weight(torch.tensor(1), g, W)
    with pytest.raises(ValueError, match="^eps:"):
        fg.adaptive_gan_weight(rec, g, W, eps=0)
    with pytest.raises(ValueError, match="^max_weight:"):
        fg.adaptive_gan_weight(rec, g, W, max_weight=-1)
    with pytest.raises(ValueError, match="^last_layer_weight:"):
        fg.adaptive_gan_weight(rec, g, W.detach())


def test_exports():
    for name in regularizers.__all__:
        assert getattr(fg, name) is getattr(regularizers, name)
        assert name in fg.__all__


# ---------------------------------------------------------------------------------------------
# The demo's recipes (the full-length runs and their mode counts are in docs/penalties.md)


@pytest.mark.parametrize("loss", ["r3gan", "approx-r1"])
def test_demo_recipes_run_and_compare_with_exact_r1(tmp_path, loss):
    import json

    from fusedgan import cli

    out = tmp_path / loss
    argv = ["demo", "--loss", loss, "--steps", "8", "--batch-size", "32", "--hidden", "16", "--no-progress",
            "--compare", "--out", str(out)]
    assert cli.main(argv) == 0
    with open(out / "demo.json") as fh:
        s = json.load(fh)
    pen = s["loss_curves"]["penalty"]
    assert len(pen) == 8 and all(v == v and v >= 0 for v in pen) and max(pen) > 0
    cmp = s["compare"]
    assert cmp["exact_r1_ms_per_step"] > 0 and cmp["ms_per_step"] > 0
    assert cmp["exact_r1_metrics"]["modes"] == 8


def test_demo_r3gan_penalty_is_r1_plus_r2_with_cosine_gamma():
    from fusedgan import demo

    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    gen = torch.Generator()
    for step, gamma in ((0, 1.0), (50, 0.55), (100, 0.1)):
        got = demo.penalty("r3gan", D, real, fake, 0.1, gen, step=step, steps=100)
        want = fg.r1(D, real, gamma=gamma) + fg.r2(D, fake, gamma=gamma)
        torch.testing.assert_close(got, want)
