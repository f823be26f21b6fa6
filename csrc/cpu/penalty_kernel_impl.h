// The inner loops of the penalty operators, included by penalty_kernel_{default,avx2,avx512}.cpp,
// each of which first defines CPU_CAPABILITY (as kernel_impl.h's users do).  Vectorized<float>
// (Vectorized<double> for float64) does the arithmetic; float16 / bfloat16 are widened to float on
// load, so squares of values up to 65504 never overflow.
#pragma once

#ifndef CPU_CAPABILITY
#error "define CPU_CAPABILITY before including penalty_kernel_impl.h"
#endif

#include <algorithm>

#include "fusedgan/math.h"
#include "penalty_cpu.h"
#include "vec_io.h"

namespace fusedgan::cpu::CPU_CAPABILITY {
namespace {

template <class S>
double sumsq_t(const S* p, int64_t n) {
  using IO = Io<S>;
  using A = typename IO::A;
  using V = typename IO::V;
  constexpr int K = IO::K;
  constexpr int U = 4;  // independent accumulators: hides the FMA latency
  constexpr int64_t kStep = IO::kStep;
  V acc[U * K];
  for (auto& a : acc) a = V(A(0));
  V v[K];
  int64_t j = 0;
  for (; j + U * kStep <= n; j += U * kStep) {
    for (int u = 0; u < U; ++u) {
      IO::load(p + j + u * kStep, kStep, v);
      for (int k = 0; k < K; ++k) acc[u * K + k] = at::vec::fmadd(v[k], v[k], acc[u * K + k]);
    }
  }
  for (; j < n; j += kStep) {  // the tail: padding lanes load as 0 and add nothing
    IO::load(p + j, std::min<int64_t>(kStep, n - j), v);
    for (int k = 0; k < K; ++k) acc[k] = at::vec::fmadd(v[k], v[k], acc[k]);
  }
  for (int i = 1; i < U * K; ++i) acc[0] = acc[0] + acc[i];
  __at_align__ A buf[V::size()];
  acc[0].store(buf);
  double s = 0.0;
  for (int64_t i = 0; i < V::size(); ++i) s += static_cast<double>(buf[i]);
  return s;
}

template <class S>
void sumsq_cols_t(const S* p, int64_t rows, int64_t stride, int64_t width, acc_t<S>* out) {
  using IO = Io<S>;
  using V = typename IO::V;
  constexpr int K = IO::K;
  constexpr int64_t kStep = IO::kStep;
  V v[K], acc[K];
  // Column block outer, rows inner: the sums stay in registers (rows is at most a few dozen).
  for (int64_t b = 0; b < width; b += kStep) {
    const int64_t cnt = std::min<int64_t>(kStep, width - b);
    for (int k = 0; k < K; ++k) acc[k] = V(acc_t<S>(0));
    for (int64_t r = 0; r < rows; ++r) {
      IO::load(p + r * stride + b, cnt, v);
      for (int k = 0; k < K; ++k) acc[k] = at::vec::fmadd(v[k], v[k], acc[k]);
    }
    for (int k = 0; k < K; ++k) {
      const int64_t m = lanes<V>(cnt, k);
      if (m > 0) acc[k].store(out + b + k * V::size(), m);
    }
  }
}

// out = g * factor over n elements, one step of IO::K vectors at a time: mul(v, j, cnt) multiplies
// the vectors v of the step at element j (cnt of them valid) by their factors, in place.
template <class S, class Mul>
void scale_loop(const S* g, S* out, int64_t n, Mul mul) {
  using IO = Io<S>;
  typename IO::V v[IO::K];
  for (int64_t j = 0; j < n; j += IO::kStep) {
    const int64_t cnt = std::min<int64_t>(IO::kStep, n - j);
    IO::load(g + j, cnt, v);
    mul(v, j, cnt);
    IO::store(out + j, v, cnt);
  }
}

// One factor f for every element.
template <class S>
void scale_t(const S* g, S* out, int64_t n, acc_t<S> f) {
  using V = typename Io<S>::V;
  const V fv(f);
  scale_loop(g, out, n, [&](V* v, int64_t, int64_t) {
    for (int k = 0; k < Io<S>::K; ++k) v[k] = v[k] * fv;
  });
}

// Element j times s[j] * go.
template <class S>
void scale_cols_t(const S* g, S* out, int64_t n, const acc_t<S>* s, acc_t<S> go) {
  using V = typename Io<S>::V;
  const V gov(go);
  scale_loop(g, out, n, [&](V* v, int64_t j, int64_t cnt) {
    for (int k = 0; k < Io<S>::K; ++k) {
      const int64_t m = lanes<V>(cnt, k);
      if (m > 0) v[k] = v[k] * (V::loadu(s + j + k * V::size(), m) * gov);
    }
  });
}

// gp_group (math.h) over n groups: per[i] and scale[i] = dscale * mul; returns the sum of per in
// double (four accumulators, a fixed order).  T is the acc type (float or double).
template <class T>
double gp_epilogue_t(const T* s, int64_t n, T center, bool one_sided, T mul, T* per, T* scale) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t W = V::size();
  const V c(center), zero(T(0)), one(T(1)), two(T(2)), m(mul);
  int64_t i = 0;
  for (; i + W <= n; i += W) {  // the same operations, in the same order, as gp_group
    const V sv = V::loadu(s + i);
    const V norm = sv.sqrt();
    const V inv = V::blendv(zero, one / norm, sv > zero);
    V d = norm - c;
    if (one_sided) d = at::vec::maximum(d, zero);
    (d * d).store(per + i);
    (two * d * inv * m).store(scale + i);
  }
  for (; i < n; ++i) {
    T p, ds;
    gp_group<T>(s[i], center, one_sided, p, ds);
    per[i] = p;
    scale[i] = ds * mul;
  }
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(per[j + k]);
  }
  for (; j < n; ++j) acc[0] += static_cast<double>(per[j]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

double gp_epilogue(const void* s, int64_t n, double center, bool one_sided, double mul, void* per,
                   void* scale, Dtype acc) {
  if (acc == Dtype::F64) {
    return gp_epilogue_t<double>(static_cast<const double*>(s), n, center, one_sided, mul,
                                 static_cast<double*>(per), static_cast<double*>(scale));
  }
  return gp_epilogue_t<float>(static_cast<const float*>(s), n, static_cast<float>(center), one_sided,
                              static_cast<float>(mul), static_cast<float*>(per), static_cast<float*>(scale));
}

// Dtype switch: f<S>() for the storage type of dt.
template <class F>
decltype(auto) with_dtype(Dtype dt, F&& f) {
  switch (dt) {
    case Dtype::F64: return f(double{});
    case Dtype::F16: return f(c10::Half{});
    case Dtype::BF16: return f(c10::BFloat16{});
    case Dtype::F32:
    default: return f(float{});
  }
}

double sumsq(const void* p, int64_t n, Dtype dt) {
  return with_dtype(dt, [&](auto s) {
    using S = decltype(s);
    return sumsq_t<S>(static_cast<const S*>(p), n);
  });
}

void sumsq_cols(const void* p, int64_t rows, int64_t stride, int64_t width, void* out, Dtype dt) {
  with_dtype(dt, [&](auto s) {
    using S = decltype(s);
    sumsq_cols_t<S>(static_cast<const S*>(p), rows, stride, width, static_cast<acc_t<S>*>(out));
  });
}

void scale(const void* g, void* out, int64_t n, double f, Dtype dt) {
  with_dtype(dt, [&](auto s) {
    using S = decltype(s);
    scale_t<S>(static_cast<const S*>(g), static_cast<S*>(out), n, static_cast<acc_t<S>>(f));
  });
}

void scale_cols(const void* g, void* out, int64_t n, const void* sc, double go, Dtype dt) {
  with_dtype(dt, [&](auto s) {
    using S = decltype(s);
    scale_cols_t<S>(static_cast<const S*>(g), static_cast<S*>(out), n,
                    static_cast<const acc_t<S>*>(sc), static_cast<acc_t<S>>(go));
  });
}

}  // namespace

extern const PenaltyKernels kPenaltyKernels{&sumsq, &sumsq_cols, &scale, &scale_cols, &gp_epilogue};

}  // namespace fusedgan::cpu::CPU_CAPABILITY
