// CUDA kernels of the gradient-penalty operators fusedgan::group_sumsq, fusedgan::group_penalty
// and fusedgan::group_scale_mul (contracts: docs/operators.md; schemas: csrc/ops.cpp).  g is
// viewed, contiguous, as [A, C, B]; group (a, b) is the column g[a, :, b].
//
// Stage 1 (sums of squares) reduces over the middle dimension, in two layouts:
//   B == 1 (norm over whole samples): each row of C contiguous elements is cut into blocks, each
//          block leaving one partial sum (16-byte loads when the rows are aligned);
//   B > 1  (norm per pixel): one thread per output (a, b), reading across b (coalesced), with C
//          split into chunks along gridDim.y when there are too few outputs to fill the GPU.
// Stage 2 adds each group's partials in a fixed order: for group_sumsq that is the result; for
// group_penalty the same kernel goes on to the penalty of each group (math.h's gp_group: sqrt,
// center, one-sided, square, and the scale d value / d g / g), and the reduction over the groups
// (per-block sums, added in block order by the last block to finish).  A single group (r1, or
// norm="batch") is summed by the whole block, not by one thread.  The split depends only on the
// shape, so the bits do too.  group_penalty is two launches, its backward (group_scale_mul) one.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common.cuh"
#include "fusedgan/math.h"
#include "fusedgan/ops.h"
#include "fusedgan/penalty.h"

