"""Smoke tests of the native fusedgan::loss_terms CPU operator against a float64 restatement of its
contract (csrc/ops.cpp).  Needs the extension built: `python setup.py build_ext --inplace`."""
import itertools
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
_C = pytest.importorskip("fusedgan._C", reason="fusedgan._C not built")

BCE, HALF_SQUARE, LINEAR, HINGE = range(4)
NONE, MEAN, SUM = range(3)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def op(*args):
    return torch.ops.fusedgan.loss_terms(*args)


# ---- the contract in float64 ---------------------------------------------------------------
def sp(z):
    return z.clamp_min(0) + torch.log1p(torch.exp(-z.abs()))


def ref_elem(elem, x, t):
    if elem == BCE:
        # sigmoid(x) - t without the cancellation of sigmoid(x) - 1 for large x
        return t * sp(-x) + (1 - t) * sp(x), (1 - t) * torch.sigmoid(x) - t * torch.sigmoid(-x)
    if elem == HALF_SQUARE:
        return 0.5 * (x - t) ** 2, x - t
    if elem == LINEAR:
        return -t * x, -t * torch.ones_like(x)
    m = 1 - t * x
    return m.clamp_min(0), torch.where(m > 0, -t, torch.zeros_like(x))


def ref_loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
    terms, grads, values = [], [], []
    for x, lab, w, e, lv, c, ng in zip(logits, labels, weights, elems, label_values, coefs, need_grad):
        xd = x.double().reshape(-1)
        t = (lab.double().reshape(-1).expand_as(xd) if lab is not None
             else torch.full_like(xd, lv))
        wd = w.double().reshape(-1).expand_as(xd) if w is not None else torch.ones_like(xd)
        v, g = ref_elem(e, xd, t)
        scale = (1.0 / xd.numel() if xd.numel() else float("nan")) if reduction == MEAN else 1.0
        terms.append(c * scale * (wd * v).sum() if xd.numel() or reduction != MEAN
                     else torch.tensor(float("nan"), dtype=torch.float64))
        grads.append((c * scale * wd * g).reshape(x.shape) if ng else None)
        values.append((c * wd * v).reshape(x.shape) if reduction == NONE else None)
    return torch.stack(terms), grads, values


# ---- helpers -------------------------------------------------------------------------------
def make(shape, dtype, noncontig, scale=4.0, gen=None):
    if noncontig:
        big = torch.randn(*shape, 2, generator=gen, dtype=torch.float64) * scale
        return big[..., 1].to(dtype)  # stride 2
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def operand(mode, x, lo, hi, gen):
    if mode == "arg":
        return None
    n = 1 if mode == "scalar" else x.numel()
    v = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    return v.to(x.dtype).reshape(x.shape if mode == "full" else (1,))


def tol(dtype):
    return {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]


def check(args, out):
    total, terms, grads, values = out
    logits, reduction, need_grad = args[0], args[6], args[7]
    acc = torch.float64 if logits[0].dtype == torch.float64 else torch.float32
    rterms, rgrads, rvalues = ref_loss_terms(*args)
    assert terms.dtype == acc and total.dtype == acc and total.dim() == 0
    assert terms.shape == (len(logits),)
    # Inputs are exact in the acc type, so the sums carry only the accumulation error.
    rt = 1e-12 if acc == torch.float64 else 2e-6
    torch.testing.assert_close(terms.double(), rterms, rtol=rt, atol=rt * 10, equal_nan=True)
    acc_sum = terms[0].clone()
    for k in range(1, len(logits)):
        acc_sum = acc_sum + terms[k]
    assert torch.equal(total, acc_sum) or (total.isnan() and acc_sum.isnan())
    for x, g, rg, v, rv, ng in zip(logits, grads, rgrads, values, rvalues, need_grad):
        for got, ref, want in ((g, rg, ng), (v, rv, reduction == NONE)):
            assert got.dtype == x.dtype
            if not want:
                assert got.shape == (0,)
                continue
            assert got.shape == x.shape and got.is_contiguous()
            r = tol(x.dtype)
            # dtype-scaled tolerance; the absolute part covers subnormal fp16 gradients.
            atol = r * (ref.abs().max().item() if ref.numel() else 0.0) + 1e-30
            if x.dtype == torch.float16:
                atol = max(atol, 6e-8)
            torch.testing.assert_close(got.double(), ref, rtol=r, atol=atol, equal_nan=True)


