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

#include "fusedgan/loss_terms_call.h"
#include "fusedgan/math.h"
#include "fusedgan/penalty.h"

namespace fusedgan {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ScaleMulFn = Tensor(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t);
using PenaltyFn = std::tuple<Tensor, Tensor>(const Tensor&, int64_t, int64_t, int64_t, int64_t,
                                             double, bool, int64_t, double, int64_t);
using ExactFn = Tensor(const Tensor&, const Tensor&, int64_t, double, bool, c10::string_view,
                       int64_t, double);

// The forward and backward kernels of gan_penalty, or (triton) their Triton twins.
const c10::TypedOperatorHandle<ScaleMulFn>& scale_mul_op(bool triton) {
  return op_handle<ScaleMulFn>("fusedgan::group_scale_mul", "fusedgan::triton_group_scale_mul", triton);
}
const c10::TypedOperatorHandle<PenaltyFn>& penalty_op(bool triton) {
  return op_handle<PenaltyFn>("fusedgan::group_penalty", "fusedgan::triton_group_penalty", triton);
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
        penalty_op(triton).call(g, A, C, B, kind, center, one_sided, reduction, gamma, batch);
    ctx->save_for_backward({g, scale});
    ctx->saved_data["layout"] = std::vector<int64_t>{A, C, B};
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["center"] = center;
    ctx->saved_data["one_sided"] = one_sided;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["norm"] = norm;
    ctx->saved_data["triton"] = triton;
    return reduction == static_cast<int64_t>(Reduction::NONE) ? value.reshape(value_shape) : value;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& g = saved[0];
    Tensor scale = saved[1];
    Tensor go = grad_outputs[0];
    const int64_t kind = ctx->saved_data["kind"].toInt();
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    variable_list grads(13);  // g, then the 12 other arguments
    if (!go.defined() || !ctx->needs_input_grad(0)) return grads;
    if (at::GradMode::is_enabled()) {
      static const auto exact = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("fusedgan::penalty_exact_backward", "")
                                    .typed<ExactFn>();
      const std::string norm = ctx->saved_data["norm"].toStringRef();
      grads[0] = exact.call(g, go, kind, ctx->saved_data["center"].toDouble(),
                            ctx->saved_data["one_sided"].toBool(), norm, reduction,
                            ctx->saved_data["gamma"].toDouble());
      return grads;
    }
    const std::vector<int64_t> layout = ctx->saved_data["layout"].toIntVector();
    go = go.to(scale.scalar_type());
    if (reduction == static_cast<int64_t>(Reduction::NONE)) {
      scale = scale * go.reshape(scale.sizes());  // per-group grad_output folded into the scale
      go = at::ones({}, scale.options());
    }
    grads[0] = scale_mul_op(ctx->saved_data["triton"].toBool()).call(g, scale, go, layout[0], layout[1], layout[2]);
    return grads;
  }
};

Tensor gan_penalty_autograd(const Tensor& g, int64_t A, int64_t C, int64_t B, int64_t kind,
                            double center, bool one_sided, int64_t reduction, double gamma,
                            int64_t batch, at::IntArrayRef value_shape, c10::string_view norm,
                            bool triton) {
  return GanPenaltyFunction::apply(g, A, C, B, kind, center, one_sided, reduction, gamma, batch,
                                   value_shape.vec(), std::string(norm), triton);
}

// Below autograd (inference mode, tracing without autograd keys): the value only.
Tensor gan_penalty_no_grad(const Tensor& g, int64_t A, int64_t C, int64_t B, int64_t kind,
                           double center, bool one_sided, int64_t reduction, double gamma,
                           int64_t batch, at::IntArrayRef value_shape, c10::string_view norm,
                           bool triton) {
  (void)norm;
  auto [value, scale] =
      penalty_op(triton).call(g, A, C, B, kind, center, one_sided, reduction, gamma, batch);
  return reduction == static_cast<int64_t>(Reduction::NONE) ? value.reshape(value_shape) : value;
}

}  // namespace
}  // namespace fusedgan

TORCH_LIBRARY_FRAGMENT(fusedgan, m) {
  m.def("group_sumsq(Tensor g, int A, int C, int B) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("group_scale_mul(Tensor g, Tensor scale, Tensor grad_output, int A, int C, int B) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("group_penalty(Tensor g, int A, int C, int B, int kind, float center, bool one_sided, "
        "int reduction, float gamma, int batch) -> (Tensor value, Tensor scale)",
        {at::Tag::pt2_compliant_tag});
  m.def("gan_penalty(Tensor g, int A, int C, int B, int kind, float center, bool one_sided, "
        "int reduction, float gamma, int batch, int[] value_shape, str norm, bool triton=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(fusedgan, CompositeExplicitAutograd, m) {
  m.impl("gan_penalty", &fusedgan::gan_penalty_no_grad);
}

TORCH_LIBRARY_IMPL(fusedgan, Autograd, m) {
  m.impl("gan_penalty", &fusedgan::gan_penalty_autograd);
}
