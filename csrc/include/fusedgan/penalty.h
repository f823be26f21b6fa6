// Shared by the kernels of fusedgan::group_penalty (csrc/cpu/penalty_cpu.cpp,
// csrc/cuda/penalty.cu); the operator's schema is in csrc/ops.cpp.
#pragma once

#include <cstdint>

namespace fusedgan {

// The argument checks of fusedgan::group_penalty, shared by its kernels.
void check_group_penalty_args(int64_t A, int64_t B, int64_t kind, int64_t reduction);

}  // namespace fusedgan
