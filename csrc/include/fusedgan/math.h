// fusedgan/math.h: the element functions of every loss term, written once.
//
// Each function computes value and d value / dx of one element, given the logit x and label t, in
// an accumulation type T.  The formulas are templates on T and on an "ops" policy (exp, log1p,
// select, ...), so the very same text is instantiated for scalars (ScalarOps below: CUDA threads,
// C++ tests) and for SIMD vectors (VecOps in csrc/cpu/vec_ops.h: at::vec::Vectorized).
//
// No torch include here: this header must compile under nvcc as __host__ __device__ code.
// The codes (Elem, Reduction, ...) come from codes.h, generated from fusedgan/codes.py.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fusedgan/codes.h"

#if defined(__CUDACC__)
#define FG_HD __host__ __device__
#define FG_INLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define FG_HD
// Always inlined: CPU kernels are compiled once per SIMD level, and an out-of-line copy of a
// shared inline function built with AVX-512 must never be what a plain-x86 caller links to.
#define FG_INLINE inline __attribute__((always_inline))
#else
#define FG_HD
#define FG_INLINE inline
#endif

namespace fusedgan {

// ---------------------------------------------------------------------------------------------
// Fast float exp and log1p for the ranges the logistic loss needs.
//
// The logistic kernel only ever needs e = exp(-|x|) in [0, 1] and log1p(e) with e in [0, 1], so
// neither function handles overflow, and both keep relative accuracy down to the smallest
// results.  Coefficients were fitted by a weighted (relative-error) minimax fit in float64 and
// rounded to float; measured errors are in csrc/tests/test_math.cpp.
// ---------------------------------------------------------------------------------------------
namespace detail {
// exp(r) = 1 + r + r^2 * Q(r) on |r| <= ln2/2; fit error 3e-9 relative.
constexpr float kExpQ0 = 4.999999404e-01f, kExpQ1 = 1.666652113e-01f, kExpQ2 = 4.166838899e-02f,
                kExpQ3 = 8.368710056e-03f, kExpQ4 = 1.381461276e-03f;
constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split so that n * kLn2Hi is exact for |n| < 2^10 (Cody-Waite reduction).
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.42860682030941723e-06f;
// Below this exp() rounds to zero even as a subnormal (exp(-103.97) = 2^-150).
constexpr float kExpMinArg = -104.0f;
// log1p(e) = e * P(e) on [0, 1]; fit error 5e-9 relative; P(0) = 1 keeps tiny e exact.
constexpr float kLogP1 = -4.999990165e-01f, kLogP2 = 3.332996368e-01f, kLogP3 = -2.495413423e-01f,
                kLogP4 = 1.967593879e-01f, kLogP5 = -1.530559063e-01f, kLogP6 = 1.060365140e-01f,
                kLogP7 = -5.695949867e-02f, kLogP8 = 1.985144429e-02f, kLogP9 = -3.244021209e-03f;
}  // namespace detail

// exp(a) for a <= 0 (or NaN) in float.  Results go through the subnormals (down to 2^-149) and
// exp(-inf) = 0; NaN propagates through the polynomial.  Ops needs: c, fma, clamp_min (keeping a
// NaN first argument), round, scale_pow2(p, n) = p * 2^n for integral n in [-150, 0].
template <class T, class Ops>
FG_HD FG_INLINE T fast_exp_nonpos(T a) {
  using namespace detail;
  a = Ops::clamp_min(a, Ops::c(kExpMinArg));
  const T n = Ops::round(a * Ops::c(kLog2e));
  T r = Ops::fma(n, Ops::c(-kLn2Hi), a);
  r = Ops::fma(n, Ops::c(-kLn2Lo), r);
  T q = Ops::fma(Ops::c(kExpQ4), r, Ops::c(kExpQ3));
  q = Ops::fma(q, r, Ops::c(kExpQ2));
  q = Ops::fma(q, r, Ops::c(kExpQ1));
  q = Ops::fma(q, r, Ops::c(kExpQ0));
  const T p = Ops::fma(r * r, q, r) + Ops::c(1.0f);
  return Ops::scale_pow2(p, n);
}

// log1p(e) for e in [0, 1] (or NaN) in float, relative accuracy kept for tiny e.
template <class T, class Ops>
FG_HD FG_INLINE T fast_log1p_unit(T e) {
  using namespace detail;
  T p = Ops::fma(Ops::c(kLogP9), e, Ops::c(kLogP8));
  p = Ops::fma(p, e, Ops::c(kLogP7));
  p = Ops::fma(p, e, Ops::c(kLogP6));
  p = Ops::fma(p, e, Ops::c(kLogP5));
  p = Ops::fma(p, e, Ops::c(kLogP4));
  p = Ops::fma(p, e, Ops::c(kLogP3));
  p = Ops::fma(p, e, Ops::c(kLogP2));
  p = Ops::fma(p, e, Ops::c(kLogP1));
  return Ops::fma(p * e, e, e);  // e + e^2 * (P(e) - 1) / e
}

// ---------------------------------------------------------------------------------------------
// The element functions.  Ops needs: c, abs, fma, clamp_min, ge/gt (-> Ops::Mask), select(m, a, b)
// = m ? a : b, exp_nonpos, log1p_unit.  NaN and inf follow the plain formulas of kinds.py (the
// reference PyTorch code), e.g. BCE(+inf, t=1) = 0 * inf = NaN, and relu'(0) = 0.
// ---------------------------------------------------------------------------------------------

// BCE(x, t) = t*sp(-x) + (1-t)*sp(x); d/dx = sigmoid(x) - t.
// One exp and one log1p: with e = exp(-|x|), sp(|x|) = |x| + log1p(e) and sigmoid(-|x|) = e/(1+e).
// Writing sigmoid(x) - 1 as -sigmoid(-x) keeps the gradient's relative accuracy for confident
// predictions (t = 1, x >> 0), where sigmoid(x) - 1 would cancel to 0.
template <class T, class Ops>
FG_HD FG_INLINE void bce(T x, T t, T& value, T& grad) {
  const T one = Ops::c(1.0);
  const T e = Ops::exp_nonpos(-Ops::abs(x));
  const T L = Ops::log1p_unit(e);
  const T inv = one / (one + e);
  const T u = one - t;
  const auto pos = Ops::ge(x, Ops::c(0.0));
  value = Ops::select(pos, u * x, -(t * x)) + L;
  grad = Ops::select(pos, Ops::fma(-t, e, u), Ops::fma(u, e, -t)) * inv;
}

// HALF_SQUARE(x, t) = (x - t)^2 / 2; d/dx = x - t.
template <class T, class Ops>
FG_HD FG_INLINE void half_square(T x, T t, T& value, T& grad) {
  const T d = x - t;
  value = Ops::c(0.5) * d * d;
  grad = d;
}

// LINEAR(x, t) = -t * x; d/dx = -t.
template <class T, class Ops>
FG_HD FG_INLINE void linear(T x, T t, T& value, T& grad) {
  value = -(t * x);
  grad = -t;
}

// HINGE(x, t) = relu(1 - t*x); d/dx = 0 where 1 - t*x <= 0, else -t: torch's relu' (threshold
// backward), which is 0 at the kink and passes the gradient at a NaN margin.
template <class T, class Ops>
FG_HD FG_INLINE void hinge(T x, T t, T& value, T& grad) {
  const T zero = Ops::c(0.0);
  const T m = Ops::c(1.0) - t * x;
  value = Ops::clamp_min(m, zero);
  grad = Ops::select(Ops::ge(zero, m), zero, -t);
}

// SOFTPLUS_NEG(x) = sp(-x) (the label is not read); d/dx = -sigmoid(-x).  BCE(x, 1) without its
// (1 - t) * x term, so x = +inf gives 0 where BCE(+inf, 1) is 0 * inf = NaN (rsgan's sp(-(r - f))).
template <class T, class Ops>
FG_HD FG_INLINE void softplus_neg(T x, T, T& value, T& grad) {
  const T one = Ops::c(1.0);
  const T zero = Ops::c(0.0);
  const T e = Ops::exp_nonpos(-Ops::abs(x));
  const T inv = one / (one + e);
  const auto pos = Ops::ge(x, zero);
  value = Ops::select(pos, zero, -x) + Ops::log1p_unit(e);
  grad = -(Ops::select(pos, e, one) * inv);
}

// ABS(x, t) = |x - t|; d/dx = sign(x - t), 0 at x == t and for NaN (torch's abs' and sign).
// Feature matching: the mean absolute difference of two feature maps, t the real features.
template <class T, class Ops>
FG_HD FG_INLINE void abs_diff(T x, T t, T& value, T& grad) {
  const T zero = Ops::c(0.0);
  const T one = Ops::c(1.0);
  const T d = x - t;
  value = Ops::abs(d);
  grad = Ops::select(Ops::gt(d, zero), one, Ops::select(Ops::gt(zero, d), -one, zero));
}

// SQ_RELU_ABOVE(x, t) = relu(x - t)^2; d/dx = 2 relu(x - t).  SQ_RELU_BELOW(x, t) = relu(t - x)^2;
// d/dx = -2 relu(t - x).  LeCam's terms, t a moving average.  As torch's relu(d).square(): its
// gradient 2 relu(d) relu'(d) is 0 where relu(d) <= 0 and 2 relu(d) elsewhere, so a NaN d gives
// NaN for both, d = +inf gives inf for both and d = -inf gives 0 for both.
template <class T, class Ops>
FG_HD FG_INLINE void sq_relu_above(T x, T t, T& value, T& grad) {
  const T m = Ops::clamp_min(x - t, Ops::c(0.0));  // keeps a NaN
  value = m * m;
  grad = Ops::c(2.0) * m;
}

template <class T, class Ops>
FG_HD FG_INLINE void sq_relu_below(T x, T t, T& value, T& grad) {
  const T m = Ops::clamp_min(t - x, Ops::c(0.0));
  value = m * m;
  grad = Ops::c(-2.0) * m;
}

// Compile-time dispatch, for kernels that instantiate one loop per element function.
template <Elem E, class T, class Ops>
FG_HD FG_INLINE void elem_eval(T x, T t, T& value, T& grad) {
  if constexpr (E == Elem::BCE) {
    bce<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::HALF_SQUARE) {
    half_square<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::LINEAR) {
    linear<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::ABS) {
    abs_diff<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::SOFTPLUS_NEG) {
    softplus_neg<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::HINGE) {
    hinge<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::SQ_RELU_ABOVE) {
    sq_relu_above<T, Ops>(x, t, value, grad);
  } else if constexpr (E == Elem::SQ_RELU_BELOW) {
    sq_relu_below<T, Ops>(x, t, value, grad);
  } else {
    static_assert(E == Elem::BCE, "elem_eval: an Elem of codes.h without a formula here");
  }
}

// Run-time dispatch (CUDA threads, tests).
template <class T, class Ops>
FG_HD FG_INLINE void elem_eval(Elem elem, T x, T t, T& value, T& grad) {
  switch (elem) {
    case Elem::BCE: bce<T, Ops>(x, t, value, grad); break;
    case Elem::HALF_SQUARE: half_square<T, Ops>(x, t, value, grad); break;
    case Elem::LINEAR: linear<T, Ops>(x, t, value, grad); break;
    case Elem::ABS: abs_diff<T, Ops>(x, t, value, grad); break;
    case Elem::SOFTPLUS_NEG: softplus_neg<T, Ops>(x, t, value, grad); break;
    case Elem::SQ_RELU_ABOVE: sq_relu_above<T, Ops>(x, t, value, grad); break;
    case Elem::SQ_RELU_BELOW: sq_relu_below<T, Ops>(x, t, value, grad); break;
    default: hinge<T, Ops>(x, t, value, grad); break;
  }
}

// ---------------------------------------------------------------------------------------------
// Scalar policies.
// ---------------------------------------------------------------------------------------------
template <class T>
struct ScalarOps;

template <>
struct ScalarOps<float> {
  using Mask = bool;
  static FG_HD FG_INLINE float c(double v) { return static_cast<float>(v); }
  static FG_HD FG_INLINE float abs(float x) { return fabsf(x); }
  static FG_HD FG_INLINE float fma(float a, float b, float c) { return fmaf(a, b, c); }
  // NaN in `a` survives: NaN < lo is false.
  static FG_HD FG_INLINE float clamp_min(float a, float lo) { return a < lo ? lo : a; }
  static FG_HD FG_INLINE float round(float a) { return rintf(a); }
  static FG_HD FG_INLINE bool ge(float a, float b) { return a >= b; }
  static FG_HD FG_INLINE bool gt(float a, float b) { return a > b; }
  static FG_HD FG_INLINE float select(bool m, float a, float b) { return m ? a : b; }
  static FG_HD FG_INLINE float scale_pow2(float p, float n) {
    // n in [-150, 0] (or garbage when p is NaN): two factors 2^n1 * 2^n2 each >= 2^-75, so the
    // result rounds once into the subnormals instead of flushing to zero at 2^-126.
    const int32_t ni = static_cast<int32_t>(n);
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    return p * from_bits((n1 + 127) << 23) * from_bits((n2 + 127) << 23);
  }
  static FG_HD FG_INLINE float exp_nonpos(float a) { return fast_exp_nonpos<float, ScalarOps>(a); }
  static FG_HD FG_INLINE float log1p_unit(float e) { return fast_log1p_unit<float, ScalarOps>(e); }

