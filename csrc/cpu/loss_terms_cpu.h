// The interface between the CPU operator (loss_terms_cpu.cpp, built for baseline x86) and the
// chunk kernels (kernel_impl.h, built once per SIMD level).  Plain pointers and PODs only, so no
// torch inline function ever crosses from a SIMD-compiled translation unit into baseline code.
#pragma once

#include <cstdint>

#include "fusedgan/codes.h"

namespace fusedgan::cpu {

enum class Dtype : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

// Where a label or weight comes from: fusedgan::Operand (codes.h).
using fusedgan::Operand;

struct TermArgs {
  const void* x = nullptr;
  const void* label = nullptr;   // acc dtype (float, double for double logits); ARG: unused
  const void* weight = nullptr;  // acc dtype; ARG: weight 1
  void* grad = nullptr;          // nullptr: no gradient wanted
  void* values = nullptr;        // nullptr: no per-element values wanted (reduction != NONE)
  int64_t n = 0;
  double label_value = 0.0;
  double grad_scale = 1.0;   // coef * scale (scale = 1/N for MEAN)
  double value_scale = 1.0;  // coef
  Operand label_mode = Operand::ARG;
  Operand weight_mode = Operand::ARG;
  int elem = 0;
};

// Fixed-size chunks make the partial sums, hence the result bits, independent of the thread
// count.  Within a chunk float lanes accumulate runs of kRun elements, then add into a double.
constexpr int64_t kChunk = 16384;
constexpr int64_t kRun = 256;

// Chunks of all terms numbered consecutively: term i owns chunks [first_chunk[i], first_chunk[i+1]).
struct ChunkTable {
  const TermArgs* terms;
  const int64_t* first_chunk;  // n_terms + 1 entries
  int n_terms;
  Dtype dtype;
  // Optional (loss_terms_stats): stats[kStatCols * c + k] = sum over chunk c of x, sigmoid(x),
  // [x > 0], [x < 0].
  double* stats = nullptr;
};

// partials[c] = sum over chunk c of w * value(x, t) (before coef and scale); writes gradients and
// values of those elements (and the chunk's statistics when tab.stats is set).
using ChunkKernel = void (*)(const ChunkTable&, int64_t chunk_begin, int64_t chunk_end,
                             double* partials);

namespace DEFAULT {
void run_chunks(const ChunkTable&, int64_t, int64_t, double*);
}
namespace AVX2 {
void run_chunks(const ChunkTable&, int64_t, int64_t, double*);
}
namespace AVX512 {
void run_chunks(const ChunkTable&, int64_t, int64_t, double*);
}

}  // namespace fusedgan::cpu
