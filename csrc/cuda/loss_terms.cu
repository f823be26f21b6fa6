// CUDA kernels of fusedgan::loss_terms and fusedgan::loss_terms_stats (contracts:
// docs/operators.md; schemas: csrc/).
//
// One launch covers every term of a call: a small block-to-term table travels in the kernel
// arguments (apex multi_tensor_apply style), each term owning a run of blocks.  Each block walks
// its term with a grid-stride loop (16-byte loads when every pointer of the term is aligned),
// evaluates the element function of fusedgan/math.h, writes gradients and per-element values, and
// leaves its partial sums in its own slots.  A one-block pass then adds each term's slots in a
// fixed order.  Calls small enough for one block (most GAN logit maps) do both in a single launch.
#include <ATen/Dispatch.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "common.cuh"
#include "fusedgan/math.h"

namespace fusedgan::cuda {
namespace {

constexpr int kStatsK = kStatCols + 1;   // slots per block with statistics (the value first)
constexpr int kMaxTermsPerLaunch = 16;   // keeps the kernel arguments well under 4 KiB
constexpr int64_t kElemsPerBlock = 4096;  // a term of N elements gets ceil(N / this) blocks...
constexpr int kMaxBlocksPerTerm = 1024;   // ...at most this many (grid-stride beyond)
constexpr int64_t kSingleBlockElems = 16384;  // calls up to this size run in one launch

// Where a label or weight comes from (as in csrc/cpu): the scalar argument, one element in memory
// (broadcast, read on the device), or one element per logit.
enum Operand : int { ARG = 0, SCALAR = 1, FULL = 2 };

struct TermDev {
  const void* x;
  const void* label;
  const void* weight;
  void* grad;    // nullptr: no gradient wanted
  void* values;  // nullptr: reduction is not NONE
  int64_t n;
  int64_t slot0;  // first partial slot of this term
  double label_value;
  double grad_scale;   // coef * scale
  double value_scale;  // coef
  double coef;
  int block0;   // first block of this term in the launch
  int nblocks;  // blocks of this term (0 for an empty term)
  int index;    // position in terms / stats
  int elem;
  int label_mode;
  int weight_mode;
  bool vec;  // all pointers 16-byte aligned: packed loads and stores
};

struct LaunchArgs {
  TermDev t[kMaxTermsPerLaunch];
  double* slots;      // K per block: K = kStatsK with stats (value, x, sigmoid(x), [x > 0], [x < 0]), else 1
  void* terms_out;    // acc dtype, [n_total]
  void* total_out;    // acc dtype, 0-dim
  void* stats_out;    // acc dtype, [n_total, kStatCols]; unused without stats
  int nterms;
  int n_total;
  int reduction;
  bool finish;       // single-block launch: the block also writes terms (and total)
  bool write_total;  // last group of terms: total = sum of all terms, in order
};

template <class A>
__device__ __forceinline__ A sigmoid(A x) {
  // d BCE(x, t = 0) / dx = sigmoid(x): the shared formula, not a second one.  The unused value
  // (its log1p) is dead code after inlining.
  A value, grad;
  bce<A, ScalarOps<A>>(x, A(0), value, grad);
  return grad;
}

// Adds this thread's share of term `a` into acc; writes its gradients and values.
template <class S, int K, Elem E>
__device__ __forceinline__ void run_term(const TermDev& a, int64_t first, int64_t stride,
                                         acc_t<S> (&acc)[K]) {
  using A = acc_t<S>;
  using Ops = ScalarOps<A>;
  constexpr int V = kVec<S>;
  const S* x = static_cast<const S*>(a.x);
  const S* lab = static_cast<const S*>(a.label);
  const S* wt = static_cast<const S*>(a.weight);
  S* grad = static_cast<S*>(a.grad);
  S* vals = static_cast<S*>(a.values);
  const bool lab_full = a.label_mode == FULL;
  const bool has_w = a.weight_mode != ARG;
  const bool w_full = a.weight_mode == FULL;
  const A t_b = a.label_mode == SCALAR ? static_cast<A>(lab[0]) : static_cast<A>(a.label_value);
  const A w_b = a.weight_mode == SCALAR ? static_cast<A>(wt[0]) : A(1);
  const A gscale = static_cast<A>(a.grad_scale);
  const A vscale = static_cast<A>(a.value_scale);

  // Same order of operations as the CPU kernel: (value * w) * coef, (grad * w) * coef * scale.
  auto one = [&](A xv, A tv, A wv, A& g_out, A& v_out) {
    A v, g;
    elem_eval<E, A, Ops>(xv, tv, v, g);
    if (has_w) {
      v = v * wv;
      g = g * wv;
    }
    g_out = g * gscale;
    v_out = v * vscale;
    acc[0] += v;
    if constexpr (K == kStatsK) {
      acc[1] += xv;
      acc[2] += sigmoid(xv);
      acc[3] += xv > A(0) ? A(1) : A(0);
      acc[4] += xv < A(0) ? A(1) : A(0);
    }
  };

  const int64_t npack = a.vec ? a.n / V : 0;
  for (int64_t p = first; p < npack; p += stride) {
    const Pack<S> xp = load_pack(x, p);
    Pack<S> tp, wp, gp, vp;
    if (lab_full) tp = load_pack(lab, p);
    if (w_full) wp = load_pack(wt, p);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      A g, v;
      one(static_cast<A>(xp.v[k]), lab_full ? static_cast<A>(tp.v[k]) : t_b,
          w_full ? static_cast<A>(wp.v[k]) : w_b, g, v);
      gp.v[k] = static_cast<S>(g);
      vp.v[k] = static_cast<S>(v);
    }
    if (grad) store_pack(grad, p, gp);
    if (vals) store_pack(vals, p, vp);
  }
  // Scalar path: the whole term when unaligned, else the tail after the last full pack.
  for (int64_t j = npack * V + first; j < a.n; j += stride) {
    A g, v;
    one(static_cast<A>(x[j]), lab_full ? static_cast<A>(lab[j]) : t_b,
        w_full ? static_cast<A>(wt[j]) : w_b, g, v);
    if (grad) grad[j] = static_cast<S>(g);
    if (vals) vals[j] = static_cast<S>(v);
  }
}

// The element function is uniform per term: pick its loop once, from every Elem of math.h
// (0 .. kNumElems-1), so an element function added there is compiled in here automatically.
template <class S, int K, int... Es>
__device__ __forceinline__ void run_term_dispatch(const TermDev& a, int64_t first, int64_t stride,
                                                  acc_t<S> (&acc)[K],
                                                  std::integer_sequence<int, Es...>) {
  ((a.elem == Es ? run_term<S, K, static_cast<Elem>(Es)>(a, first, stride, acc) : void()), ...);
}

// Adds each term's slots in a fixed order and writes terms (and stats, and the total).
template <class A, int K>
__device__ void finish_terms(const LaunchArgs& p) {
  __shared__ double smem[kWarps * K];
  A* terms = static_cast<A*>(p.terms_out);
  for (int i = 0; i < p.nterms; ++i) {
    const TermDev& a = p.t[i];
    double s[K] = {};
    for (int64_t j = threadIdx.x; j < a.nblocks; j += kThreads) {
#pragma unroll
      for (int k = 0; k < K; ++k) s[k] += p.slots[(a.slot0 + j) * K + k];
    }
    block_sum<double, K>(s, smem);
    if (threadIdx.x == 0) {
      // MEAN of an empty tensor is 0/0 = NaN, as in torch.
      const double v = p.reduction == static_cast<int>(Reduction::MEAN) ? s[0] / static_cast<double>(a.n) : s[0];
      terms[a.index] = static_cast<A>(a.coef * v);
      if constexpr (K == kStatsK) {
        A* stats = static_cast<A*>(p.stats_out);
#pragma unroll
        for (int k = 1; k < K; ++k) stats[a.index * kStatCols + (k - 1)] = static_cast<A>(s[k]);
      }
    }
  }
  // Earlier groups' terms were written by earlier launches on this stream.
  if (p.write_total && threadIdx.x == 0) {
    A sum = 0;
    for (int i = 0; i < p.n_total; ++i) sum += terms[i];
    *static_cast<A*>(p.total_out) = sum;
  }
}

template <class S, int K>
__global__ void __launch_bounds__(kThreads) loss_terms_kernel(const LaunchArgs p) {
  using A = acc_t<S>;
  __shared__ A smem[kWarps * K];
  const int b = blockIdx.x;
  for (int i = 0; i < p.nterms; ++i) {
    const TermDev& a = p.t[i];
    if (b < a.block0 || b >= a.block0 + a.nblocks) continue;  // uniform across the block
    const int64_t local = b - a.block0;
    A acc[K] = {};
    run_term_dispatch<S, K>(a, local * kThreads + threadIdx.x, static_cast<int64_t>(a.nblocks) * kThreads,
                            acc, std::make_integer_sequence<int, kNumElems>{});
    block_sum<A, K>(acc, smem);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) p.slots[(a.slot0 + local) * K + k] = static_cast<double>(acc[k]);
    }
  }
  if (p.finish) {
    __syncthreads();  // thread 0's slot writes are visible to the block after this
    finish_terms<A, K>(p);
  }
}

