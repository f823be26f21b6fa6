// Vector loads and stores shared by the CPU kernels (kernel_impl.h, penalty_kernel_impl.h): one
// step of a loop reads kStep storage elements into K accumulation-type vectors.  Float16 and
// bfloat16 are widened to float (one Vectorized<Half> = two float vectors), float64 stays double.
// Included inside each SIMD translation unit after it defines CPU_CAPABILITY.
#pragma once

#ifndef CPU_CAPABILITY
#error "define CPU_CAPABILITY before including vec_io.h"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "fusedgan/math.h"

namespace fusedgan::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

template <class S>
using acc_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

template <class S>
struct Io {
  using A = acc_t<S>;
  using V = Vectorized<A>;
  static constexpr int K = 1;
  static constexpr int64_t kStep = V::size();
  static FG_INLINE void load(const S* p, int64_t cnt, V* out) { out[0] = V::loadu(p, cnt); }
  static FG_INLINE void store(S* p, const V* in, int64_t cnt) { in[0].store(p, cnt); }
};

template <class S>
struct IoReduced {
  using A = float;
  using V = Vectorized<float>;
  static constexpr int K = 2;
  static constexpr int64_t kStep = Vectorized<S>::size();
  static_assert(kStep == 2 * V::size());
  static FG_INLINE void load(const S* p, int64_t cnt, V* out) {
    auto [a, b] = at::vec::convert_to_float<S>(Vectorized<S>::loadu(p, cnt));
    out[0] = a;
    out[1] = b;
  }
  static FG_INLINE void store(S* p, const V* in, int64_t cnt) {
    at::vec::convert_from_float<S>(in[0], in[1]).store(p, cnt);
  }
};
template <>
struct Io<c10::Half> : IoReduced<c10::Half> {};
template <>
struct Io<c10::BFloat16> : IoReduced<c10::BFloat16> {};

// Lanes of vector k (of K) that hold valid elements when a step loads cnt elements.
template <class V>
FG_INLINE int64_t lanes(int64_t cnt, int k) {
  return std::clamp<int64_t>(cnt - static_cast<int64_t>(k) * V::size(), 0, V::size());
}

}  // namespace
}  // namespace fusedgan::cpu::CPU_CAPABILITY
