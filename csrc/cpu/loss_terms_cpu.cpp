// CPU kernel of fusedgan::loss_terms (schema in csrc/ops.cpp).
//
// All terms' elements are cut into fixed-size chunks numbered in one table (apex
// multi_tensor_apply style), so one parallel_for covers every term.  Each chunk writes its partial
// sum into its own slot and the slots are added in chunk order: the result bits do not depend on
// the number of threads.  The chunk loop itself is compiled once per SIMD level (kernel_*.cpp);
// this file, compiled for baseline x86-64, picks one at run time.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

#include "buffer_pool.h"
#include "fusedgan/math.h"
#include "fusedgan/ops.h"
#include "loss_terms_cpu.h"

namespace fusedgan::cpu {
namespace {

// Chunks per task: inputs of at most this many chunks run on the calling thread, without waking
// the pool (a GAN logit map is often a few hundred elements).
constexpr int64_t kGrainChunks = 2;

struct Capability {
  ChunkKernel kernel;
  const char* name;
};

bool cpu_has(int level) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (level >= 2) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  }
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  (void)level;
  return false;
#endif
}

// Best level built and supported, capped by FUSEDGAN_CPU_CAPABILITY=default|avx2|avx512.
Capability pick_capability() {
  int cap = 2;
  if (const char* env = std::getenv("FUSEDGAN_CPU_CAPABILITY")) {
    if (!std::strcmp(env, "default") || !std::strcmp(env, "DEFAULT")) cap = 0;
    else if (!std::strcmp(env, "avx2") || !std::strcmp(env, "AVX2")) cap = 1;
  }
#if defined(FUSEDGAN_HAVE_AVX512)
  if (cap >= 2 && cpu_has(2)) return {&AVX512::run_chunks, "avx512"};
#endif
#if defined(FUSEDGAN_HAVE_AVX2)
  if (cap >= 1 && cpu_has(1)) return {&AVX2::run_chunks, "avx2"};
#endif
  (void)cpu_has;
  return {&DEFAULT::run_chunks, "default"};
}

const Capability& capability() {
  static const Capability cap = pick_capability();
  return cap;
}

Dtype dtype_code(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return Dtype::F32;
    case at::kDouble: return Dtype::F64;
    case at::kHalf: return Dtype::F16;
    case at::kBFloat16: return Dtype::BF16;
    default: TORCH_CHECK(false, "fusedgan::loss_terms: logits must be float16, bfloat16, float32 or float64, got ", st);
  }
}

// Label or weight operand of term i: checked, in the acc dtype (`acc`: read in its own precision,
// never rounded to half logits; an operand of another floating dtype is converted once, none when
// it already has it), contiguous, kept alive in `keep`.
Operand operand(const std::optional<at::Tensor>& opt, const at::Tensor& x, at::ScalarType acc, const char* what,
                size_t i, const void** ptr, c10::SmallVectorImpl<at::Tensor>& keep) {
  if (!opt.has_value() || !opt->defined()) return Operand::ARG;
  const at::Tensor& t = *opt;
  TORCH_CHECK(t.is_floating_point(), "fusedgan::loss_terms: ", what, "[", i,
              "] must be a floating-point tensor, got dtype ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), "fusedgan::loss_terms: ", what, "[", i, "] is on ",
              t.device(), " but logits[", i, "] is on ", x.device());
  const int64_t n = t.numel();
  TORCH_CHECK(n == 1 || n == x.numel(), "fusedgan::loss_terms: ", what, "[", i, "] must have 1 or ",
              x.numel(), " elements (the logits' numel), got ", n);
  keep.push_back(t.scalar_type() == acc ? t.contiguous() : t.to(acc).contiguous());
  *ptr = keep.back().const_data_ptr();
  return n == 1 ? Operand::SCALAR : Operand::FULL;
}

}  // namespace

const char* cpu_capability_name() { return capability().name; }

