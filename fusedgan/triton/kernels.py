"""The Triton kernels: every element function of ``fusedgan.kinds.Elem``, fused over two terms.

``_loss_kernel`` is one launch over (up to) two logit tensors ``a`` and ``b``: programs
``[0, progs_a)`` take blocks of ``a``, the rest take ``b`` (the discriminator's real and fake
logits, whose sizes may differ).  Each program reads its block of logits (and labels / weights /
grad_output when they are tensors) once, and, as the ``constexpr`` switches say,

* writes the gradient ``scale * w * elem'(x, t)`` (times ``grad_output`` in the backward op),
* writes the per-element values ``coef * w * elem(x, t)`` (reduction ``none``),
* writes its partial sum of ``w * elem(x, t)`` into its own slot of ``partials``.

``_finish_kernel`` (one program) then sums each term's slots in a fixed order, applies the term's
``scale`` (``coef / N`` for ``mean``, ``coef`` otherwise) and writes ``terms`` and ``total``: the
same bits run to run, no atomics.  With ``SINGLE`` one program loops over both tensors and finishes
the reduction itself: small (launch-bound) problems take a single launch.

Maths run in float32 (float64 when ``IS64``); loads and stores convert from and to the tensors'
own dtypes.  Scalar arguments are declared ``tl.float64`` (a real annotation: this module must not
use ``from __future__ import annotations``, and tools/gpu_compile.py checks the compiled
signatures) so that an fp64 problem keeps its labels exact
and a caller passing fp64 scalars (Inductor) gets the same kernel; each is cast to the maths dtype
once per program, so no vector arithmetic runs in fp64 unless the inputs are fp64.
"""
import triton
import triton.language as tl

from ..codes import STAT_COLS as _STAT_COLS
from ..codes import Elem, Operand, StatCol
from . import fastmath as fm

# The codes of fusedgan/codes.py as compile-time constants of the kernels.
BCE = tl.constexpr(int(Elem.BCE))
HALF_SQUARE = tl.constexpr(int(Elem.HALF_SQUARE))
LINEAR = tl.constexpr(int(Elem.LINEAR))
HINGE = tl.constexpr(int(Elem.HINGE))
ABS = tl.constexpr(int(Elem.ABS))
SOFTPLUS_NEG = tl.constexpr(int(Elem.SOFTPLUS_NEG))
SQ_RELU_ABOVE = tl.constexpr(int(Elem.SQ_RELU_ABOVE))
SQ_RELU_BELOW = tl.constexpr(int(Elem.SQ_RELU_BELOW))
ARG = tl.constexpr(int(Operand.ARG))
SCALAR = tl.constexpr(int(Operand.SCALAR))
STAT_COLS = tl.constexpr(_STAT_COLS)
SUM_X = tl.constexpr(int(StatCol.SUM_X))
SUM_SIGMOID = tl.constexpr(int(StatCol.SUM_SIGMOID))
COUNT_POS = tl.constexpr(int(StatCol.COUNT_POS))
COUNT_NEG = tl.constexpr(int(StatCol.COUNT_NEG))
# The element functions _elem implements (its last branch is ABS): tests/test_codes.py checks that
# this is every Elem, so a new code fails there until it has its branch.
ELEMS = frozenset(int(c.value) for c in (BCE, HALF_SQUARE, LINEAR, HINGE, SOFTPLUS_NEG, SQ_RELU_ABOVE,
                                         SQ_RELU_BELOW, ABS))


@triton.jit
def _to_acc(v, IS64: tl.constexpr):
    if IS64:
        return tl.cast(v, tl.float64)
    else:
        return tl.cast(v, tl.float32)


@triton.jit
def _scalar(v, IS64: tl.constexpr):
    """A scalar argument in the maths dtype (tl.full keeps a Python float's fp64 bits in the
    interpreter, where tl.cast would round it through fp32 first)."""
    if IS64:
        return tl.full([], v, tl.float64)
    else:
        return tl.full([], v, tl.float32)


@triton.jit
def _zero(IS64: tl.constexpr):
    if IS64:
        return tl.full([], 0.0, tl.float64)
    else:
        return tl.full([], 0.0, tl.float32)