template <class A, int K>
__global__ void __launch_bounds__(kThreads) finish_kernel(const LaunchArgs p) {
  finish_terms<A, K>(p);
}

// Label or weight operand of term i: checked, made contiguous, kept alive in `keep`.
int operand(const std::optional<at::Tensor>& opt, const at::Tensor& x, const char* op, const char* what,
            size_t i, const void** ptr, std::vector<at::Tensor>& keep) {
  if (!opt.has_value() || !opt->defined()) return ARG;
  const at::Tensor& t = *opt;
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", what, "[", i, "] has dtype ",
              t.scalar_type(), " but logits[", i, "] has dtype ", x.scalar_type());
  TORCH_CHECK(t.device() == x.device(), op, ": ", what, "[", i, "] is on ", t.device(),
              " but logits[", i, "] is on ", x.device());
  const int64_t n = t.numel();
  TORCH_CHECK(n == 1 || n == x.numel(), op, ": ", what, "[", i, "] must have 1 or ", x.numel(),
              " elements (the logits' numel), got ", n);
  keep.push_back(t.contiguous());
  *ptr = keep.back().const_data_ptr();
  return n == 1 ? SCALAR : FULL;
}

struct Outputs {
  at::Tensor total, terms, stats;
  std::vector<at::Tensor> grads, values;
};