namespace {

using LossTermsOut = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>;

// loss_terms, and with `stats` (a defined [n, kStatCols] acc-dtype tensor to fill) loss_terms_stats.
LossTermsOut loss_terms_impl(
    at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
    const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
    const c10::List<bool>& need_grad, at::Tensor* stats) {
  const size_t n = logits.size();
  TORCH_CHECK(n >= 1, "fusedgan::loss_terms: needs at least one term (logits is empty)");
  TORCH_CHECK(labels.size() == n && weights.size() == n && elems.size() == n &&
                  label_values.size() == n && coefs.size() == n && need_grad.size() == n,
              "fusedgan::loss_terms: all list arguments must have len(logits) = ", n,
              " entries; got labels ", labels.size(), ", weights ", weights.size(), ", elems ",
              elems.size(), ", label_values ", label_values.size(), ", coefs ", coefs.size(),
              ", need_grad ", need_grad.size());
  TORCH_CHECK(reduction >= 0 && reduction < kNumReductions,
              "fusedgan::loss_terms: reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  const at::ScalarType st = logits[0].scalar_type();
  const Dtype dt = dtype_code(st);
  const at::ScalarType acc_st = st == at::kDouble ? at::kDouble : at::kFloat;
  const auto red = static_cast<Reduction>(reduction);

  c10::SmallVector<at::Tensor, 8> keep;  // contiguous inputs, alive until the kernel is done
  c10::SmallVector<TermArgs, 4> args(n);
  c10::SmallVector<int64_t, 5> first_chunk(n + 1);
  std::vector<at::Tensor> grads(n), values(n);
  first_chunk[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& x0 = logits[i];
    TORCH_CHECK(x0.defined(), "fusedgan::loss_terms: logits[", i, "] is undefined");
    TORCH_CHECK(x0.scalar_type() == st, "fusedgan::loss_terms: all logits must share one dtype; logits[0] is ",
                st, ", logits[", i, "] is ", x0.scalar_type());
    TORCH_CHECK(x0.device().is_cpu(), "fusedgan::loss_terms (CPU kernel): logits[", i, "] is on ", x0.device());
    TORCH_CHECK(elems[i] >= 0 && elems[i] < kNumElems, "fusedgan::loss_terms: elems[", i,
                "] must be in [0, ", kNumElems, "), got ", elems[i]);
    keep.push_back(x0.contiguous());
    const at::Tensor x = keep.back();  // a handle, not a reference: operand() below may grow keep
    TermArgs& a = args[i];
    a.x = x.const_data_ptr();
    a.n = x.numel();
    a.elem = static_cast<int>(elems[i]);
    a.label_value = label_values[i];
    a.label_mode = operand(labels.get(i), x, acc_st, "labels", i, &a.label, keep);
    a.weight_mode = operand(weights.get(i), x, acc_st, "weights", i, &a.weight, keep);
    a.value_scale = coefs[i];
    a.grad_scale = red == Reduction::MEAN ? coefs[i] / static_cast<double>(a.n) : coefs[i];
    const auto opts = x.options();
    if (need_grad.get(i)) {
      grads[i] = pooled_empty(x.sizes(), opts);  // warm, mapped pages (buffer_pool.h)
      a.grad = grads[i].mutable_data_ptr();
    } else {
      grads[i] = at::empty({0}, opts);
    }
    if (red == Reduction::NONE) {
      values[i] = at::empty(x.sizes(), opts);
      a.values = values[i].mutable_data_ptr();
    } else {
      values[i] = at::empty({0}, opts);
    }
    first_chunk[i + 1] = first_chunk[i] + (a.n + kChunk - 1) / kChunk;
  }

  const int64_t total_chunks = first_chunk[n];
  c10::SmallVector<double, 16> partials(total_chunks);
  c10::SmallVector<double, 16> stat_partials(stats ? kStatCols * total_chunks : 0);
  const ChunkTable tab{args.data(), first_chunk.data(), static_cast<int>(n), dt,
                       stats ? stat_partials.data() : nullptr};
  const ChunkKernel kernel = capability().kernel;
  if (total_chunks == 0) {
    // every term empty: no kernel call (MEAN gives 0/0 = NaN below, SUM 0)
  } else if (total_chunks <= kGrainChunks) {
    kernel(tab, 0, total_chunks, partials.data());
  } else {
    at::parallel_for(0, total_chunks, kGrainChunks,
                     [&](int64_t c0, int64_t c1) { kernel(tab, c0, c1, partials.data()); });
  }

  // Fixed-order sums: chunk order within a term, term order for the total.
  at::Tensor terms = at::empty({static_cast<int64_t>(n)}, logits[0].options().dtype(acc_st));
  at::Tensor total = at::empty({}, terms.options());
  auto finish = [&](auto* out) {
    using A = std::remove_pointer_t<decltype(out)>;
    A sum = 0;
    for (size_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (int64_t c = first_chunk[i]; c < first_chunk[i + 1]; ++c) s += partials[c];
      // MEAN of an empty tensor is 0/0 = NaN, as in torch.
      if (red == Reduction::MEAN) s /= static_cast<double>(args[i].n);
      out[i] = static_cast<A>(coefs[i] * s);
      sum += out[i];
    }
    *total.mutable_data_ptr<A>() = sum;
  };
  if (acc_st == at::kDouble) finish(terms.mutable_data_ptr<double>());
  else finish(terms.mutable_data_ptr<float>());
  if (stats) {
    // Same fixed chunk order as the loss: per term, the sums of x, sigmoid(x), [x > 0], [x < 0].
    *stats = at::empty({static_cast<int64_t>(n), kStatCols}, terms.options());
    auto fill = [&](auto* out) {
      using A = std::remove_pointer_t<decltype(out)>;
      for (size_t i = 0; i < n; ++i) {
        double s[kStatCols] = {};
        for (int64_t c = first_chunk[i]; c < first_chunk[i + 1]; ++c)
          for (int k = 0; k < kStatCols; ++k) s[k] += stat_partials[kStatCols * c + k];
        for (int k = 0; k < kStatCols; ++k) out[kStatCols * i + k] = static_cast<A>(s[k]);
      }
    };
    if (acc_st == at::kDouble) fill(stats->mutable_data_ptr<double>());
    else fill(stats->mutable_data_ptr<float>());
  }
  return {std::move(total), std::move(terms), std::move(grads), std::move(values)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> loss_terms_cpu(
    at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
    const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
    const c10::List<bool>& need_grad) {
  return loss_terms_impl(logits, labels, weights, elems, label_values, coefs, reduction, need_grad, nullptr);
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>
loss_terms_stats_cpu(at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
                     const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
                     at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
                     const c10::List<bool>& need_grad) {
  at::Tensor stats;
  auto [total, terms, grads, values] =
      loss_terms_impl(logits, labels, weights, elems, label_values, coefs, reduction, need_grad, &stats);
  return {std::move(total), std::move(terms), std::move(grads), std::move(values), std::move(stats)};
}

}  // namespace fusedgan::cpu
