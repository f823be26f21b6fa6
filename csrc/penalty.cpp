// The gradient-penalty operators (contract: docs/operators.md).
//
// A gradient tensor g is viewed, contiguous, as [A, C, B]; each penalty group is a column
// g[a, :, b] (norm="sample": [batch, numel/batch, 1]; "pixel": [batch, channels, pixels];
// "batch": [1, numel, 1]).
//
//   group_sumsq(g, A, C, B) -> sumsq      sumsq[a, b] = sum_c g[a, c, b]^2
//       shape [A, B], float32 (float64 for float64 g): squares of fp16 / bf16 taken in float32.
//   group_scale_mul(g, scale, grad_output, A, C, B) -> grad_g
//       grad_g[a, c, b] = scale[a, b] * g[a, c, b] * grad_output
//       scale: [A, B] acc dtype; grad_output: one element, read on the device (no .item());
//       grad_g: g's shape and dtype, contiguous.
//   group_penalty(g, A, C, B, kind, center, one_sided, reduction, gamma, batch) -> (value, scale)
//       group_sumsq and the penalty computed from it in one call: value (0-dim, or [A, B] for
//       reduction NONE) and scale = d value / d g / g per group ([A, B]), both acc dtype.
//   gan_penalty(g, A, C, B, kind, center, one_sided, reduction, gamma, batch, value_shape, norm)
//       -> value: group_penalty with autograd, in C++ (below); backward is one group_scale_mul.
//
// Kernels: csrc/cpu/penalty_cpu.cpp (CPU), csrc/cuda/penalty.cu (CUDA: group_penalty is two
// launches, the sums of squares and a second stage that finishes the penalty, its scale and the
// reduction).  The Triton versions are fusedgan::triton_group_* (fusedgan/triton/penalty.py).
#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/ones.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "fusedgan/autograd_support.h"
#include "fusedgan/loss_terms_call.h"
#include "fusedgan/math.h"
#include "fusedgan/ops.h"
#include "fusedgan/penalty.h"

namespace fusedgan {
namespace {

using ExactFn = Tensor(const Tensor&, const Tensor&, int64_t, double, bool, c10::string_view,
                       int64_t, double);

// The forward and backward kernels of gan_penalty, or (triton) their Triton twins.
const c10::TypedOperatorHandle<GroupScaleMulFn>& scale_mul_op(bool triton) {
  return op_handle<GroupScaleMulFn>("fusedgan::group_scale_mul", "fusedgan::triton_group_scale_mul", triton);
}
const c10::TypedOperatorHandle<GroupPenaltyFn>& penalty_op(bool triton) {
  return op_handle<GroupPenaltyFn>("fusedgan::group_penalty", "fusedgan::triton_group_penalty", triton);
}

// The kernel pass of gan_penalty: the penalty value (in value_shape for reduction NONE) and the
// scale its backward multiplies g by.
std::tuple<Tensor, Tensor> penalty_pass(const Tensor& g, int64_t A, int64_t C, int64_t B, int64_t kind,
                                        double center, bool one_sided, int64_t reduction, double gamma,
                                        int64_t batch, at::IntArrayRef value_shape, bool triton) {
  auto [value, scale] = penalty_op(triton).call(g, A, C, B, kind, center, one_sided, reduction, gamma, batch);
  if (reduction == static_cast<int64_t>(Reduction::NONE)) value = value.reshape(value_shape);
  return {value, scale};
}

}  // namespace

void check_group_penalty_args(int64_t A, int64_t B, int64_t kind, int64_t reduction) {
  TORCH_CHECK(kind == 0 || kind == 1, "fusedgan::group_penalty: kind must be 0 (gp) or 1 (r1), got ", kind);
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "fusedgan::group_penalty: reduction must be 0, 1 or 2, got ",
              reduction);
  TORCH_CHECK(kind == 0 || A * B == 1, "fusedgan::group_penalty: r1 needs one group (A = B = 1)");
}

namespace {

// The backward of gan_penalty: one group_scale_mul pass, or (grad mode on: create_graph=True) the
// Python operator fusedgan::penalty_exact_backward, which differentiates fusedgan.reference so
// derivatives of every order are exact.
struct GanPenaltyFunction : public torch::autograd::Function<GanPenaltyFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, int64_t A, int64_t C, int64_t B,
                        int64_t kind, double center, bool one_sided, int64_t reduction,
                        double gamma, int64_t batch, std::vector<int64_t> value_shape,
                        std::string norm, bool triton) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [value, scale] =
        penalty_pass(g, A, C, B, kind, center, one_sided, reduction, gamma, batch, value_shape, triton);
    ctx->save_for_backward({g, scale});
    SavedArgs().put(A).put(C).put(B).put(kind).put(center).put(one_sided).put(reduction).put(gamma).put(triton).save(ctx);
    ctx->saved_data["norm"] = std::move(norm);
    return value;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& g = saved[0];
    Tensor scale = saved[1];
    Tensor go = grad_outputs[0];
    variable_list grads(13);  // g, then the 12 other arguments
    if (!go.defined() || !ctx->needs_input_grad(0)) return grads;
    SavedArgs args(ctx);
    const int64_t A = args.get_int(), C = args.get_int(), B = args.get_int(), kind = args.get_int();
    const double center = args.get_float();
    const bool one_sided = args.get_bool();
    const int64_t reduction = args.get_int();
    const double gamma = args.get_float();
    const bool triton = args.get_bool();
    if (at::GradMode::is_enabled()) {
      static const auto exact = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("fusedgan::penalty_exact_backward", "")
                                    .typed<ExactFn>();
      const std::string norm = ctx->saved_data["norm"].toStringRef();
      grads[0] = exact.call(g, go, kind, center, one_sided, norm, reduction, gamma);
      return grads;
    }
    go = go.to(scale.scalar_type());
    if (reduction == static_cast<int64_t>(Reduction::NONE)) {
      scale = scale * go.reshape(scale.sizes());  // per-group grad_output folded into the scale
      go = at::ones({}, scale.options());
    }
    grads[0] = scale_mul_op(triton).call(g, scale, go, A, C, B);
    return grads;
  }
};

// gan_penalty's kernels: kAutograd, at the Autograd key, makes the node (GanPenaltyFunction); else,
// below autograd (inference mode, tracing without autograd keys), the value only.
template <bool kAutograd>
Tensor gan_penalty_kernel(const Tensor& g, int64_t A, int64_t C, int64_t B, int64_t kind, double center,
                          bool one_sided, int64_t reduction, double gamma, int64_t batch,
                          at::IntArrayRef value_shape, c10::string_view norm, bool triton) {
  if constexpr (kAutograd) {
    return GanPenaltyFunction::apply(g, A, C, B, kind, center, one_sided, reduction, gamma, batch,
                                     value_shape.vec(), std::string(norm), triton);
  }
  return std::get<0>(penalty_pass(g, A, C, B, kind, center, one_sided, reduction, gamma, batch, value_shape, triton));
}

}  // namespace
}  // namespace fusedgan

FUSEDGAN_AUTOGRAD_OP(gan_penalty, &fusedgan::gan_penalty_kernel<true>, &fusedgan::gan_penalty_kernel<false>)