namespace fusedgan::cuda {
namespace {

constexpr int64_t kRowElemsPerBlock = 4096;  // B == 1: a row gets ceil(C / this) blocks...
constexpr int64_t kTargetBlocks = 1024;       // ...at most about this many over all rows
constexpr int64_t kTargetThreads = 262144;    // B > 1: split C until about this many threads
constexpr int64_t kMinSplitC = 16;            // ...but each chunk keeps at least this many c
constexpr int64_t kMaxSplits = 1024;
constexpr int64_t kMaxFinishBlocks = 1024;    // stage 2 of group_penalty: at most this many blocks
// 4 resident blocks of 256 threads per SM: at most 64 registers (tools/ptxas_check.py).
constexpr int kMinBlocks = 4;

// B == 1.  Block `blockIdx.x` = row a * nsplit + s; writes out[a] directly when nsplit == 1.
template <class S>
__global__ void __launch_bounds__(kThreads, kMinBlocks) sumsq_rows_kernel(const S* __restrict__ g, int64_t C,
                                                              int64_t nsplit, bool vec,
                                                              double* __restrict__ partials,
                                                              acc_t<S>* __restrict__ out,
                                                              unsigned int* __restrict__ ticket) {
  using A = acc_t<S>;
  constexpr int V = kVec<S>;
  __shared__ A smem[kWarps];
  if (ticket != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *ticket = 0u;  // for stage 2
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
__global__ void __launch_bounds__(kThreads, kMinBlocks) sumsq_cols_kernel(const S* __restrict__ g, int64_t A_,
                                                              int64_t C, int64_t B, int64_t cs,
                                                              double* __restrict__ partials,
                                                              acc_t<S>* __restrict__ out,
                                                              unsigned int* __restrict__ ticket) {
  using A = acc_t<S>;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (ticket != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *ticket = 0u;
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

// Group o's sum of squares: its partials added in order of s, or (no partials) stage 1's sum.
struct Partials {
  const double* p;  // nullptr: stage 1 wrote the sums (one split)
  int64_t nsplit, so, ss;  // partial s of group o at p[o * so + s * ss]
};

// Thread `lane` of `team` threads: the sum of partials s = lane, lane + team, ... of group o.
__device__ __forceinline__ double partial_share(const Partials& q, int64_t o, int lane, int team) {
  double s = 0.0;
  for (int64_t k = lane; k < q.nsplit; k += team) s += q.p[o * q.so + k * q.ss];
  return s;
}

// group_sumsq's stage 2: out[o] = the sum of group o's partials.  One group (norm="batch", r1):
// the whole block adds its up to kMaxSplits partials (fixed tree), not one thread.
template <class A>
__global__ void __launch_bounds__(kThreads, kMinBlocks) sum_partials_kernel(const Partials q, int64_t nout,
                                                                            A* __restrict__ out) {
  __shared__ double smem[kWarps];
  if (nout == 1) {
    double s[1] = {partial_share(q, 0, threadIdx.x, kThreads)};
    block_sum<double, 1>(s, smem);
    if (threadIdx.x == 0) out[0] = static_cast<A>(s[0]);
    return;
  }
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (o >= nout) return;
  out[o] = static_cast<A>(partial_share(q, o, 0, 1));
}

// group_penalty's stage 2 (after stage 1 of group_sumsq), one launch: each group's sum of
// squares, its penalty and scale, and the reduction over the groups.
template <class A>
struct PenaltyArgs {
  Partials q;
  const A* sums;      // stage 1's sums when q.p is nullptr
  int64_t ngroups;
  int kind;           // PenaltyKind
  int reduction;      // Reduction
  double center, gamma, batch;
  bool one_sided;
  A* value;           // [ngroups] for NONE, else 0-dim
  A* scale;           // [ngroups]
  double* block_sums; // [gridDim.x]: each block's sum of the per-group values
  unsigned int* ticket;  // zeroed by stage 1; counts the blocks that are done
};

template <class A>
__device__ __forceinline__ A group_sumsq_of(const PenaltyArgs<A>& p, int64_t o) {
  return p.q.p ? static_cast<A>(partial_share(p.q, o, 0, 1)) : p.sums[o];
}

template <class A>
__global__ void __launch_bounds__(kThreads, kMinBlocks) penalty_finish_kernel(const PenaltyArgs<A> p) {
  __shared__ double smem[kWarps];
  __shared__ bool last;
  const bool none = p.reduction == static_cast<int>(Reduction::NONE);
  if (p.ngroups == 1) {  // r1, norm="batch": one group, one block (the whole block sums)
    double s[1] = {p.q.p ? partial_share(p.q, 0, threadIdx.x, kThreads) : 0.0};
    block_sum<double, 1>(s, smem);
    if (threadIdx.x != 0) return;
    const A ss = p.q.p ? static_cast<A>(s[0]) : p.sums[0];
    if (p.kind == static_cast<int>(PenaltyKind::R1)) {  // the CPU kernel's order of operations
      p.value[0] = static_cast<A>((p.gamma / 2) * (static_cast<double>(ss) / p.batch));
      p.scale[0] = static_cast<A>(p.gamma / p.batch);
      return;
    }
    A per, ds;
    gp_group<A>(ss, static_cast<A>(p.center), p.one_sided, per, ds);
    p.scale[0] = ds;  // MEAN over one group: times 1
    p.value[0] = per;  // NONE, SUM and MEAN of one group alike
    return;
  }
  // MEAN: every group's scale times 1 / groups (rounded to A once, as the CPU kernel).
  const A mul = p.reduction == static_cast<int>(Reduction::MEAN)
                    ? static_cast<A>(1.0 / static_cast<double>(p.ngroups)) : A(1);
  const A center = static_cast<A>(p.center);
  double local[1] = {0.0};
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; o < p.ngroups;
       o += static_cast<int64_t>(gridDim.x) * kThreads) {
    A per, ds;
    gp_group<A>(group_sumsq_of(p, o), center, p.one_sided, per, ds);
    p.scale[o] = ds * mul;
    if (none) p.value[o] = per;
    else local[0] += static_cast<double>(per);
  }
  if (none) return;  // uniform over the grid
  block_sum<double, 1>(local, smem);
  if (threadIdx.x == 0) {
    p.block_sums[blockIdx.x] = local[0];
    __threadfence();  // the block's sum is visible before the ticket says so
    last = atomicAdd(p.ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // The last block adds the blocks' sums in block order (the same bits whichever block is last).
  double t[1] = {0.0};
  for (int64_t j = threadIdx.x; j < gridDim.x; j += kThreads) t[0] += __ldcg(p.block_sums + j);
  block_sum<double, 1>(t, smem);
  if (threadIdx.x == 0) {
    // MEAN over no groups cannot happen here (ngroups > 1).
    p.value[0] = static_cast<A>(p.reduction == static_cast<int>(Reduction::SUM)
                                    ? t[0] : t[0] / static_cast<double>(p.ngroups));
  }
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

// Stage 1 for g viewed as [A, C, B] (C > 0, A * B > 0): per-group sums of squares into `out`
// ([A * B], acc dtype) when one split suffices, else double partials (returned with their layout).
// `ticket`, when given, is zeroed by the launch (for group_penalty's stage 2).
template <class S>
Partials launch_sumsq(const char* op, const S* gp, int64_t A, int64_t C, int64_t B, acc_t<S>* out,
                      unsigned int* ticket, at::Tensor& partials, const at::TensorOptions& dbl,
                      cudaStream_t stream) {
  if (B == 1) {
    const int64_t nsplit = std::max<int64_t>(
        1, std::min(ceil_div(C, kRowElemsPerBlock), ceil_div(kTargetBlocks, A)));
    const int64_t grid = A * nsplit;
    TORCH_CHECK(grid <= INT32_MAX, op, ": too many rows (", A, ")");
    const bool vec = aligned16(gp) && (C * static_cast<int64_t>(sizeof(S))) % 16 == 0;
    partials = at::empty({nsplit > 1 ? grid : 1}, dbl);
    sumsq_rows_kernel<S><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        gp, C, nsplit, vec, partials.mutable_data_ptr<double>(), out, ticket);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return Partials{nsplit > 1 ? partials.const_data_ptr<double>() : nullptr, nsplit, nsplit, 1};
  }
  const int64_t nout = A * B;
  const int64_t nsplit = std::clamp<int64_t>(
      std::min(ceil_div(kTargetThreads, nout), ceil_div(C, kMinSplitC)), 1, kMaxSplits);
  const int64_t cs = ceil_div(C, nsplit);
  const int64_t real_split = ceil_div(C, cs);  // no empty chunks
  const int64_t gx = ceil_div(nout, kThreads);
  TORCH_CHECK(gx <= INT32_MAX, op, ": too many groups (", nout, ")");
  partials = at::empty({real_split > 1 ? real_split * nout : 1}, dbl);
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(real_split));
  sumsq_cols_kernel<S><<<grid, kThreads, 0, stream>>>(gp, A, C, B, cs, partials.mutable_data_ptr<double>(),
                                                        out, ticket);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return Partials{real_split > 1 ? partials.const_data_ptr<double>() : nullptr, real_split, 1, nout};
}

}  // namespace

// The operators' CUDA kernels (registered by csrc/ops.cpp), with the scale_mul_kernel below.

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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "fusedgan_group_sumsq_cuda", [&] {
    using S = scalar_t;
    using Acc = acc_t<S>;
    Acc* outp = out.mutable_data_ptr<Acc>();
    at::Tensor partials;
    const Partials q = launch_sumsq<S>(op, g.const_data_ptr<S>(), A, C, B, outp, nullptr, partials,
                                       g.options().dtype(at::kDouble), stream);
    if (q.p != nullptr) {
      const int64_t nout = A * B;
      sum_partials_kernel<Acc><<<static_cast<unsigned>(nout == 1 ? 1 : ceil_div(nout, kThreads)), kThreads, 0,
                                 stream>>>(q, nout, outp);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

// fusedgan::group_penalty: stage 1 (launch_sumsq), then penalty_finish_kernel; outputs as the
// CPU kernel (csrc/cpu/penalty_cpu.cpp): value 0-dim (or [A, B] for NONE) and scale [A, B], both
// in the acc dtype.
std::tuple<at::Tensor, at::Tensor> group_penalty_cuda(const at::Tensor& g_in, int64_t A, int64_t C, int64_t B,
                                                      int64_t kind, double center, bool one_sided,
                                                      int64_t reduction, double gamma, int64_t batch) {
  const char* op = "fusedgan::group_penalty";
  check_group_penalty_args(A, B, kind, reduction);
  check_view(op, g_in, A, C, B);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::ScalarType acc_st = g_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto opts = g_in.options().dtype(acc_st);
  const bool none = reduction == static_cast<int64_t>(Reduction::NONE);
  const int64_t groups = A * B;
  at::Tensor value = none ? at::empty({A, B}, opts) : at::empty({}, opts);
  at::Tensor scale = at::empty({A, B}, opts);
  if (groups == 0) {  // no groups: the sum is 0, the mean 0 / 0 = NaN (as torch's mean)
    if (!none) value.fill_(reduction == static_cast<int64_t>(Reduction::SUM) ? 0.0 : std::nan(""));
    return {value, scale};
  }
  const at::Tensor g = g_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t nblocks = groups == 1 ? 1 : std::min(ceil_div(groups, kThreads), kMaxFinishBlocks);
  at::Tensor ticket = C == 0 ? at::zeros({1}, g.options().dtype(at::kInt)) : at::empty({1}, g.options().dtype(at::kInt));
  at::Tensor block_sums = at::empty({nblocks}, g.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "fusedgan_group_penalty_cuda", [&] {
    using S = scalar_t;
    using Acc = acc_t<S>;
    at::Tensor sums = at::empty({groups}, opts);
    at::Tensor partials;
    PenaltyArgs<Acc> p{};
    if (C == 0) {
      sums.zero_();  // sums over nothing
      p.q = Partials{nullptr, 1, 1, 1};
    } else {
      p.q = launch_sumsq<S>(op, g.const_data_ptr<S>(), A, C, B, sums.mutable_data_ptr<Acc>(),
                            reinterpret_cast<unsigned int*>(ticket.mutable_data_ptr<int>()), partials,
                            g.options().dtype(at::kDouble), stream);
    }
    p.sums = sums.const_data_ptr<Acc>();
    p.ngroups = groups;
    p.kind = static_cast<int>(kind);
    p.reduction = static_cast<int>(reduction);
    p.center = center;
    p.gamma = gamma;
    p.batch = static_cast<double>(batch);
    p.one_sided = one_sided;
    p.value = value.mutable_data_ptr<Acc>();
    p.scale = scale.mutable_data_ptr<Acc>();
    p.block_sums = block_sums.mutable_data_ptr<double>();
    p.ticket = reinterpret_cast<unsigned int*>(ticket.mutable_data_ptr<int>());
    penalty_finish_kernel<Acc><<<static_cast<unsigned>(nblocks), kThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {value, scale};
}

namespace {

// grad_g[i] = scale[a, b] * g[i] * grad_output, i = (a * C + c) * B + b.  The group of a pack
// costs at most two 64-bit divisions (one when B == 1) for all of its kVec elements, which then
// step through (a, c, b) by increments; the scalar path (unaligned, or the tail) divides per element.
template <class S>
__global__ void __launch_bounds__(kThreads, kMinBlocks) scale_mul_kernel(const S* __restrict__ g,
                                                             const acc_t<S>* __restrict__ scale,
                                                             const acc_t<S>* __restrict__ grad_output,
                                                             int64_t n, int64_t C, int64_t B, bool vec,
                                                             S* __restrict__ out) {
  using A = acc_t<S>;
  constexpr int V = kVec<S>;
  const A go = *grad_output;  // on the device: no host sync
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  // (scale * grad_output) * g, the CPU kernel's order.
  const int64_t npack = vec ? n / V : 0;
  for (int64_t p = first; p < npack; p += stride) {
    const Pack<S> gp = load_pack(g, p);
    const int64_t i0 = p * V;
    int64_t a, c, b;
    if (B == 1) {
      a = i0 / C;
      c = i0 - a * C;
      b = 0;
    } else {
      const int64_t r = i0 / B;
      b = i0 - r * B;
      a = r / C;
      c = r - a * C;
    }
    A f = scale[a * B + b] * go;
    Pack<S> res;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      res.v[k] = static_cast<S>(f * static_cast<A>(gp.v[k]));
      if (k + 1 < V) {  // the next element's group
        if (++b == B) {
          b = 0;
          if (++c == C) {
            c = 0;
            ++a;
          }
        }
        if (B > 1 || c == 0) f = scale[a * B + b] * go;  // a new group (inside the pack: p < npack)
      }
    }
    store_pack(out, p, res);
  }
  for (int64_t j = npack * V + first; j < n; j += stride) {
    const int64_t a = j / (C * B), b = j - (j / B) * B;
    out[j] = static_cast<S>((scale[a * B + b] * go) * static_cast<A>(g[j]));
  }
}

}  // namespace

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

}  // namespace fusedgan::cuda