template <int K>
Outputs run(const char* op, at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
            const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
            at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
            const c10::List<bool>& need_grad) {
  const size_t n = logits.size();
  TORCH_CHECK(n >= 1, op, ": needs at least one term (logits is empty)");
  TORCH_CHECK(labels.size() == n && weights.size() == n && elems.size() == n &&
                  label_values.size() == n && coefs.size() == n && need_grad.size() == n,
              op, ": all list arguments must have len(logits) = ", n, " entries; got labels ",
              labels.size(), ", weights ", weights.size(), ", elems ", elems.size(),
              ", label_values ", label_values.size(), ", coefs ", coefs.size(), ", need_grad ",
              need_grad.size());
  TORCH_CHECK(reduction >= 0 && reduction < kNumReductions, op,
              ": reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  TORCH_CHECK(n <= static_cast<size_t>(INT32_MAX), op, ": too many terms");
  const at::ScalarType st = logits[0].scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": logits must be float16, bfloat16, float32 or float64, got ", st);
  const at::ScalarType acc_st = st == at::kDouble ? at::kDouble : at::kFloat;
  const auto red = static_cast<Reduction>(reduction);
  const c10::Device dev = logits[0].device();
  TORCH_CHECK(dev.is_cuda(), op, " (CUDA kernel): logits[0] is on ", dev);
  const c10::cuda::CUDAGuard guard(dev);

  std::vector<at::Tensor> keep;  // contiguous inputs, alive until the launches are queued
  keep.reserve(3 * n);
  std::vector<TermDev> terms(n);
  Outputs out;
  out.grads.resize(n);
  out.values.resize(n);
  int64_t total_elems = 0;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& x0 = logits[i];
    TORCH_CHECK(x0.defined(), op, ": logits[", i, "] is undefined");
    TORCH_CHECK(x0.scalar_type() == st, op, ": all logits must share one dtype; logits[0] is ", st,
                ", logits[", i, "] is ", x0.scalar_type());
    TORCH_CHECK(x0.device() == dev, op, ": all logits must be on one device; logits[0] is on ", dev,
                ", logits[", i, "] is on ", x0.device());
    TORCH_CHECK(elems[i] >= 0 && elems[i] < kNumElems, op, ": elems[", i, "] must be in [0, ",
                kNumElems, "), got ", elems[i]);
    keep.push_back(x0.contiguous());
    const at::Tensor x = keep.back();
    TermDev& a = terms[i];
    a = TermDev{};
    a.x = x.const_data_ptr();
    a.n = x.numel();
    a.elem = static_cast<int>(elems[i]);
    a.index = static_cast<int>(i);
    a.label_value = label_values[i];
    a.label_mode = operand(labels.get(i), x, op, "labels", i, &a.label, keep);
    a.weight_mode = operand(weights.get(i), x, op, "weights", i, &a.weight, keep);
    a.coef = coefs[i];
    a.value_scale = coefs[i];
    a.grad_scale = red == Reduction::MEAN ? coefs[i] / static_cast<double>(a.n) : coefs[i];
    const auto opts = x.options();
    out.grads[i] = need_grad.get(i) ? at::empty(x.sizes(), opts) : at::empty({0}, opts);
    if (need_grad.get(i)) a.grad = out.grads[i].mutable_data_ptr();
    out.values[i] = red == Reduction::NONE ? at::empty(x.sizes(), opts) : at::empty({0}, opts);
    if (red == Reduction::NONE) a.values = out.values[i].mutable_data_ptr();
    a.vec = aligned16(a.x) && (a.label_mode != FULL || aligned16(a.label)) &&
            (a.weight_mode != FULL || aligned16(a.weight)) && aligned16(a.grad) && aligned16(a.values);
    a.nblocks = static_cast<int>(std::min<int64_t>(ceil_div(a.n, kElemsPerBlock), kMaxBlocksPerTerm));
    total_elems += a.n;
  }

  const bool single = n <= static_cast<size_t>(kMaxTermsPerLaunch) && total_elems <= kSingleBlockElems;
  int64_t nslots = 0;
  for (TermDev& a : terms) {
    if (single) a.nblocks = 1;  // one block serves every term
    a.slot0 = nslots;
    nslots += a.nblocks;
  }
  const auto acc_opts = logits[0].options().dtype(acc_st);
  out.terms = at::empty({static_cast<int64_t>(n)}, acc_opts);
  out.total = at::empty({}, acc_opts);
  out.stats = K == kStatsK ? at::empty({static_cast<int64_t>(n), kStatCols}, acc_opts) : at::Tensor();
  at::Tensor slots = at::empty({std::max<int64_t>(nslots, 1) * K}, acc_opts.dtype(at::kDouble));

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "fusedgan_loss_terms_cuda", [&] {
    using S = scalar_t;
    using A = acc_t<S>;
    for (size_t g0 = 0; g0 < n; g0 += kMaxTermsPerLaunch) {
      const size_t g1 = std::min(n, g0 + kMaxTermsPerLaunch);
      LaunchArgs p{};
      p.slots = slots.mutable_data_ptr<double>();
      p.terms_out = out.terms.mutable_data_ptr();
      p.total_out = out.total.mutable_data_ptr();
      p.stats_out = K == kStatsK ? out.stats.mutable_data_ptr() : nullptr;
      p.nterms = static_cast<int>(g1 - g0);
      p.n_total = static_cast<int>(n);
      p.reduction = static_cast<int>(reduction);
      p.finish = single;
      p.write_total = g1 == n;
      int64_t grid = 0;
      for (size_t i = g0; i < g1; ++i) {
        TermDev a = terms[i];
        a.block0 = single ? 0 : static_cast<int>(grid);
        grid = single ? 1 : grid + a.nblocks;
        p.t[i - g0] = a;
      }
      if (grid > 0) {
        loss_terms_kernel<S, K><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (!single) {
        finish_kernel<A, K><<<1, kThreads, 0, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> loss_terms_cuda(
    at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
    const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
    const c10::List<bool>& need_grad) {
  Outputs o = run<1>("fusedgan::loss_terms", logits, labels, weights, elems, label_values, coefs,
                     reduction, need_grad);
  return {std::move(o.total), std::move(o.terms), std::move(o.grads), std::move(o.values)};
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>
loss_terms_stats_cuda(at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
                      const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
                      at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                      int64_t reduction, const c10::List<bool>& need_grad) {
  Outputs o = run<kStatsK>("fusedgan::loss_terms_stats", logits, labels, weights, elems, label_values,
                     coefs, reduction, need_grad);
  return {std::move(o.total), std::move(o.terms), std::move(o.grads), std::move(o.values),
          std::move(o.stats)};
}

}  // namespace
}  // namespace fusedgan::cuda

TORCH_LIBRARY_IMPL(fusedgan, CUDA, m) {
  m.impl("loss_terms", &fusedgan::cuda::loss_terms_cuda);
  m.impl("loss_terms_stats", &fusedgan::cuda::loss_terms_stats_cuda);
}
