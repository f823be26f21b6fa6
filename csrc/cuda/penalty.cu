// CUDA kernels of the gradient-penalty helpers fusedgan::group_sumsq and fusedgan::group_scale_mul
// (contracts: docs/operators.md; schemas: csrc/).  g is viewed, contiguous, as [A, C, B].
//
// group_sumsq reduces over the middle dimension, in two layouts:
//   B == 1 (norm over whole samples): each row of C contiguous elements is cut into blocks, each
//          block leaving one partial sum (16-byte loads when the rows are aligned);
//   B > 1  (norm per pixel): one thread per output (a, b), reading across b (coalesced), with C
//          split into chunks along gridDim.y when there are too few outputs to fill the GPU.
// Partials are added in a fixed order by a second pass; the split depends only on the shape.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "common.cuh"
#include "fusedgan/penalty.h"

namespace fusedgan::cuda {
namespace {

constexpr int64_t kRowElemsPerBlock = 4096;  // B == 1: a row gets ceil(C / this) blocks...
constexpr int64_t kTargetBlocks = 1024;       // ...at most about this many over all rows
constexpr int64_t kTargetThreads = 262144;    // B > 1: split C until about this many threads
constexpr int64_t kMinSplitC = 16;            // ...but each chunk keeps at least this many c
constexpr int64_t kMaxSplits = 1024;

// B == 1.  Block `blockIdx.x` = row a * nsplit + s; writes out[a] directly when nsplit == 1.
template <class S>
__global__ void __launch_bounds__(kThreads) sumsq_rows_kernel(const S* __restrict__ g, int64_t C,
                                                              int64_t nsplit, bool vec,
                                                              double* __restrict__ partials,
                                                              acc_t<S>* __restrict__ out) {
  using A = acc_t<S>;
  constexpr int V = kVec<S>;
  __shared__ A smem[kWarps];
  const int64_t a = blockIdx.x / nsplit, s = blockIdx.x % nsplit;
  const S* row = g + a * C;
  const int64_t first = s * kThreads + threadIdx.x, stride = nsplit * kThreads;
  A acc[1] = {A(0)};
  const int64_t npack = vec ? C / V : 0;
  for (int64_t p = first; p < npack; p += stride) {
    const Pack<S> xp = load_pack(row, p);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A v = static_cast<A>(xp.v[k]);
      acc[0] += v * v;
    }
  }
  for (int64_t j = npack * V + first; j < C; j += stride) {
    const A v = static_cast<A>(row[j]);
    acc[0] += v * v;
  }
  block_sum<A, 1>(acc, smem);
  if (threadIdx.x == 0) {
    if (nsplit == 1) out[a] = acc[0];
    else partials[blockIdx.x] = static_cast<double>(acc[0]);
  }
}

// B > 1.  Thread o = a * B + b of chunk s = blockIdx.y sums c in [s * cs, (s + 1) * cs).
template <class S>
__global__ void __launch_bounds__(kThreads) sumsq_cols_kernel(const S* __restrict__ g, int64_t A_,
                                                              int64_t C, int64_t B, int64_t cs,
                                                              double* __restrict__ partials,
                                                              acc_t<S>* __restrict__ out) {
  using A = acc_t<S>;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (o >= A_ * B) return;
  const int64_t a = o / B, b = o - a * B;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * cs, c1 = std::min(C, c0 + cs);
  const S* p = g + (a * C) * B + b;
  A acc = 0;
  for (int64_t c = c0; c < c1; ++c) {
    const A v = static_cast<A>(p[c * B]);
    acc += v * v;
  }
  if (gridDim.y == 1) out[o] = acc;
  else partials[static_cast<int64_t>(blockIdx.y) * (A_ * B) + o] = static_cast<double>(acc);
}

// out[o] = sum over s < nsplit of partials[o * so + s * ss], in order of s.
template <class A>
__global__ void __launch_bounds__(kThreads) sum_partials_kernel(const double* __restrict__ partials,
                                                                int64_t nout, int64_t nsplit,
                                                                int64_t so, int64_t ss,
                                                                A* __restrict__ out) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (o >= nout) return;
  double s = 0.0;
  for (int64_t k = 0; k < nsplit; ++k) s += partials[o * so + k * ss];
  out[o] = static_cast<A>(s);
}

void check_view(const char* op, const at::Tensor& g, int64_t A, int64_t C, int64_t B) {
  TORCH_CHECK(g.defined() && g.is_cuda(), op, " (CUDA kernel): g must be a CUDA tensor");
  const at::ScalarType st = g.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": g must be float16, bfloat16, float32 or float64, got ", st);
  TORCH_CHECK(A >= 0 && C >= 0 && B >= 0, op, ": A, C, B must be >= 0, got ", A, ", ", C, ", ", B);
  TORCH_CHECK(A * C * B == g.numel(), op, ": A * C * B = ", A, " * ", C, " * ", B,
              " must equal g.numel() = ", g.numel());
}