@triton.jit
def _elem(x, t, ELEM: tl.constexpr, IS64: tl.constexpr):
    """(value, d value / dx) of element function ELEM at logits x, labels t (maths dtype)."""
    if ELEM == BCE:  # t*sp(-x) + (1-t)*sp(x); one exp, one log1p (math.h's, see fastmath.py)
        e = fm.exp_nonpos(-tl.abs(x), IS64)
        inv = 1.0 / (1.0 + e)
        pos = x >= 0
        s = 1.0 - t
        v = tl.where(pos, s * x, -t * x) + fm.log1p_unit(e, IS64)
        # sigmoid(x) - t, never subtracting two numbers close to 1
        d = tl.where(pos, s - t * e, s * e - t) * inv
    elif ELEM == HALF_SQUARE:  # 0.5 (x - t)^2
        d = x - t
        v = 0.5 * d * d
    elif ELEM == LINEAR:  # -t x
        v = -t * x
        d = tl.zeros_like(x) - t
    elif ELEM == HINGE:  # relu(1 - t x); NaN propagates as in torch.relu
        m = 1.0 - t * x
        v = tl.where(m < 0, 0.0, m)
        d = tl.where(m <= 0, 0.0, tl.zeros_like(x) - t)
    elif ELEM == SOFTPLUS_NEG:  # sp(-x), label not read; -sigmoid(-x); 0 at x = +inf
        e = fm.exp_nonpos(-tl.abs(x), IS64)
        inv = 1.0 / (1.0 + e)
        pos = x >= 0
        v = tl.where(pos, 0.0, -x) + fm.log1p_unit(e, IS64)
        d = -tl.where(pos, e, 1.0) * inv
    elif ELEM == SQ_RELU_ABOVE:  # relu(x - t)^2; 2 relu(x - t), NaN kept (torch's relu(d).square())
        m = x - t
        m = tl.where(m < 0, 0.0, m)
        v = m * m
        d = 2.0 * m
    elif ELEM == SQ_RELU_BELOW:  # relu(t - x)^2; -2 relu(t - x)
        m = t - x
        m = tl.where(m < 0, 0.0, m)
        v = m * m
        d = -2.0 * m
    else:  # ABS: |x - t|; sign(x - t), 0 at x == t and for NaN (as torch's abs')
        r = x - t
        v = tl.abs(r)
        z = tl.zeros_like(r)
        d = tl.where(r > 0, z + 1.0, tl.where(r < 0, z - 1.0, z))
    return v, d


@triton.jit
def _block(blk, x_ptr, t_ptr, w_ptr, go_ptr, g_ptr, v_ptr, n, lab, coef, scale,
           ELEM: tl.constexpr, LAB: tl.constexpr, W: tl.constexpr, GO: tl.constexpr,
           GRAD: tl.constexpr, VAL: tl.constexpr, IS64: tl.constexpr, BLOCK: tl.constexpr,
           STATS: tl.constexpr):
    """One block of one term; returns the block's sum of w * elem(x, t) (0 outside the tensor)
    and, with STATS, its sums of x, sigmoid(x), [x > 0] and [x < 0] (else zeros).

    LAB / W / GO: fusedgan.codes.Operand: ARG (absent; the scalar ``lab`` for LAB), SCALAR (one
    element broadcast), FULL (per element).
    """
    offs = tl.cast(blk, tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = _to_acc(tl.load(x_ptr + offs, mask=mask, other=0.0), IS64)
    if LAB == ARG:
        t = lab
    elif LAB == SCALAR:
        t = _to_acc(tl.load(t_ptr), IS64)
    else:
        t = _to_acc(tl.load(t_ptr + offs, mask=mask, other=0.0), IS64)
    v, d = _elem(x, t, ELEM, IS64)
    if W == SCALAR:
        w = _to_acc(tl.load(w_ptr), IS64)
        v = v * w
        d = d * w
    elif W != ARG:
        w = _to_acc(tl.load(w_ptr + offs, mask=mask, other=0.0), IS64)
        v = v * w
        d = d * w
    if GRAD:
        g = d * scale
        if GO == SCALAR:
            g = g * _to_acc(tl.load(go_ptr), IS64)
        elif GO != ARG:
            g = g * _to_acc(tl.load(go_ptr + offs, mask=mask, other=0.0), IS64)
        tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)
    if VAL:
        tl.store(v_ptr + offs, (v * coef).to(v_ptr.dtype.element_ty), mask=mask)
    if STATS:  # training statistics of the logits, from the same load
        e = fm.exp_nonpos(-tl.abs(x), IS64)
        inv = 1.0 / (1.0 + e)
        sig = tl.where(x >= 0, inv, e * inv)
        sx = tl.sum(tl.where(mask, x, 0.0), axis=0)
        ss = tl.sum(tl.where(mask, sig, 0.0), axis=0)
        sp = tl.sum(tl.where(mask & (x > 0), 1.0, 0.0).to(x.dtype), axis=0)
        sn = tl.sum(tl.where(mask & (x < 0), 1.0, 0.0).to(x.dtype), axis=0)
    else:
        sx = _zero(IS64)
        ss = _zero(IS64)
        sp = _zero(IS64)
        sn = _zero(IS64)
    return tl.sum(tl.where(mask, v, 0.0), axis=0), sx, ss, sp, sn


