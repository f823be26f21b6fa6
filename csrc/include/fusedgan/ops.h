// Declarations shared by csrc/ops.cpp (the registry: every schema, every CPU and CUDA kernel), the
// code that calls the operators through the dispatcher and the kernels themselves.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

namespace fusedgan {

using OptTensorList = c10::List<std::optional<at::Tensor>>;

// The C++ signature of each kernel operator (schemas: csrc/ops.cpp), shared by the
// typed dispatcher handles (loss_terms_call.cpp, penalty.cpp) and the kernels' declarations below.
using LossTermsFn = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>(
    at::TensorList, const OptTensorList&, const OptTensorList&, at::IntArrayRef, at::ArrayRef<double>,
    at::ArrayRef<double>, int64_t, const c10::List<bool>&);
using LossTermsStatsFn =
    std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>(
        at::TensorList, const OptTensorList&, const OptTensorList&, at::IntArrayRef, at::ArrayRef<double>,
        at::ArrayRef<double>, int64_t, const c10::List<bool>&);
using LossGradsFn = std::vector<at::Tensor>(at::TensorList, const OptTensorList&, const OptTensorList&,
                                            at::IntArrayRef, at::ArrayRef<double>, at::ArrayRef<double>,
                                            int64_t, const OptTensorList&);
using GroupSumsqFn = at::Tensor(const at::Tensor&, int64_t, int64_t, int64_t);
using GroupScaleMulFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                   int64_t);
using GroupPenaltyFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, int64_t, int64_t,
                                                          int64_t, double, bool, int64_t, double, int64_t);

// The kernel operators: X(name, Fn, dev) for each.  Every device `dev` (cpu: csrc/cpu/, cuda:
// csrc/cuda/) implements all of them as fusedgan::dev::<name>_<dev>; csrc/ops.cpp registers them.
#define FUSEDGAN_KERNEL_OPS(X, dev)            \
  X(loss_terms, LossTermsFn, dev)              \
  X(loss_terms_stats, LossTermsStatsFn, dev)   \
  X(loss_grads, LossGradsFn, dev)              \
  X(group_sumsq, GroupSumsqFn, dev)            \
  X(group_scale_mul, GroupScaleMulFn, dev)     \
  X(group_penalty, GroupPenaltyFn, dev)

#define FUSEDGAN_DECLARE_KERNEL(name, Fn, dev) Fn name##_##dev;

namespace cpu {
FUSEDGAN_KERNEL_OPS(FUSEDGAN_DECLARE_KERNEL, cpu)
// The SIMD level the CPU kernel dispatches to on this machine: "avx512", "avx2" or "default".
const char* cpu_capability_name();
}  // namespace cpu

namespace cuda {
FUSEDGAN_KERNEL_OPS(FUSEDGAN_DECLARE_KERNEL, cuda)
}  // namespace cuda

}  // namespace fusedgan

// The two kernels of an operator with autograd (gan_loss, rel_gan_loss, gan_penalty; schemas in
// csrc/ops.cpp): `autograd` at the Autograd key (it makes the node when an input needs a gradient)
// and `no_grad` below autograd (inference mode, tracing without autograd keys: values only).
#define FUSEDGAN_AUTOGRAD_OP(name, autograd, no_grad)                               \
  TORCH_LIBRARY_IMPL(fusedgan, Autograd, m) { m.impl(#name, autograd); }           \
  TORCH_LIBRARY_IMPL(fusedgan, CompositeExplicitAutograd, m) { m.impl(#name, no_grad); }