at::Tensor group_sumsq_cuda(const at::Tensor& g_in, int64_t A, int64_t C, int64_t B) {
  const char* op = "fusedgan::group_sumsq";
  check_view(op, g_in, A, C, B);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::ScalarType acc_st = g_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({A, B}, g_in.options().dtype(acc_st));
  if (out.numel() == 0) return out;
  if (C == 0) return out.zero_();  // a sum over nothing
  const at::Tensor g = g_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto dbl = g.options().dtype(at::kDouble);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "fusedgan_group_sumsq_cuda", [&] {
    using S = scalar_t;
    using Acc = acc_t<S>;
    const S* gp = g.const_data_ptr<S>();
    Acc* op_ = out.mutable_data_ptr<Acc>();
    if (B == 1) {
      const int64_t nsplit = std::max<int64_t>(
          1, std::min(ceil_div(C, kRowElemsPerBlock), ceil_div(kTargetBlocks, A)));
      const int64_t grid = A * nsplit;
      TORCH_CHECK(grid <= INT32_MAX, op, ": too many rows (", A, ")");
      const bool vec = aligned16(gp) && (C * static_cast<int64_t>(sizeof(S))) % 16 == 0;
      at::Tensor partials = at::empty({nsplit > 1 ? grid : 1}, dbl);
      sumsq_rows_kernel<S><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
          gp, C, nsplit, vec, partials.mutable_data_ptr<double>(), op_);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (nsplit > 1) {
        sum_partials_kernel<Acc><<<static_cast<unsigned>(ceil_div(A, kThreads)), kThreads, 0, stream>>>(
            partials.const_data_ptr<double>(), A, nsplit, nsplit, 1, op_);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    } else {
      const int64_t nout = A * B;
      const int64_t nsplit = std::clamp<int64_t>(
          std::min(ceil_div(kTargetThreads, nout), ceil_div(C, kMinSplitC)), 1, kMaxSplits);
      const int64_t cs = ceil_div(C, nsplit);
      const int64_t real_split = ceil_div(C, cs);  // no empty chunks
      const int64_t gx = ceil_div(nout, kThreads);
      TORCH_CHECK(gx <= INT32_MAX, op, ": too many groups (", nout, ")");
      at::Tensor partials = at::empty({real_split > 1 ? real_split * nout : 1}, dbl);
      const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(real_split));
      sumsq_cols_kernel<S><<<grid, kThreads, 0, stream>>>(gp, A, C, B, cs,
                                                            partials.mutable_data_ptr<double>(), op_);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (real_split > 1) {
        sum_partials_kernel<Acc><<<static_cast<unsigned>(gx), kThreads, 0, stream>>>(
            partials.const_data_ptr<double>(), nout, real_split, 1, nout, op_);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return out;
}

// grad_g[i] = scale[a, b] * g[i] * grad_output, i = (a * C + c) * B + b.
template <class S>
__global__ void __launch_bounds__(kThreads) scale_mul_kernel(const S* __restrict__ g,
                                                             const acc_t<S>* __restrict__ scale,
                                                             const acc_t<S>* __restrict__ grad_output,
                                                             int64_t n, int64_t C, int64_t B, bool vec,
                                                             S* __restrict__ out) {
  using A = acc_t<S>;
  constexpr int V = kVec<S>;
  const A go = *grad_output;  // on the device: no host sync
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t CB = C * B;
  // (scale * grad_output) * g, the CPU kernel's order.
  auto value = [&](int64_t i, S gv) {
    const int64_t a = i / CB, b = i - (i / B) * B;
    return static_cast<S>((scale[a * B + b] * go) * static_cast<A>(gv));
  };
  const int64_t npack = vec ? n / V : 0;
  for (int64_t p = first; p < npack; p += stride) {
    const Pack<S> gp = load_pack(g, p);
    Pack<S> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = value(p * V + k, gp.v[k]);
    store_pack(out, p, r);
  }
  for (int64_t j = npack * V + first; j < n; j += stride) out[j] = value(j, g[j]);
}

at::Tensor group_scale_mul_cuda(const at::Tensor& g_in, const at::Tensor& scale_in,
                                const at::Tensor& grad_output_in, int64_t A, int64_t C, int64_t B) {
  const char* op = "fusedgan::group_scale_mul";
  check_view(op, g_in, A, C, B);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::ScalarType acc_st = g_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(scale_in.defined() && scale_in.device() == g_in.device() && scale_in.numel() == A * B,
              op, ": scale must have A * B = ", A * B, " elements on ", g_in.device());
  TORCH_CHECK(grad_output_in.defined() && grad_output_in.device() == g_in.device() &&
                  grad_output_in.numel() == 1,
              op, ": grad_output must be one element on ", g_in.device());
  // No-ops when the dtypes already match (the usual case); never a host sync.
  const at::Tensor scale = scale_in.to(acc_st).contiguous();
  const at::Tensor grad_output = grad_output_in.to(acc_st);
  const at::Tensor g = g_in.contiguous();
  at::Tensor out = at::empty(g_in.sizes(), g.options());
  const int64_t n = g.numel();
  if (n == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "fusedgan_group_scale_mul_cuda", [&] {
    using S = scalar_t;
    using Acc = acc_t<S>;
    const S* gp = g.const_data_ptr<S>();
    S* outp = out.mutable_data_ptr<S>();
    const bool vec = aligned16(gp) && aligned16(outp);
    const int64_t work = vec ? ceil_div(n, kVec<S>) : n;
    const int64_t grid = std::clamp<int64_t>(ceil_div(work, kThreads), 1, 65536);
    scale_mul_kernel<S><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        gp, scale.const_data_ptr<Acc>(), grad_output.const_data_ptr<Acc>(), n, C, B, vec, outp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace fusedgan::cuda

TORCH_LIBRARY_IMPL(fusedgan, CUDA, m) {
  m.impl("group_sumsq", &fusedgan::cuda::group_sumsq_cuda);
  m.impl("group_scale_mul", &fusedgan::cuda::group_scale_mul_cuda);
  // group_sumsq above, then the penalty of math.h's gp_group as tensor operations on the device
  // (csrc/penalty.cpp): a few tiny kernels on [A, B], no host synchronisation.
  m.impl("group_penalty", &fusedgan::group_penalty_composite);
}
