// The device-generic kernel of fusedgan::group_penalty (csrc/penalty.cpp): group_sumsq through
// the dispatcher, then the penalty as tensor operations.  CUDA tensors run it; the CPU kernel has
// its own scalar epilogue, and fusedgan._C.group_penalty_composite exposes this one so the tests
// can hold the two against each other on CPU tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace fusedgan {

// The argument checks of fusedgan::group_penalty, shared by its kernels.
void check_group_penalty_args(int64_t A, int64_t B, int64_t kind, int64_t reduction);

std::tuple<at::Tensor, at::Tensor> group_penalty_composite(const at::Tensor& g, int64_t A, int64_t C,
                                                           int64_t B, int64_t kind, double center,
                                                           bool one_sided, int64_t reduction,
                                                           double gamma, int64_t batch);

}  // namespace fusedgan
