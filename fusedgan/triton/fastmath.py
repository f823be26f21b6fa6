"""exp and log1p for the Triton kernels, with the range reduction of csrc/include/fusedgan/math.h.

``tl.exp`` / ``tl.log`` on float32 lower to ``ex2.approx.f32`` / ``lg2.approx.f32`` on NVIDIA GPUs
(about 1.2e-6 relative error at |x| = 30, two orders above float32's rounding).  These functions
restate math.h's ``fast_exp_nonpos`` and ``fast_log1p_unit`` for float32 (Cody-Waite reduction by
ln 2, a degree-6 polynomial, scaling by two powers of two so results go through the subnormals;
log1p on [0, 1] as e * P(e)), so Triton meets the accuracy of the CPU and CUDA kernels.  Float64
keeps the library functions (libdevice ``exp``, and ``log`` corrected as in ``_log1p64``), as
math.h does.

The coefficients are math.h's (``tests/test_triton_fastmath.py`` checks they are the same
numbers); they are float32 values, so the polynomials run in float32.
"""
import triton
import triton.language as tl

# exp(r) = 1 + r + r^2 * Q(r) on |r| <= ln2/2 (math.h: kExpQ0..kExpQ4).
EXP_Q = (4.999999404e-01, 1.666652113e-01, 4.166838899e-02, 8.368710056e-03, 1.381461276e-03)
LOG2E = 1.44269504088896341
LN2_HI = 0.693145751953125  # n * LN2_HI exact for |n| < 2^10
LN2_LO = 1.42860682030941723e-06
EXP_MIN_ARG = -104.0  # exp(-103.97) = 2^-150: below, exp rounds to zero
# log1p(e) = e * P(e) on [0, 1] (math.h: kLogP1..kLogP9).
LOG_P = (-4.999990165e-01, 3.332996368e-01, -2.495413423e-01, 1.967593879e-01, -1.530559063e-01,
         1.060365140e-01, -5.695949867e-02, 1.985144429e-02, -3.244021209e-03)

_Q0, _Q1, _Q2, _Q3, _Q4 = (tl.constexpr(c) for c in EXP_Q)
_LOG2E, _LN2_HI, _LN2_LO, _MIN = (tl.constexpr(c) for c in (LOG2E, LN2_HI, LN2_LO, EXP_MIN_ARG))
_P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8, _P9 = (tl.constexpr(c) for c in LOG_P)


@triton.jit
def _pow2(n):
    """2^n as float32 for integral n in [-126, 127] (int32), built from its exponent bits."""
    return ((n + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def exp_nonpos_f32(a):
    """exp(a) for float32 a <= 0 (or NaN): math.h's fast_exp_nonpos.  exp(-inf) = 0, subnormal
    results kept, NaN propagates."""
    a = tl.where(a < _MIN, _MIN, a)  # NaN < _MIN is false: NaN stays
    n = tl.floor(a * _LOG2E + 0.5)  # nearest integer (ties up; any tie keeps |r| <= ln2/2)
    r = tl.fma(n, -_LN2_HI, a)
    r = tl.fma(n, -_LN2_LO, r)
    q = tl.fma(r, _Q4, _Q3)
    q = tl.fma(q, r, _Q2)
    q = tl.fma(q, r, _Q1)
    q = tl.fma(q, r, _Q0)
    p = tl.fma(r * r, q, r) + 1.0
    # p * 2^n in two factors, each >= 2^-75, so the product rounds once into the subnormals
    ni = tl.where(n == n, n, 0.0).to(tl.int32)  # NaN: any exponent (p is NaN)
    n1 = ni >> 1
    return p * _pow2(n1) * _pow2(ni - n1)


@triton.jit
def log1p_unit_f32(e):
    """log1p(e) for float32 e in [0, 1] (or NaN): math.h's fast_log1p_unit (relative accuracy
    kept for tiny e)."""
    p = tl.fma(e, _P9, _P8)
    p = tl.fma(p, e, _P7)
    p = tl.fma(p, e, _P6)
    p = tl.fma(p, e, _P5)
    p = tl.fma(p, e, _P4)
    p = tl.fma(p, e, _P3)
    p = tl.fma(p, e, _P2)
    p = tl.fma(p, e, _P1)
    return tl.fma(p * e, e, e)


@triton.jit
def _log1p64(e):
    """log1p(e) for float64 e in [0, 1] from one log: log(u) * e / (u - 1) with u = 1 + e (the
    exact e / (u - 1) corrects the rounding of u); for e below half an ulp of 1, log1p(e) = e."""
    u = 1.0 + e
    d = u - 1.0
    tiny = d == 0.0
    return tl.where(tiny, e, tl.log(u) * (e / tl.where(tiny, 1.0, d)))


@triton.jit
def exp_nonpos(a, IS64: tl.constexpr):
    """exp(a) for a <= 0 in the maths dtype (float32, or float64 when IS64)."""
    if IS64:
        return tl.exp(a)
    else:
        return exp_nonpos_f32(a)


@triton.jit
def log1p_unit(e, IS64: tl.constexpr):
    """log1p(e) for e in [0, 1] in the maths dtype."""
    if IS64:
        return _log1p64(e)
    else:
        return log1p_unit_f32(e)
