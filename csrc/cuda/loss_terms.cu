// CUDA kernels of fusedgan::loss_terms, fusedgan::loss_terms_stats and fusedgan::loss_grads
// (contracts: docs/operators.md; schemas: csrc/ops.cpp).
//
// One launch covers up to 16 terms of one element function: a small block-to-term table travels
// in the kernel arguments (apex multi_tensor_apply style), each term owning a run of blocks.  The
// kernel is a template on the element function (chosen on the host, with_elem below), so each
// instantiation holds one formula of fusedgan/math.h and stays within 64 registers
// (__launch_bounds__(kThreads, kMinBlocks): at least 50% occupancy; tools/ptxas_check.py checks
// it).  Each block walks its term with a grid-stride loop that keeps kUnroll 16-byte loads of the
// logits in flight per thread (when every pointer of the term is aligned), evaluates the element
// function, writes gradients and per-element values, and leaves its partial sums in its own slots.
// A one-block pass then adds each term's slots in a fixed order.  Calls small enough for one block
// (one element function, at most kSingleBlockElems elements) do both in a single launch.
//
// loss_grads (the GPU backward of gan_loss) is the same loop without sums: the gradient
// recomputed from the logits, times grad_output, in one pass (read x, read grad_output only when
// it is per element, write the gradient).
#include <ATen/Dispatch.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <tuple>
#include <utility>
#include <vector>

#include "common.cuh"
#include "fusedgan/math.h"
#include "fusedgan/ops.h"

