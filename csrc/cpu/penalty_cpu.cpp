// CPU kernels of fusedgan::group_sumsq and fusedgan::group_scale_mul (schemas: csrc/ops.cpp;
// contract: csrc/penalty.cpp, docs/operators.md).
//
// g is viewed, contiguous, as [A, C, B]; group (a, b) is the column g[a, :, b].
// Determinism: the work is cut into tasks whose boundaries depend only on (A, C, B), never on the
// thread count; each task writes its own output slots (or partial sums), and partials are added
// in a fixed order.  So the bits are the same for 1 or N threads.  The inner loops are compiled
// once per SIMD level (penalty_kernel_*.cpp); the level is the one loss_terms uses
// (cpu_capability_name(), capped by FUSEDGAN_CPU_CAPABILITY).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>
#include <cstring>
#include <vector>

#include "buffer_pool.h"
#include "fusedgan/math.h"
#include "fusedgan/ops.h"
#include "fusedgan/penalty.h"
#include "penalty_cpu.h"

namespace fusedgan::cpu {
namespace {

// Elements summed by one task of group_sumsq (rows of at most this are one task; longer rows are
// cut into chunks of this length whose double partials are added in order).
constexpr int64_t kSumChunk = 8192;
// Columns per task when the groups are columns (B > 1).
constexpr int64_t kTileB = 1024;
// Elements per task of group_scale_mul (elementwise: any split gives the same bits).
constexpr int64_t kScaleGrain = 32768;

const PenaltyKernels& kernels() {
  static const PenaltyKernels* k = [] {
    const char* name = cpu_capability_name();
#if defined(FUSEDGAN_HAVE_AVX512)
    if (!std::strcmp(name, "avx512")) return &AVX512::kPenaltyKernels;
#endif
#if defined(FUSEDGAN_HAVE_AVX2)
    if (!std::strcmp(name, "avx2")) return &AVX2::kPenaltyKernels;
#endif
    (void)name;
    return &DEFAULT::kPenaltyKernels;
  }();
  return *k;
}

Dtype dtype_of(const at::Tensor& g, const char* op) {
  switch (g.scalar_type()) {
    case at::kFloat: return Dtype::F32;
    case at::kDouble: return Dtype::F64;
    case at::kHalf: return Dtype::F16;
    case at::kBFloat16: return Dtype::BF16;
    default:
      TORCH_CHECK(false, "fusedgan::", op, ": g must be float16, bfloat16, float32 or float64, got ",
                  g.scalar_type());
  }
}

void check_layout(const at::Tensor& g, int64_t A, int64_t C, int64_t B, const char* op) {
  TORCH_CHECK(g.device().is_cpu(), "fusedgan::", op, " (CPU kernel): g is on ", g.device());
  TORCH_CHECK(A >= 0 && C >= 0 && B >= 0, "fusedgan::", op, ": A, C, B must be >= 0, got ", A,
              ", ", C, ", ", B);
  TORCH_CHECK(A * C * B == g.numel(), "fusedgan::", op, ": A * C * B = ", A * C * B,
              " must equal g.numel() = ", g.numel());
}

template <class T>
void sumsq_impl(const at::Tensor& x, int64_t A, int64_t C, int64_t B, Dtype dt, T* out) {
  const PenaltyKernels& k = kernels();
  const size_t es = x.element_size();
  const char* base = static_cast<const char*>(x.const_data_ptr());
  if (B == 1) {
    if (C <= kSumChunk) {
      // Whole rows per task.
      const int64_t grain = std::max<int64_t>(1, kSumChunk / std::max<int64_t>(C, 1));
      at::parallel_for(0, A, grain, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a) out[a] = static_cast<T>(k.sumsq(base + a * C * es, C, dt));
      });
      return;
    }
    const int64_t nck = (C + kSumChunk - 1) / kSumChunk;
    std::vector<double> part(A * nck);
    at::parallel_for(0, A * nck, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t a = t / nck, c0 = (t % nck) * kSumChunk;
        part[t] = k.sumsq(base + (a * C + c0) * es, std::min(kSumChunk, C - c0), dt);
      }
    });
    at::parallel_for(0, A, 64, [&](int64_t a0, int64_t a1) {
      for (int64_t a = a0; a < a1; ++a) {
        double s = 0.0;
        for (int64_t i = 0; i < nck; ++i) s += part[a * nck + i];
        out[a] = static_cast<T>(s);
      }
    });
    return;
  }
  // Columns: tasks of (a, c-chunk, b-tile); each sums its columns over its rows and writes them
  // to slots of its own (no zero-filling, no read-modify-write).
  const int64_t tile = std::min(B, kTileB);
  const int64_t nb = (B + tile - 1) / tile;
  const int64_t rows = std::max<int64_t>(1, kSumChunk / tile);
  const int64_t nc = (C + rows - 1) / rows;
  if (nc == 0) {  // C == 0: empty groups, whose sums are 0
    std::fill(out, out + A * B, T(0));
    return;
  }
  std::vector<T> part;
  T* dst = out;  // one c-chunk: straight into the output
  if (nc > 1) {
    part.resize(A * nc * B);
    dst = part.data();
  }
  at::parallel_for(0, A * nc * nb, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t a = t / (nc * nb), ci = (t / nb) % nc, bi = t % nb;
      const int64_t c0 = ci * rows, b0 = bi * tile;
      k.sumsq_cols(base + ((a * C + c0) * B + b0) * es, std::min(rows, C - c0), B,
                   std::min(tile, B - b0), dst + (a * nc + ci) * B + b0, dt);
    }
  });
  if (nc > 1) {
    at::parallel_for(0, A * B, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t a = i / B, b = i % B;
        T s = 0;
        for (int64_t ci = 0; ci < nc; ++ci) s += part[(a * nc + ci) * B + b];
        out[i] = s;
      }
    });
  }
}

}  // namespace