 private:
  static FG_HD FG_INLINE float from_bits(int32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
  }
};

template <>
struct ScalarOps<double> {
  using Mask = bool;
  static FG_HD FG_INLINE double c(double v) { return v; }
  static FG_HD FG_INLINE double abs(double x) { return fabs(x); }
  static FG_HD FG_INLINE double fma(double a, double b, double c) { return ::fma(a, b, c); }
  static FG_HD FG_INLINE double clamp_min(double a, double lo) { return a < lo ? lo : a; }
  static FG_HD FG_INLINE bool ge(double a, double b) { return a >= b; }
  static FG_HD FG_INLINE bool gt(double a, double b) { return a > b; }
  static FG_HD FG_INLINE double select(bool m, double a, double b) { return m ? a : b; }
  // Double keeps the library functions: accuracy first, and fp64 is rare on the hot path.
  static FG_HD FG_INLINE double exp_nonpos(double a) { return ::exp(a); }
  static FG_HD FG_INLINE double log1p_unit(double e) { return ::log1p(e); }
};

// ---------------------------------------------------------------------------------------------
// Gradient penalty of one group (fusedgan::group_penalty), from its sum of squares s >= 0.
//   per    = d^2 with d = ||g|| - center (relu(d) when one_sided)
//   dscale = d per / d g / g = 2 d / ||g||, and 0 at s = 0 (g = 0: a zero gradient, no NaN)
// NaN in s gives NaN; s = inf gives per = inf (as the reference) and a NaN dscale.
// ---------------------------------------------------------------------------------------------
template <class T>
FG_HD FG_INLINE void gp_group(T s, T center, bool one_sided, T& per, T& dscale) {
  const T norm = sqrt(s);
  const T inv = s > T(0) ? T(1) / norm : T(0);
  T d = norm - center;
  if (one_sided && d < T(0)) d = T(0);
  per = d * d;
  dscale = T(2) * d * inv;
}

}  // namespace fusedgan
