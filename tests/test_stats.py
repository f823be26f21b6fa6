"""return_stats=True: training statistics from the loss pass (the loss_terms_stats operator)."""
from __future__ import annotations

import math

import pytest
import torch

import fusedgan as fg
from fusedgan import backends, ops, reference
from fusedgan.functional import STAT_KEYS
from fusedgan.kinds import Elem
from helpers import fused_backends, logits, ran_ops

BACKENDS = fused_backends() + ["reference"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def oracle(kind, reals, fakes):
    """The statistics written plainly in fp64 (for relativistic kinds: of the relativistic logits)."""
    reals = [r.double() for r in reals]
    fakes = [f.double() for f in fakes]
    if kind == "rsgan":
        reals, fakes = [r - f for r, f in zip(reals, fakes)], [f - r for r, f in zip(reals, fakes)]
    elif kind in fg.kinds.RELATIVISTIC:
        reals, fakes = [r - f.mean() for r, f in zip(reals, fakes)], [f - r.mean() for r, f in zip(reals, fakes)]
    r, f = torch.cat([x.reshape(-1) for x in reals]), torch.cat([x.reshape(-1) for x in fakes])
    logistic = kind in ("ns", "mm", "rsgan", "ragan")
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return {
        "mean_real_logit": r.mean(),
        "mean_fake_logit": f.mean(),
        "mean_real_prob": torch.sigmoid(r).mean() if logistic else nan,
        "mean_fake_prob": torch.sigmoid(f).mean() if logistic else nan,
        "frac_real_positive": (r > 0).double().mean(),
        "frac_fake_negative": (f < 0).double().mean(),
        "abs_real": r.abs().mean(),
        "abs_fake": f.abs().mean(),
    }


def check(backend, kind, dtype, rs, fs, multi=False, extreme=False):
    reals = [logits(s, torch.float64, seed=3 + i, extreme=extreme).to(dtype).requires_grad_(True) for i, s in enumerate(rs)]
    fakes = [logits(s, torch.float64, seed=13 + i, extreme=extreme).to(dtype).requires_grad_(True) for i, s in enumerate(fs)]
    r_arg, f_arg = (reals, fakes) if multi else (reals[0], fakes[0])
    loss, _, stats = fg.discriminator_loss(r_arg, f_arg, kind, return_stats=True, backend=backend)
    assert backends.last_used() == backend
    plain = fg.discriminator_loss(r_arg, f_arg, kind, backend=backend)
    torch.testing.assert_close(loss, plain)  # the same loss as without statistics
    assert set(stats) == set(STAT_KEYS)
    want = oracle(kind, [r.detach() for r in reals], [f.detach() for f in fakes])
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for k in STAT_KEYS:
        v = stats[k]
        assert v.dim() == 0 and v.dtype == acc and not v.requires_grad, k
        # the sums run in the acc dtype: error relative to the mean magnitude of what was summed
        mag = want["abs_" + k.split("_")[1]] if "logit" in k else torch.tensor(1.0)
        tol = (1e-12 if dtype == torch.float64 else 4e-6) * (1 + float(mag))
        if kind in fg.kinds.RELATIVISTIC and dtype != torch.float64:
            tol *= 4
        torch.testing.assert_close(v.double(), want[k], rtol=0, atol=tol, equal_nan=True, msg=k)
    loss.backward()  # stats do not get in the way of the gradient
    assert all(x.grad is not None for x in reals + fakes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ns", "mm", "ls", "wgan", "hinge"])
def test_stats(kind, dtype, backend):
    check(backend, kind, dtype, [(3, 1, 7, 5)], [(2, 1, 7, 5)])
    check(backend, kind, dtype, [(40000,)], [(33,)], extreme=True)  # several CPU chunks, saturation


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["rsgan", "ragan", "ralsgan", "rahinge"])
def test_stats_relativistic(kind, backend):
    check(backend, kind, torch.float32, [(4, 9)], [(4, 9)])
    check(backend, kind, torch.float64, [(4, 9), (5,)], [(4, 9), (5,)], multi=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_multiscale_and_per_scale(backend):
    check(backend, "ns", torch.float32, [(2, 1, 9, 9), (2, 1, 4, 4), (1,)], [(2, 1, 9, 9), (3, 1, 4, 4), (1,)], multi=True)
    r, f = [torch.randn(5), torch.randn(3)], [torch.randn(5), torch.randn(3)]
    loss, per, stats = fg.discriminator_loss(r, f, return_per_scale=True, return_stats=True, backend=backend)
    torch.testing.assert_close(per.sum(), loss)
    assert set(stats) == set(STAT_KEYS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_empty_and_non_contiguous(backend):
    r = torch.randn(6, 10).t()
    f = torch.empty(0)
    loss, _, stats = fg.discriminator_loss(r, f, return_stats=True, backend=backend)
    assert torch.isnan(stats["mean_fake_logit"]) and torch.isnan(stats["mean_fake_prob"])
    torch.testing.assert_close(stats["mean_real_logit"], r.mean())
    torch.testing.assert_close(stats["frac_real_positive"], (r > 0).float().mean())


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", ["ragan", "rsgan"])
def test_stats_relativistic_in_one_operator(kind, backend):
    """Relativistic statistics come from the rel_gan_loss call itself (the means, the shifted
    logits and the loss_terms_stats pass inside it), with no composition around it."""
    r, f = torch.randn(12, requires_grad=True), torch.randn(12, requires_grad=True)
    ops_ran = ran_ops(lambda: fg.discriminator_loss(r, f, kind, return_stats=True, backend=backend)[0].backward())
    prefix = "fusedgan::triton_" if backend == "triton" else "fusedgan::"
    want = {"fusedgan::rel_gan_loss", prefix + "loss_terms_stats"}
    if kind == "ragan":  # the means, by the loss kernel's fixed-order sum (same bits for any thread count)
        want.add(prefix + "loss_terms")
    assert ops_ran == want
    assert backends.last_used() == backend


@pytest.mark.parametrize("backend", fused_backends())
def test_stats_in_the_same_operator_call(backend):
    r, f = torch.randn(100, requires_grad=True), torch.randn(80, requires_grad=True)
    with torch.profiler.profile() as prof:
        loss, _, stats = fg.discriminator_loss(r, f, return_stats=True, backend=backend)
        loss.backward()
    names = [e.name for e in prof.events() if e.name.startswith("fusedgan::")]
    # the autograd operator, and inside it one kernel call (the backward multiplies saved gradients)
    assert names == ["fusedgan::gan_loss", "fusedgan::loss_terms_stats"]


def test_operator_contract_and_fake():
    """fusedgan::loss_terms_stats against its restatement in ops.py; opcheck (fake impl, schema)."""
    for dt in DTYPES:
        x0 = logits((37,), torch.float64, seed=1, extreme=True).to(dt)
        x1 = logits((3, 5), torch.float64, seed=2).to(dt)
        t0 = logits((37,), torch.float64, seed=3).to(dt)
        args = ([x0, x1], [t0, None], [None, None], [int(Elem.ABS), int(Elem.BCE)], [0.0, 1.0], [1.0, 0.5], 1, [True, False])
        got = torch.ops.fusedgan.loss_terms_stats(*args)
        want = ops.reference_loss_terms_stats(*[[a.double() if isinstance(a, torch.Tensor) else a for a in v] if isinstance(v, list) else v for v in args])
        assert got[4].shape == (2, reference.STAT_COLS) == (2, 4) and got[4].dtype == (torch.float64 if dt == torch.float64 else torch.float32)
        mag = 1 + float(x0.double().abs().sum())  # fp32 sums of +-1e4 logits
        torch.testing.assert_close(got[4].double(), want[4], rtol=1e-6, atol=1e-6 * mag)
        torch.testing.assert_close(got[1].double(), want[1], rtol=1e-6, atol=1e-5)
        torch.library.opcheck(torch.ops.fusedgan.loss_terms_stats, args,
                              test_utils=("test_schema", "test_faketensor"))


def test_bad_input():
    with pytest.raises(ValueError, match="^return_stats: "):
        fg.discriminator_loss(torch.randn(3), torch.randn(3), reduction="none", return_stats=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["ns", "hinge", "rsgan"])
def test_stats_exact_zeros_are_neither_positive_nor_negative(kind, backend):
    """An exact 0 logit counts in neither fraction (the kernels count x > 0 and x < 0 separately),
    in one chunk / program and across many."""
    for n in (6, 40000):
        r, f = torch.randn(n), torch.randn(n)
        r[::3] = 0.0
        f[1::2] = 0.0
        if n == 6:
            r, f = torch.tensor([0.0, 0.0, 1.5, -2.0, 0.0, 3.0]), torch.tensor([0.0, -1.0, 0.0, 2.0, 0.0, -0.5])
        _, _, stats = fg.discriminator_loss(r, f, kind, return_stats=True, backend=backend)
        assert backends.last_used() == backend
        want = oracle(kind, [r], [f])
        for k in ("frac_real_positive", "frac_fake_negative"):
            torch.testing.assert_close(stats[k].double(), want[k], rtol=0, atol=1e-7, msg=k)
        if n == 6 and kind == "ns":
            assert float(stats["frac_fake_negative"]) == pytest.approx(2 / 6)