at::Tensor group_sumsq_cpu(const at::Tensor& g, int64_t A, int64_t C, int64_t B) {
  const Dtype dt = dtype_of(g, "group_sumsq");
  check_layout(g, A, C, B, "group_sumsq");
  const at::ScalarType acc = dt == Dtype::F64 ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({A, B}, g.options().dtype(acc));
  if (A * B == 0) return out;
  const at::Tensor x = g.contiguous();
  if (acc == at::kDouble) sumsq_impl(x, A, C, B, dt, out.mutable_data_ptr<double>());
  else sumsq_impl(x, A, C, B, dt, out.mutable_data_ptr<float>());
  return out;
}

at::Tensor group_scale_mul_cpu(const at::Tensor& g, const at::Tensor& scale,
                               const at::Tensor& grad_output, int64_t A, int64_t C, int64_t B) {
  const Dtype dt = dtype_of(g, "group_scale_mul");
  check_layout(g, A, C, B, "group_scale_mul");
  const at::ScalarType acc = dt == Dtype::F64 ? at::kDouble : at::kFloat;
  TORCH_CHECK(scale.numel() == A * B, "fusedgan::group_scale_mul: scale must have A * B = ", A * B,
              " elements, got ", scale.numel());
  TORCH_CHECK(grad_output.numel() == 1, "fusedgan::group_scale_mul: grad_output must have one "
              "element, got ", grad_output.numel());
  TORCH_CHECK(scale.device().is_cpu() && grad_output.device().is_cpu(),
              "fusedgan::group_scale_mul (CPU kernel): scale and grad_output must be CPU tensors");
  // The gradient is the one g-sized output: from the buffer pool (warm, already mapped pages).
  at::Tensor out = pooled_empty(g.sizes(), g.options());
  const int64_t n = g.numel();
  if (n == 0) return out;
  const at::Tensor x = g.contiguous();
  const at::Tensor s = scale.to(acc).contiguous();
  // grad_output lives in CPU memory: reading it is a load, not a device synchronisation.
  const double go = grad_output.to(at::kDouble).reshape({}).const_data_ptr<double>()[0];
  const PenaltyKernels& k = kernels();
  const size_t es = x.element_size();
  const char* src = static_cast<const char*>(x.const_data_ptr());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  const void* sp = s.const_data_ptr();
  const int64_t row = C * B;  // elements of one a
  at::parallel_for(0, n, kScaleGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1;) {
      if (B == 1) {
        const int64_t a = i / row, end = std::min(i1, (a + 1) * row);
        // (scale * grad_output) rounded to acc once per group, then times g.
        const double f = acc == at::kDouble
                             ? static_cast<const double*>(sp)[a] * go
                             : static_cast<double>(static_cast<const float*>(sp)[a] * static_cast<float>(go));
        k.scale(src + i * es, dst + i * es, end - i, f, dt);
        i = end;
      } else {
        const int64_t r = i / B, b = i % B, a = r / C, end = std::min(i1, (r + 1) * B);
        const size_t as = acc == at::kDouble ? sizeof(double) : sizeof(float);
        k.scale_cols(src + i * es, dst + i * es, end - i,
                     static_cast<const char*>(sp) + (a * B + b) * as, go, dt);
        i = end;
      }
    }
  });
  return out;
}

