// The interface between the CPU penalty operators (penalty_cpu.cpp, built for baseline x86) and
// their inner loops (penalty_kernel_impl.h, built once per SIMD level).  Plain pointers and PODs
// only, as in loss_terms_cpu.h, so no torch inline function crosses between SIMD levels.
//
// "acc" below is float for float16 / bfloat16 / float32 tensors and double for float64 ones.
#pragma once

#include <cstdint>

#include "loss_terms_cpu.h"  // Dtype

namespace fusedgan::cpu {

struct PenaltyKernels {
  // sum of p[i]^2 over n contiguous elements, squares and partial sums in acc, returned as double.
  double (*sumsq)(const void* p, int64_t n, Dtype dt);
  // acc_out[b] = sum_{r < rows} p[r * stride + b]^2 for b < width (acc_out: acc type).
  void (*sumsq_cols)(const void* p, int64_t rows, int64_t stride, int64_t width, void* acc_out,
                     Dtype dt);
  // out[i] = f * g[i] for n contiguous elements (f: acc value passed as double, rounded to acc).
  void (*scale)(const void* g, void* out, int64_t n, double f, Dtype dt);
  // out[i] = (s[i] * go) * g[i]; s: acc type, go rounded to acc.
  void (*scale_cols)(const void* g, void* out, int64_t n, const void* s, double go, Dtype dt);
  // The gradient penalty of n groups from their sums of squares s (gp_group of math.h):
  // per[i] = d^2 and scale[i] = 2 d / ||g|| * mul; returns sum(per) in double.  s, per, scale:
  // acc type, acc = F32 (float) or F64 (double).
  double (*gp_epilogue)(const void* s, int64_t n, double center, bool one_sided, double mul,
                        void* per, void* scale, Dtype acc);
};

namespace DEFAULT {
extern const PenaltyKernels kPenaltyKernels;
}
namespace AVX2 {
extern const PenaltyKernels kPenaltyKernels;
}
namespace AVX512 {
extern const PenaltyKernels kPenaltyKernels;
}

}  // namespace fusedgan::cpu