@triton.jit
def _store_stats(row, sx, ss, sp, sn):
    """One row of the stats columns (``StatCol`` order: x, sigmoid(x), [x > 0], [x < 0])."""
    tl.store(row + SUM_X, sx)
    tl.store(row + SUM_SIGMOID, ss)
    tl.store(row + COUNT_POS, sp)
    tl.store(row + COUNT_NEG, sn)


@triton.jit
def _single_term(x, t, w, go, g, v, n, lab, coef, scale, terms, stats, slot,
                 ELEM: tl.constexpr, LAB: tl.constexpr, W: tl.constexpr, GO: tl.constexpr,
                 GRAD: tl.constexpr, VAL: tl.constexpr, IS64: tl.constexpr, BLOCK: tl.constexpr,
                 STATS: tl.constexpr):
    """A whole term in one program: stores terms[slot] (and its stats row) and returns it."""
    acc = _zero(IS64)
    sx_t = _zero(IS64)
    ss_t = _zero(IS64)
    sp_t = _zero(IS64)
    sn_t = _zero(IS64)
    for blk in range(0, tl.cdiv(n, BLOCK)):
        s, sx, ss, sp, sn = _block(blk, x, t, w, go, g, v, n, lab, coef, scale, ELEM, LAB, W, GO, GRAD, VAL,
                               IS64, BLOCK, STATS)
        acc += s
        sx_t += sx
        ss_t += ss
        sp_t += sp
        sn_t += sn
    term = acc * scale
    tl.store(terms + slot, term)
    if STATS:
        _store_stats(stats + STAT_COLS * slot, sx_t, ss_t, sp_t, sn_t)
    return term