# ---- the tests -----------------------------------------------------------------------------
MODES = ["arg", "scalar", "full"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("elem", range(4))
@pytest.mark.parametrize("reduction", range(3))
def test_small_all_modes(dtype, elem, reduction):
    gen = torch.Generator().manual_seed(elem * 10 + reduction)
    for n, lmode, wmode, nc in itertools.product((0, 1, 7, 300), MODES, ["arg", "scalar", "full"], (False, True)):
        x = make((n,), dtype, nc, gen=gen)
        y = make((3, 5), dtype, not nc, gen=gen)
        lab = operand(lmode, x, -1.0, 2.0, gen)
        w = operand(wmode, x, 0.0, 2.0, gen)
        args = ([x, y], [lab, None], [w, None], [elem, (elem + 1) % 4], [0.75, -1.0], [1.5, -0.5],
                reduction, [True, n % 2 == 1])
        check(args, op(*args))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("elem", range(4))
def test_large_odd(dtype, elem):
    gen = torch.Generator().manual_seed(7 + elem)
    x = make((1000003,), dtype, True, scale=20.0, gen=gen)
    y = make((7, 11), dtype, False, gen=gen)
    lab = operand("full", x, 0.0, 1.0, gen)
    w = operand("scalar", x, 0.5, 1.5, gen)
    for red in (MEAN, NONE):
        args = ([x, y], [lab, None], [w, None], [elem, BCE], [1.0, 0.0], [1.0, 1.0], red, [True, True])
        check(args, op(*args))


def test_special_values_bce():
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 88.0, -88.0, 1e4, -1e4, 1e-40])
    for t in (0.0, 1.0, 0.3):
        args = ([x], [None], [None], [BCE], [t], [1.0], NONE, [True])
        _, _, (g,), (v,) = op(*args)
        rv, rg = ref_elem(BCE, x.double(), torch.full_like(x.double(), t))
        torch.testing.assert_close(v.double(), rv, rtol=2e-7, atol=0, equal_nan=True)
        torch.testing.assert_close(g.double(), rg, rtol=2e-7, atol=1e-45, equal_nan=True)


def test_confident_prediction_gradient_keeps_relative_accuracy():
    x = torch.tensor([20.0, 40.0, 80.0])  # t = 1: grad = -sigmoid(-x), tiny but not zero
    _, _, (g,), _ = op([x], [None], [None], [BCE], [1.0], [1.0], SUM, [True])
    ref = -torch.sigmoid(-x.double())
    assert (g != 0).all()
    torch.testing.assert_close(g.double(), ref, rtol=2e-7, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_threads_bitwise_identical(dtype):
    gen = torch.Generator().manual_seed(3)
    xs = [make((300007,), dtype, False, gen=gen), make((70000,), dtype, True, gen=gen)]
    args = (xs, [None, None], [None, operand("full", xs[1], 0, 1, gen)], [BCE, HINGE], [1.0, -1.0],
            [1.0, 1.0], MEAN, [True, True])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = op(*args)
        torch.set_num_threads(2)
        b = op(*args)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert all(torch.equal(p, q) for p, q in zip(a[2], b[2]))


def test_mean_accuracy_large_fp32():
    x = torch.randn(1 << 24, generator=torch.Generator().manual_seed(0))
    total, *_ = op([x], [None], [None], [BCE], [1.0], [1.0], MEAN, [False])
    ref = sp(-x.double()).mean()
    assert abs(total.item() - ref.item()) <= 1e-6 * abs(ref.item())


def test_bad_input_messages():
    x = torch.randn(4)
    with pytest.raises(RuntimeError, match="list arguments"):
        op([x], [None], [None], [BCE, BCE], [1.0], [1.0], MEAN, [True])
    with pytest.raises(RuntimeError, match="elems"):
        op([x], [None], [None], [9], [1.0], [1.0], MEAN, [True])
    with pytest.raises(RuntimeError, match="1 or 4 elements"):
        op([x], [torch.ones(3)], [None], [BCE], [1.0], [1.0], MEAN, [True])
    with pytest.raises(RuntimeError, match="dtype"):
        op([x], [torch.ones(4, dtype=torch.float64)], [None], [BCE], [1.0], [1.0], MEAN, [True])
    with pytest.raises(RuntimeError, match="share one dtype"):
        op([x, x.double()], [None, None], [None, None], [BCE, BCE], [1.0, 1.0], [1.0, 1.0], MEAN, [True, True])


def _ensure_fake():
    try:
        @torch.library.register_fake("fusedgan::loss_terms")
        def _fake(logits, labels, weights, elems, label_values, coefs, reduction, need_grad):
            x0 = logits[0]
            acc = torch.float64 if x0.dtype == torch.float64 else torch.float32
            total = x0.new_empty((), dtype=acc)
            terms = x0.new_empty((len(logits),), dtype=acc)
            grads = [x.new_empty(x.shape) if ng else x.new_empty((0,)) for x, ng in zip(logits, need_grad)]
            values = [x.new_empty(x.shape) if reduction == NONE else x.new_empty((0,)) for x in logits]
            return total, terms, grads, values
    except RuntimeError:
        pass  # the fusedgan package registered one already


@pytest.mark.parametrize("reduction", range(3))
def test_opcheck(reduction):
    import fusedgan  # noqa: F401  (may register the fake implementation)

    _ensure_fake()
    x, y = torch.randn(5, 3), torch.randn(7)
    args = ([x, y], [torch.rand(5, 3), None], [None, torch.rand(1)], [BCE, HINGE], [1.0, -1.0],
            [1.0, 0.5], reduction, [True, False])
    torch.library.opcheck(torch.ops.fusedgan.loss_terms.default, args)