// Groups per task of the penalty epilogue: fixed, so the partial sums (and the bits) do not
// depend on the thread count.
constexpr int64_t kGroupGrain = 4096;

// The gradient penalty of `groups` groups in `ntask` tasks fixed by the shape: task t covers the
// groups [i0, i0 + cnt) = range(t) (cnt <= max_cnt) and sums(t, buf) returns their sums of
// squares (a pointer into an [A, B] sums tensor, or `buf`, a per-thread scratch of max_cnt).  Each
// task runs the vectorised epilogue (gp_group of math.h) and leaves a double partial sum of the
// per-group values; the partials are added in order, so the bits do not depend on the thread count.
template <class T, class Range, class Sums>
void gp_tasks(int64_t groups, int64_t ntask, int64_t max_cnt, Range range, Sums sums, double center,
              bool one_sided, Reduction reduction, T* value, T* scale) {
  const bool none = reduction == Reduction::NONE;
  // MEAN: the scale of every group divided by the number of groups.
  const double mul = reduction == Reduction::MEAN
                         ? static_cast<double>(static_cast<T>(1.0 / static_cast<double>(groups)))
                         : 1.0;
  const Dtype acc = std::is_same_v<T, double> ? Dtype::F64 : Dtype::F32;
  const PenaltyKernels& k = kernels();
  std::vector<double> part(none ? 0 : ntask);
  at::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> sbuf(max_cnt), buf(none ? 0 : max_cnt);  // per-group values, summed and dropped
    for (int64_t t = t0; t < t1; ++t) {
      const auto [i0, cnt] = range(t);
      const T* s = sums(t, sbuf.data());
      T* per = none ? value + i0 : buf.data();
      const double total = k.gp_epilogue(s, cnt, center, one_sided, mul, per, scale + i0, acc);
      if (!none) part[t] = total;
    }
  });
  if (none) return;
  double total = 0.0;
  for (double p : part) total += p;
  // MEAN over no groups is 0 / 0 = NaN, as torch's mean().
  value[0] = static_cast<T>(reduction == Reduction::SUM ? total : total / static_cast<double>(groups));
}