namespace fusedgan::cuda {
namespace {

constexpr int kStatsK = kStatCols + 1;   // slots per block with statistics (the value first)
constexpr int kMaxTermsPerLaunch = 16;   // keeps the kernel arguments well under 4 KiB
constexpr int64_t kElemsPerBlock = 4096;  // a term of N elements gets ceil(N / this) blocks...
constexpr int kMaxBlocksPerTerm = 1024;   // ...at most this many (grid-stride beyond)
// Calls up to this size run in one launch: one block of 256 threads, each with 16 elements
// (1 to 4 loads of 16 bytes, all issued before the first is used).
constexpr int64_t kSingleBlockElems = 4096;
// Resident blocks per SM the kernels are compiled for: 4 x 256 threads = 50% occupancy on sm_80 /
// sm_90, i.e. at most 64 registers per thread (tools/ptxas_check.py fails above that or on spills).
constexpr int kMinBlocks = 4;

// Where a label, weight or grad_output comes from (fusedgan/codes.h Operand): the scalar
// argument, one element in memory (broadcast, read on the device), or one element per logit.
constexpr int ARG = static_cast<int>(Operand::ARG);
constexpr int SCALAR = static_cast<int>(Operand::SCALAR);
constexpr int FULL = static_cast<int>(Operand::FULL);

// K: the partial sums a block leaves per term: 1 (the loss), kStatsK (the loss and the
// statistics), or 0 for loss_grads (no sums; gradients times grad_output).
constexpr int kGradsOnly = 0;
template <int K>
constexpr int kAccSlots = K > 0 ? K : 1;
// Elements of one load: 16 bytes, except fp64, loaded one element (8 bytes) at a time because
// its exp and log1p (libdevice) take too many registers to evaluate two side by side.
template <class S>
constexpr int kLoadVec = sizeof(S) == 8 ? 1 : kVec<S>;

// Loads of the logits each thread issues before using the first, per dtype and kind of kernel:
// as many as fit in 64 registers without a spill (tools/ptxas_check.py).  PLAIN terms (no
// per-element label, weight or grad_output: the usual GAN logits) keep 2 to 4 in flight; a term
// with per-element operands loads their packs too and keeps one.  A 16-byte pack of a 2-byte type
// holds 8 elements, each evaluated in registers: fewer packs for those, and with statistics (4
// more sums and a sigmoid per element).
template <class S, int K, bool PLAIN>
constexpr int kUnroll = !PLAIN ? 1
                        : sizeof(S) == 8 ? (K == kStatsK ? 2 : 4)
                        : sizeof(S) == 4 ? (K == kStatsK ? 2 : 4)
                                         : (K == kStatsK ? 1 : 2);

// Per element function: SOFTPLUS_NEG's fp32 kernel spills with four packs in flight (12 bytes at
// 64 registers on sm_90), so it keeps half as many.
template <class S, Elem E, int K, bool PLAIN>
constexpr int kUnrollFor = (E == Elem::SOFTPLUS_NEG && sizeof(S) == 4 && kUnroll<S, K, PLAIN> > 1)
                               ? kUnroll<S, K, PLAIN> / 2
                               : kUnroll<S, K, PLAIN>;

struct TermDev {
  const void* x;
  const void* label;   // acc dtype (labels and weights are read in their own precision)
  const void* weight;  // acc dtype
  const void* go;  // loss_grads: grad_output (SCALAR: one acc-dtype element; FULL: x's dtype)
  void* grad;      // nullptr: no gradient wanted
  void* values;    // nullptr: reduction is not NONE
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
  int go_mode;
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

// Pack p of V elements of an acc-dtype operand (a label or weight), as 16-byte loads: two for the
// 8-element packs of 2-byte logits (the operand array is 16-byte aligned: all_aligned).
template <class A, int V>
__device__ __forceinline__ Pack<A, V> load_acc_pack(const A* base, int64_t p) {
  constexpr int W = V < kVec<A> ? V : kVec<A>;  // elements per load
  Pack<A, V> out;
#pragma unroll
  for (int h = 0; h < V / W; ++h) {
    const Pack<A, W> part = load_pack<A, W>(base, p * (V / W) + h);
#pragma unroll
    for (int k = 0; k < W; ++k) out.v[h * W + k] = part.v[k];
  }
  return out;
}

template <class A>
__device__ __forceinline__ A sigmoid(A x) {
  // d BCE(x, t = 0) / dx = sigmoid(x): the shared formula, not a second one.  The unused value
  // (its log1p) is dead code after inlining.
  A value, grad;
  bce<A, ScalarOps<A>>(x, A(0), value, grad);
  return grad;
}

// Adds this thread's share of term `a` into acc; writes its gradients (times grad_output for
// K == kGradsOnly) and values.
template <class S, Elem E, int K, bool PLAIN>
__device__ __forceinline__ void run_term(const TermDev& a, int64_t first, int64_t stride,
                                         acc_t<S> (&acc)[kAccSlots<K>]) {
  using A = acc_t<S>;
  using Ops = ScalarOps<A>;
  constexpr int V = kLoadVec<S>;
  using P = Pack<S, V>;
  constexpr bool kGrads = K == kGradsOnly;
  const S* x = static_cast<const S*>(a.x);
  const A* lab = static_cast<const A*>(a.label);
  const A* wt = static_cast<const A*>(a.weight);
  const S* gop = static_cast<const S*>(a.go);
  S* grad = static_cast<S*>(a.grad);
  S* vals = static_cast<S*>(a.values);
  const bool lab_full = !PLAIN && a.label_mode == FULL;
  const bool has_w = a.weight_mode != ARG;
  const bool w_full = !PLAIN && a.weight_mode == FULL;
  const bool go_full = !PLAIN && kGrads && a.go_mode == FULL;
  const A t_b = a.label_mode == SCALAR ? lab[0] : static_cast<A>(a.label_value);
  const A w_b = a.weight_mode == SCALAR ? wt[0] : A(1);
  const A go_b = kGrads && a.go_mode == SCALAR ? static_cast<const A*>(a.go)[0] : A(1);
  const A gscale = static_cast<A>(a.grad_scale);
  const A vscale = static_cast<A>(a.value_scale);

  // Same order of operations as the CPU kernel: (value * w) * coef, (grad * w) * coef * scale
  // (then * grad_output for loss_grads).
  auto one = [&](A xv, A tv, A wv, A gv, A& g_out, A& v_out) {
    A v, g;
    elem_eval<E, A, Ops>(xv, tv, v, g);
    if (has_w) {
      v = v * wv;
      g = g * wv;
    }
    g_out = g * gscale;
    if constexpr (kGrads) {
      g_out = g_out * gv;
    } else {
      v_out = v * vscale;
      acc[0] += v;
    }
    if constexpr (K == kStatsK) {
      acc[1] += xv;
      acc[2] += sigmoid(xv);
      acc[3] += xv > A(0) ? A(1) : A(0);
      acc[4] += xv < A(0) ? A(1) : A(0);
    }
  };

  const int64_t npack = a.vec ? a.n / V : 0;
  for (int64_t p0 = first; p0 < npack; p0 += kUnrollFor<S, E, K, PLAIN> * stride) {
    // Every load of x first (kUnroll 16-byte loads in flight), then the math pack by pack.
    P xp[kUnrollFor<S, E, K, PLAIN>];
#pragma unroll
    for (int u = 0; u < kUnrollFor<S, E, K, PLAIN>; ++u) {
      if (p0 + u * stride < npack) xp[u] = load_pack<S, V>(x, p0 + u * stride);
    }
#pragma unroll
    for (int u = 0; u < kUnrollFor<S, E, K, PLAIN>; ++u) {
      const int64_t p = p0 + u * stride;
      if (p >= npack) break;
      P gp, vp, op;
      Pack<A, V> tp, wp;
      if (lab_full) tp = load_acc_pack<A, V>(lab, p);
      if (w_full) wp = load_acc_pack<A, V>(wt, p);
      if (go_full) op = load_pack<S, V>(gop, p);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A g, v;
        one(static_cast<A>(xp[u].v[k]), lab_full ? tp.v[k] : t_b,
            w_full ? wp.v[k] : w_b, go_full ? static_cast<A>(op.v[k]) : go_b, g, v);
        gp.v[k] = static_cast<S>(g);
        if constexpr (!kGrads) vp.v[k] = static_cast<S>(v);
      }
      if (grad) store_pack(grad, p, gp);
      if constexpr (!kGrads) {
        if (vals) store_pack(vals, p, vp);
      }
    }
  }
  // Scalar path: the whole term when unaligned, else the tail after the last full pack.
  for (int64_t j = npack * V + first; j < a.n; j += stride) {
    A g, v;
    one(static_cast<A>(x[j]), lab_full ? lab[j] : t_b,
        w_full ? wt[j] : w_b, go_full ? static_cast<A>(gop[j]) : go_b, g, v);
    if (grad) grad[j] = static_cast<S>(g);
    if constexpr (!kGrads) {
      if (vals) vals[j] = static_cast<S>(v);
    }
  }
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

// loss_terms / loss_terms_stats (K = 1 / kStatsK) for terms of element function E (PLAIN: without
// per-element operands).
template <class S, Elem E, int K, bool PLAIN>
__global__ void __launch_bounds__(kThreads, kMinBlocks) loss_terms_kernel(const LaunchArgs p) {
  using A = acc_t<S>;
  __shared__ A smem[kWarps * K];
  const int b = blockIdx.x;
  for (int i = 0; i < p.nterms; ++i) {
    const TermDev& a = p.t[i];
    if (b < a.block0 || b >= a.block0 + a.nblocks) continue;  // uniform across the block
    const int64_t local = b - a.block0;
    A acc[K] = {};
    run_term<S, E, K, PLAIN>(a, local * kThreads + threadIdx.x, static_cast<int64_t>(a.nblocks) * kThreads, acc);
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
__global__ void __launch_bounds__(kThreads, kMinBlocks) finish_kernel(const LaunchArgs p) {
  finish_terms<A, K>(p);
}

// loss_grads for terms of element function E: gradients times grad_output, no sums.
template <class S, Elem E, bool PLAIN>
__global__ void __launch_bounds__(kThreads, kMinBlocks) loss_grads_kernel(const LaunchArgs p) {
  const int b = blockIdx.x;
  for (int i = 0; i < p.nterms; ++i) {
    const TermDev& a = p.t[i];
    if (b < a.block0 || b >= a.block0 + a.nblocks) continue;
    const int64_t local = b - a.block0;
    acc_t<S> unused[1];
    run_term<S, E, kGradsOnly, PLAIN>(a, local * kThreads + threadIdx.x, static_cast<int64_t>(a.nblocks) * kThreads,
                               unused);
  }
}

// f(std::integral_constant<Elem, E>{}) for the element function `code`: one kernel
// instantiation per Elem of codes.h.  A new Elem fails to compile here until it has its case.
template <class F>
void with_elem(int code, const char* op, F&& f) {
  static_assert(kNumElems == 8, "a new Elem in fusedgan/codes.h: add its case to with_elem");
  switch (static_cast<Elem>(code)) {
    case Elem::BCE: return f(std::integral_constant<Elem, Elem::BCE>{});
    case Elem::HALF_SQUARE: return f(std::integral_constant<Elem, Elem::HALF_SQUARE>{});
    case Elem::LINEAR: return f(std::integral_constant<Elem, Elem::LINEAR>{});
    case Elem::HINGE: return f(std::integral_constant<Elem, Elem::HINGE>{});
    case Elem::ABS: return f(std::integral_constant<Elem, Elem::ABS>{});
    case Elem::SOFTPLUS_NEG: return f(std::integral_constant<Elem, Elem::SOFTPLUS_NEG>{});
    case Elem::SQ_RELU_ABOVE: return f(std::integral_constant<Elem, Elem::SQ_RELU_ABOVE>{});
    case Elem::SQ_RELU_BELOW: return f(std::integral_constant<Elem, Elem::SQ_RELU_BELOW>{});
  }
  TORCH_CHECK(false, op, " (CUDA kernel): no kernel for element function ", code);
}

bool plain(const TermDev& a) { return a.label_mode != FULL && a.weight_mode != FULL && a.go_mode != FULL; }

// The launches of one call: terms of one element function and plainness (plain() above), at most
// kMaxTermsPerLaunch each, in order of first appearance.
std::vector<std::vector<size_t>> launch_groups(const std::vector<TermDev>& terms) {
  std::vector<std::vector<size_t>> groups;
  std::vector<int> open(2 * kNumElems, -1);  // the group still taking terms, per kernel
  for (size_t i = 0; i < terms.size(); ++i) {
    int& g = open[2 * terms[i].elem + (plain(terms[i]) ? 1 : 0)];
    if (g < 0 || groups[g].size() == static_cast<size_t>(kMaxTermsPerLaunch)) {
      g = static_cast<int>(groups.size());
      groups.emplace_back();
    }
    groups[g].push_back(i);
  }
  return groups;
}

// f(std::bool_constant<plain(a)>{}).
template <class F>
void with_plain(const TermDev& a, F&& f) {
  if (plain(a)) f(std::true_type{});
  else f(std::false_type{});
}

// Label or weight operand of term i: checked, in the acc dtype (read in its own precision, never
// rounded to half logits; another floating dtype is converted once, none when it already has
// it), contiguous, kept alive in `keep`.
int operand(const std::optional<at::Tensor>& opt, const at::Tensor& x, const char* op, const char* what,
            size_t i, const void** ptr, std::vector<at::Tensor>& keep) {
  if (!opt.has_value() || !opt->defined()) return ARG;
  const at::Tensor& t = *opt;
  TORCH_CHECK(t.is_floating_point(), op, ": ", what, "[", i, "] must be a floating-point tensor, got dtype ",
              t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), op, ": ", what, "[", i, "] is on ", t.device(),
              " but logits[", i, "] is on ", x.device());
  const int64_t n = t.numel();
  TORCH_CHECK(n == 1 || n == x.numel(), op, ": ", what, "[", i, "] must have 1 or ", x.numel(),
              " elements (the logits' numel), got ", n);
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  keep.push_back(t.scalar_type() == acc ? t.contiguous() : t.to(acc).contiguous());
  *ptr = keep.back().const_data_ptr();
  return n == 1 ? SCALAR : FULL;
}

// The checks shared by the three operators, and each term's inputs (contiguous, kept alive in
// `keep`) and scalars.  Gradient, value and grad_output pointers are the caller's.
std::vector<TermDev> prepare(const char* op, at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
                             const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
                             at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
                             size_t n_flags, const char* flags_name, std::vector<at::Tensor>& keep) {
  const size_t n = logits.size();
  TORCH_CHECK(n >= 1, op, ": needs at least one term (logits is empty)");
  TORCH_CHECK(labels.size() == n && weights.size() == n && elems.size() == n &&
                  label_values.size() == n && coefs.size() == n && n_flags == n,
              op, ": all list arguments must have len(logits) = ", n, " entries; got labels ",
              labels.size(), ", weights ", weights.size(), ", elems ", elems.size(),
              ", label_values ", label_values.size(), ", coefs ", coefs.size(), ", ", flags_name, " ",
              n_flags);
  TORCH_CHECK(reduction >= 0 && reduction < kNumReductions, op,
              ": reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  TORCH_CHECK(n <= static_cast<size_t>(INT32_MAX), op, ": too many terms");
  const at::ScalarType st = logits[0].scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": logits must be float16, bfloat16, float32 or float64, got ", st);
  const c10::Device dev = logits[0].device();
  TORCH_CHECK(dev.is_cuda(), op, " (CUDA kernel): logits[0] is on ", dev);
  const auto red = static_cast<Reduction>(reduction);
  keep.reserve(4 * n);
  std::vector<TermDev> terms(n);
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
    const at::Tensor x = keep.back();  // a handle: `keep` grows below
    TermDev& a = terms[i];
    a = TermDev{};
    a.x = x.const_data_ptr();
    a.n = x.numel();
    a.elem = static_cast<int>(elems[i]);
    a.index = static_cast<int>(i);
    a.label_value = label_values[i];
    a.label_mode = operand(labels.get(i), x, op, "labels", i, &a.label, keep);
    a.weight_mode = operand(weights.get(i), x, op, "weights", i, &a.weight, keep);
    a.go_mode = ARG;
    a.coef = coefs[i];
    a.value_scale = coefs[i];
    a.grad_scale = red == Reduction::MEAN ? coefs[i] / static_cast<double>(a.n) : coefs[i];
    a.nblocks = static_cast<int>(std::min<int64_t>(ceil_div(a.n, kElemsPerBlock), kMaxBlocksPerTerm));
  }
  return terms;
}

bool all_aligned(const TermDev& a) {
  return aligned16(a.x) && (a.label_mode != FULL || aligned16(a.label)) &&
         (a.weight_mode != FULL || aligned16(a.weight)) && (a.go_mode != FULL || aligned16(a.go)) &&
         aligned16(a.grad) && aligned16(a.values);
}

// The kernel arguments of one launch group; block0 of each term set from its position.
LaunchArgs group_args(const std::vector<TermDev>& terms, const std::vector<size_t>& group, bool single,
                      int64_t* grid) {
  LaunchArgs p{};
  p.nterms = static_cast<int>(group.size());
  *grid = 0;
  for (size_t k = 0; k < group.size(); ++k) {
    TermDev a = terms[group[k]];
    a.block0 = single ? 0 : static_cast<int>(*grid);
    *grid = single ? 1 : *grid + a.nblocks;
    p.t[k] = a;
  }
  return p;
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
  std::vector<at::Tensor> keep;  // contiguous inputs, alive until the launches are queued
  std::vector<TermDev> terms = prepare(op, logits, labels, weights, elems, label_values, coefs, reduction,
                                       need_grad.size(), "need_grad", keep);
  const size_t n = terms.size();
  const at::ScalarType st = logits[0].scalar_type();
  const at::ScalarType acc_st = st == at::kDouble ? at::kDouble : at::kFloat;
  const auto red = static_cast<Reduction>(reduction);
  const c10::cuda::CUDAGuard guard(logits[0].device());
  Outputs out;
  out.grads.resize(n);
  out.values.resize(n);
  int64_t total_elems = 0;
  for (size_t i = 0; i < n; ++i) {
    TermDev& a = terms[i];
    const auto opts = logits[i].options();
    out.grads[i] = need_grad.get(i) ? at::empty(logits[i].sizes(), opts) : at::empty({0}, opts);
    if (need_grad.get(i)) a.grad = out.grads[i].mutable_data_ptr();
    out.values[i] = red == Reduction::NONE ? at::empty(logits[i].sizes(), opts) : at::empty({0}, opts);
    if (red == Reduction::NONE) a.values = out.values[i].mutable_data_ptr();
    a.vec = all_aligned(a);
    total_elems += a.n;
  }

  const std::vector<std::vector<size_t>> groups = launch_groups(terms);
  const bool single = groups.size() == 1 && total_elems <= kSingleBlockElems;
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
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      int64_t grid = 0;
      LaunchArgs p = group_args(terms, groups[gi], single, &grid);
      p.slots = slots.mutable_data_ptr<double>();
      p.terms_out = out.terms.mutable_data_ptr();
      p.total_out = out.total.mutable_data_ptr();
      p.stats_out = K == kStatsK ? out.stats.mutable_data_ptr() : nullptr;
      p.n_total = static_cast<int>(n);
      p.reduction = static_cast<int>(reduction);
      p.finish = single;
      p.write_total = gi + 1 == groups.size();
      if (grid > 0) {
        const TermDev& a0 = terms[groups[gi][0]];
        with_elem(a0.elem, op, [&](auto e) {
          with_plain(a0, [&](auto pl) {
            loss_terms_kernel<S, decltype(e)::value, K, decltype(pl)::value>
                <<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
          });
        });
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

}  // namespace

// The operators' CUDA kernels (registered by csrc/ops.cpp).

// fusedgan::loss_grads: grads[i] = gradient of term i times grad_outputs[i] (0-dim or one
// element: broadcast; else one per logit), recomputed from the logits; an empty [0] tensor where
// grad_outputs[i] is None.
std::vector<at::Tensor> loss_grads_cuda(at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
                                        const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
                                        at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                                        int64_t reduction, const c10::List<std::optional<at::Tensor>>& grad_outputs) {
  const char* op = "fusedgan::loss_grads";
  std::vector<at::Tensor> keep;
  std::vector<TermDev> all = prepare(op, logits, labels, weights, elems, label_values, coefs, reduction,
                                     grad_outputs.size(), "grad_outputs", keep);
  const at::ScalarType st = logits[0].scalar_type();
  const at::ScalarType acc_st = st == at::kDouble ? at::kDouble : at::kFloat;
  const c10::cuda::CUDAGuard guard(logits[0].device());
  std::vector<at::Tensor> out(all.size());
  std::vector<TermDev> terms;  // the terms with a grad_output and elements
  for (size_t i = 0; i < all.size(); ++i) {
    const at::Tensor& x = logits[i];
    const std::optional<at::Tensor> go = grad_outputs.get(i);
    if (!go.has_value() || !go->defined()) {
      out[i] = at::empty({0}, x.options());
      continue;
    }
    TORCH_CHECK(go->device() == x.device(), op, ": grad_outputs[", i, "] is on ", go->device(),
                " but logits[", i, "] is on ", x.device());
    TORCH_CHECK(go->is_floating_point(), op, ": grad_outputs[", i, "] must be floating point, got ",
                go->scalar_type());
    TORCH_CHECK(go->numel() == 1 || go->numel() == x.numel(), op, ": grad_outputs[", i, "] must have 1 or ",
                x.numel(), " elements (the logits' numel), got ", go->numel());
    TermDev a = all[i];
    const bool expanded_scalar = go->numel() > 1 && go->dim() > 0 &&
                                 std::all_of(go->strides().begin(), go->strides().end(),
                                             [](int64_t s) { return s == 0; });  // e.g. from .sum()
    if (go->numel() == 1 || expanded_scalar) {
      keep.push_back(go->as_strided({1}, {1}).to(acc_st));  // no copy when it is already acc dtype
      a.go_mode = SCALAR;
    } else {
      // Per element, in the logits' dtype (what backward passes for reduction NONE).
      keep.push_back(go->to(st).contiguous());
      a.go_mode = FULL;
    }
    a.go = keep.back().const_data_ptr();
    out[i] = at::empty(x.sizes(), x.options());
    a.grad = out[i].mutable_data_ptr();
    a.vec = all_aligned(a);
    if (a.n > 0) terms.push_back(a);
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "fusedgan_loss_grads_cuda", [&] {
    using S = scalar_t;
    for (const std::vector<size_t>& group : launch_groups(terms)) {
      int64_t grid = 0;
      LaunchArgs p = group_args(terms, group, false, &grid);
      const TermDev& a0 = terms[group[0]];
      with_elem(a0.elem, op, [&](auto e) {
        with_plain(a0, [&](auto pl) {
          loss_grads_kernel<S, decltype(e)::value, decltype(pl)::value>
              <<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
        });
      });
      C10_CUDA_KERNEL_LAUNCH_CHECK();
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

}  // namespace fusedgan::cuda
