// VecOps: the math.h ops policy for at::vec::Vectorized<float/double>, so the element functions
// of fusedgan/math.h run on whole SIMD registers.  Included only by kernel translation units
// that define CPU_CAPABILITY (see kernel_impl.h); everything here lives in that namespace.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "fusedgan/math.h"

namespace fusedgan::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

template <class A>
struct VecOps;

template <class A>
struct VecOpsCommon {
  using V = Vectorized<A>;
  using Mask = V;  // all-ones lanes where true, as Vectorized comparisons return
  static FG_INLINE V c(double v) { return V(static_cast<A>(v)); }
  static FG_INLINE V abs(const V& x) { return x.abs(); }
  static FG_INLINE V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  // at::vec::clamp_min returns a NaN first argument unchanged (max(lo, a) in x86 order).
  static FG_INLINE V clamp_min(const V& a, const V& lo) { return at::vec::clamp_min(a, lo); }
  static FG_INLINE Mask ge(const V& a, const V& b) { return a >= b; }
  static FG_INLINE Mask gt(const V& a, const V& b) { return a > b; }
  static FG_INLINE V select(const Mask& m, const V& a, const V& b) { return V::blendv(b, a, m); }
};

template <>
struct VecOps<float> : VecOpsCommon<float> {
  static FG_INLINE V round(const V& a) { return a.round(); }
  static FG_INLINE V scale_pow2(const V& p, const V& n) {
    using VI = Vectorized<int32_t>;
    const VI ni = at::vec::convert_to_int_of_same_size(n);
    const VI n1 = ni >> VI(1);
    const VI n2 = ni - n1;
    const V s1 = at::vec::cast<float>((n1 + VI(127)) << VI(23));
    const V s2 = at::vec::cast<float>((n2 + VI(127)) << VI(23));
    return p * s1 * s2;
  }
  static FG_INLINE V exp_nonpos(const V& a) { return fast_exp_nonpos<V, VecOps>(a); }
  static FG_INLINE V log1p_unit(const V& e) { return fast_log1p_unit<V, VecOps>(e); }
};

template <>
struct VecOps<double> : VecOpsCommon<double> {
  // Sleef (1 ulp) under AVX2/AVX-512, std:: per lane otherwise.
  static FG_INLINE V exp_nonpos(const V& a) { return a.exp(); }
  static FG_INLINE V log1p_unit(const V& e) { return e.log1p(); }
};

}  // namespace fusedgan::cpu::CPU_CAPABILITY