// The penalty from the per-group sums of squares (fusedgan::group_penalty, docs/operators.md).
// The pixel norm has a group per pixel (a million for [64, 3, 128, 128]), hence the tasks.
template <class T>
void penalty_epilogue(const T* sumsq, int64_t groups, PenaltyKind kind, double center, bool one_sided,
                      Reduction reduction, double gamma, int64_t batch, T* value, T* scale) {
  if (kind == PenaltyKind::R1) {  // one group: the whole tensor
    const double s = groups ? static_cast<double>(sumsq[0]) : 0.0;
    value[0] = static_cast<T>((gamma / 2) * (s / static_cast<double>(batch)));
    if (groups) scale[0] = static_cast<T>(gamma / static_cast<double>(batch));
    return;
  }
  gp_tasks<T>(
      groups, (groups + kGroupGrain - 1) / kGroupGrain, kGroupGrain,
      [&](int64_t t) {
        const int64_t i0 = t * kGroupGrain;
        return std::pair<int64_t, int64_t>(i0, std::min(groups - i0, kGroupGrain));
      },
      [&](int64_t t, T*) { return sumsq + t * kGroupGrain; }, center, one_sided, reduction, value, scale);
}

// The gradient penalty over column groups (B > 1: the pixel norm) whose columns fit one task of
// group_sumsq (C rows of a kTileB-column tile): each (a, b-tile) task sums its tile's columns
// into a scratch buffer that stays in L1 and runs the epilogue on it at once, so the [A, B] sums
// are never written to memory and read back (a million groups for [64, 3, 128, 128]).
template <class T>
void column_penalty_fused(const at::Tensor& x, int64_t A, int64_t C, int64_t B, double center,
                          bool one_sided, Reduction reduction, T* value, T* scale) {
  const PenaltyKernels& k = kernels();
  const Dtype dt = dtype_of(x, "group_penalty");
  const size_t es = x.element_size();
  const char* base = static_cast<const char*>(x.const_data_ptr());
  const int64_t tile = std::min(B, kTileB);
  const int64_t nb = (B + tile - 1) / tile;
  gp_tasks<T>(
      A * B, A * nb, tile,
      [&](int64_t t) {
        const int64_t a = t / nb, b0 = (t % nb) * tile;
        return std::pair<int64_t, int64_t>(a * B + b0, std::min(tile, B - b0));
      },
      [&](int64_t t, T* buf) {
        const int64_t a = t / nb, b0 = (t % nb) * tile;
        k.sumsq_cols(base + (a * C * B + b0) * es, C, B, std::min(tile, B - b0), buf, dt);
        return static_cast<const T*>(buf);
      },
      center, one_sided, reduction, value, scale);
}

std::tuple<at::Tensor, at::Tensor> group_penalty_cpu(const at::Tensor& g, int64_t A, int64_t C,
                                                     int64_t B, int64_t kind, double center,
                                                     bool one_sided, int64_t reduction,
                                                     double gamma, int64_t batch) {
  check_group_penalty_args(A, B, kind, reduction);
  // Column groups whose rows fit one group_sumsq task take the one-pass path.
  const bool columns = kind == static_cast<int64_t>(PenaltyKind::GP) && B > 1 && C > 0 && A > 0 &&
                       C <= std::max<int64_t>(1, kSumChunk / std::min(B, kTileB));
  at::Tensor sumsq;
  if (columns) {
    dtype_of(g, "group_penalty");
    check_layout(g, A, C, B, "group_penalty");
  } else {
    sumsq = group_sumsq_cpu(g, A, C, B);
  }
  const auto opts = g.options().dtype(g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const bool none = reduction == static_cast<int64_t>(Reduction::NONE);
  at::Tensor value = none ? at::empty({A, B}, opts) : at::empty({}, opts);
  at::Tensor scale = at::empty({A, B}, opts);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    if (columns) {
      column_penalty_fused<T>(g.contiguous(), A, C, B, center, one_sided, static_cast<Reduction>(reduction),
                              value.mutable_data_ptr<T>(), scale.mutable_data_ptr<T>());
    } else {
      penalty_epilogue<T>(sumsq.const_data_ptr<T>(), A * B, static_cast<PenaltyKind>(kind), center,
                          one_sided, static_cast<Reduction>(reduction), gamma, batch,
                          value.mutable_data_ptr<T>(), scale.mutable_data_ptr<T>());
    }
  };
  if (opts.dtype() == at::kDouble) run(double{});
  else run(float{});
  return {value, scale};
}

}  // namespace fusedgan::cpu