@triton.jit
def _loss_kernel(
    # term a
    xa, ta, wa, goa, ga, va, na, lab_a: tl.float64, coef_a: tl.float64, scale_a: tl.float64, progs_a,
    # term b (ignored unless TWO)
    xb, tb, wb, gob, gb, vb, nb, lab_b: tl.float64, coef_b: tl.float64, scale_b: tl.float64,
    # reduction outputs
    partials, terms, total, term_off, stats, spartials,
    ELEM_A: tl.constexpr, LAB_A: tl.constexpr, W_A: tl.constexpr, GO_A: tl.constexpr,
    GRAD_A: tl.constexpr, VAL_A: tl.constexpr,
    ELEM_B: tl.constexpr, LAB_B: tl.constexpr, W_B: tl.constexpr, GO_B: tl.constexpr,
    GRAD_B: tl.constexpr, VAL_B: tl.constexpr,
    TWO: tl.constexpr, SUM: tl.constexpr, SINGLE: tl.constexpr, ACCUM: tl.constexpr,
    IS64: tl.constexpr, BLOCK: tl.constexpr, STATS: tl.constexpr = False,
):
    """``stats`` ([n, 4], SINGLE) / ``spartials`` ([programs, 4]) receive the STATS sums
    (``STAT_COLS`` columns: x, sigmoid(x), [x > 0], [x < 0])."""
    la = _scalar(lab_a, IS64)
    ca = _scalar(coef_a, IS64)
    sa = _scalar(scale_a, IS64)
    lb = _scalar(lab_b, IS64)
    cb = _scalar(coef_b, IS64)
    sb = _scalar(scale_b, IS64)
    if SINGLE:
        # Launch-bound sizes: one program does everything, finishing the reduction itself.
        tot = _single_term(xa, ta, wa, goa, ga, va, na, la, ca, sa, terms, stats, term_off, ELEM_A,
                           LAB_A, W_A, GO_A, GRAD_A, VAL_A, IS64, BLOCK, STATS)
        if TWO:
            tot = tot + _single_term(xb, tb, wb, gob, gb, vb, nb, lb, cb, sb, terms, stats, term_off + 1,
                                     ELEM_B, LAB_B, W_B, GO_B, GRAD_B, VAL_B, IS64, BLOCK, STATS)
        if ACCUM:
            tot = tl.load(total) + tot
        tl.store(total, tot)
    else:
        pid = tl.program_id(0)
        if pid < progs_a:
            s, sx, ss, sp, sn = _block(pid, xa, ta, wa, goa, ga, va, na, la, ca, sa, ELEM_A, LAB_A, W_A,
                                   GO_A, GRAD_A, VAL_A, IS64, BLOCK, STATS)
        else:
            s, sx, ss, sp, sn = _block(pid - progs_a, xb, tb, wb, gob, gb, vb, nb, lb, cb, sb, ELEM_B,
                                   LAB_B, W_B, GO_B, GRAD_B, VAL_B, IS64, BLOCK, STATS)
        if SUM:
            tl.store(partials + pid, s)
        if STATS:
            _store_stats(spartials + STAT_COLS * pid, sx, ss, sp, sn)


@triton.jit
def _finish_stats(spartials, stats, term, first, count, IS64: tl.constexpr, RBLOCK: tl.constexpr):
    """stats[term, k] = sum over programs [first, first + count) of spartials[p, k], in order."""
    r = tl.arange(0, RBLOCK)
    for k in range(STAT_COLS):
        acc = tl.zeros([RBLOCK], dtype=spartials.dtype.element_ty)
        for i in range(0, count, RBLOCK):
            acc += tl.load(spartials + STAT_COLS * (first + i + r) + k, mask=i + r < count, other=0.0)
        tl.store(stats + STAT_COLS * term + k, tl.sum(acc, axis=0))


@triton.jit
def _finish_kernel(partials, terms, total, term_off, progs_a, progs_b, scale_a: tl.float64, scale_b: tl.float64,
                   stats, spartials, TWO: tl.constexpr, ACCUM: tl.constexpr, IS64: tl.constexpr,
                   RBLOCK: tl.constexpr, STATS: tl.constexpr = False):
    """Fixed-order sum of each term's partials, times its scale; writes terms and total (and,
    with STATS, each term's four statistics sums from ``spartials``)."""
    if STATS:
        _finish_stats(spartials, stats, term_off, 0, progs_a, IS64, RBLOCK)
        if TWO:
            _finish_stats(spartials, stats, term_off + 1, progs_a, progs_b, IS64, RBLOCK)
    r = tl.arange(0, RBLOCK)
    acc = tl.zeros([RBLOCK], dtype=partials.dtype.element_ty)
    for i in range(0, progs_a, RBLOCK):
        acc += tl.load(partials + i + r, mask=i + r < progs_a, other=0.0)
    term_a = tl.sum(acc, axis=0) * _scalar(scale_a, IS64)
    tl.store(terms + term_off, term_a)
    tot = term_a
    if TWO:
        acc = tl.zeros([RBLOCK], dtype=partials.dtype.element_ty)
        for i in range(0, progs_b, RBLOCK):
            acc += tl.load(partials + progs_a + i + r, mask=i + r < progs_b, other=0.0)
        term_b = tl.sum(acc, axis=0) * _scalar(scale_b, IS64)
        tl.store(terms + term_off + 1, term_b)
        tot = tot + term_b
    if ACCUM:
        tot = tl.load(total) + tot
    tl.store(total, tot)
