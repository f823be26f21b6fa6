// Pieces shared by the CUDA kernels in csrc/cuda/: accumulation types, 16-byte packs, a
// deterministic block sum, and launch-size constants.
//
// Every reduction is two-stage: each block writes its partial sums into its own slots, and a
// later pass (or the same block, when the launch has one block) adds the slots in a fixed order.
// Block counts depend only on tensor sizes, never on the GPU, so results are bitwise reproducible
// across runs and devices for the same inputs (and the same pointer alignment, which picks the
// vector or scalar path).
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

namespace fusedgan::cuda {

constexpr int kThreads = 256;  // every kernel here runs blocks of this size
constexpr int kWarps = kThreads / 32;

// float maths for fp16 / bf16 / fp32, double for fp64.
template <class S>
using acc_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

// Elements of S in one 16-byte load.
template <class S>
constexpr int kVec = 16 / static_cast<int>(sizeof(S));

// N elements loaded and stored as one (16 bytes by default).
template <class S, int N = kVec<S>>
struct alignas(sizeof(S) * N) Pack {
  S v[N];
};

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class S, int N = kVec<S>>
__device__ __forceinline__ Pack<S, N> load_pack(const S* base, int64_t pack_index) {
  return reinterpret_cast<const Pack<S, N>*>(base)[pack_index];
}

template <class S, int N>
__device__ __forceinline__ void store_pack(S* base, int64_t pack_index, const Pack<S, N>& p) {
  reinterpret_cast<Pack<S, N>*>(base)[pack_index] = p;
}

// Sums K values over the block with a fixed shuffle tree (same inputs, same bits).  The result is
// valid in thread 0.  `smem` holds kWarps * K values; every thread of the block must call this.
template <class T, int K>
__device__ __forceinline__ void block_sum(T (&v)[K], T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
  }
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) smem[warp * K + k] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      v[k] = lane < kWarps ? smem[lane * K + k] : T(0);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
    }
  }
  __syncthreads();  // smem may be reused right after
}

}  // namespace fusedgan::cuda
