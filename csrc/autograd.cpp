// fusedgan::gan_loss: fusedgan::loss_terms with autograd, entirely in C++.
//
// The fused kernel costs a few microseconds on a GAN-sized logit map (64 elements), while a
// Python torch.autograd.Function costs ~40 us per forward+backward on its own (Python frames in
// forward and a Python node the engine must call back into).  This file gives the same
// Function in C++: forward calls loss_terms below autograd and saves the gradient it produced;
// backward multiplies it by grad_output.  fusedgan/autograd.py routes the native backends ("cpu",
// "cuda") here and keeps the Python Function for Triton.
//
//   gan_loss(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems,
//            float[] label_values, float[] coefs, int reduction) -> Tensor[]
//
// returns [total, terms] for MEAN/SUM and [values_0, ..., values_{n-1}, terms] for NONE; terms is
// not differentiable.  Exact higher-order gradients: when backward runs with grad mode on
// (create_graph=True), or when a label or weight tensor needs a gradient, backward calls
// fusedgan::loss_terms_exact_backward, an operator implemented in Python (fusedgan/ops.py) by
// differentiating the reference formulas, so that every derivative of every order is exact.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cpu/buffer_pool.h"
#include "fusedgan/loss_terms_call.h"
#include "fusedgan/math.h"

namespace fusedgan {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptList = OptTensorList;

using ExactBackwardFn = std::vector<Tensor>(at::TensorList, const OptList&, const OptList&,
                                            at::IntArrayRef, at::ArrayRef<double>,
                                            at::ArrayRef<double>, int64_t, const OptList&,
                                            const c10::List<bool>&);

OptList to_opt_list(at::ArrayRef<Tensor> tensors) {
  OptList out;
  out.reserve(tensors.size());
  for (const Tensor& t : tensors) {
    out.push_back(t.defined() ? std::optional<Tensor>(t) : std::nullopt);
  }
  return out;
}

// gan_loss's outputs: [total, terms] for MEAN/SUM, [values..., terms] for NONE.
std::vector<Tensor> pack_outputs(int64_t reduction, const Tensor& total, const Tensor& terms,
                                 const std::vector<Tensor>& values) {
  std::vector<Tensor> out;
  if (reduction == static_cast<int64_t>(Reduction::NONE)) {
    out.assign(values.begin(), values.end());
  } else {
    out.push_back(total);
  }
  out.push_back(terms);
  return out;
}

// [logits (n), labels (n), weights (n)] with undefined tensors for absent labels/weights, from
// the logits and the aux tensors actually given (autograd inputs must be defined tensors).
std::vector<Tensor> expand_inputs(at::TensorList given, int64_t n, const std::vector<bool>& present) {
  std::vector<Tensor> all(given.begin(), given.begin() + n);
  size_t k = static_cast<size_t>(n);
  for (bool p : present) all.push_back(p ? given[k++] : Tensor());
  return all;
}

// given = logits (n) followed by the labels and weights that are present (present[j], j < 2n).
struct GanLossFunction : public torch::autograd::Function<GanLossFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList given, int64_t n,
                               std::vector<bool> present, std::vector<int64_t> elems,
                               std::vector<double> label_values, std::vector<double> coefs,
                               int64_t reduction, std::vector<bool> need_grad) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const std::vector<Tensor> inputs = expand_inputs(given, n, present);
    const std::vector<Tensor> logits(inputs.begin(), inputs.begin() + n);
    const OptList labels = to_opt_list(at::ArrayRef<Tensor>(inputs).slice(n, n));
    const OptList weights = to_opt_list(at::ArrayRef<Tensor>(inputs).slice(2 * n, n));
    c10::List<bool> need;
    for (bool b : need_grad) need.push_back(b);

    auto [total, terms, grads, values] =
        loss_terms_op().call(logits, labels, weights, elems, label_values, coefs, reduction, need);

    bool aux_need_grad = false;
    for (size_t i = static_cast<size_t>(n); i < given.size(); ++i) {
      aux_need_grad = aux_need_grad || given[i].requires_grad();
    }
    std::vector<Tensor> saved(grads.begin(), grads.end());
    saved.insert(saved.end(), given.begin(), given.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["n"] = n;
    c10::List<bool> present_list;
    for (bool p : present) present_list.push_back(p);
    ctx->saved_data["present"] = present_list;
    ctx->saved_data["elems"] = elems;
    ctx->saved_data["label_values"] = label_values;
    ctx->saved_data["coefs"] = coefs;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["need_grad"] = c10::List<bool>(need);
    ctx->saved_data["aux_need_grad"] = aux_need_grad;
    ctx->mark_non_differentiable({terms});

    return pack_outputs(reduction, total, terms, values);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const int64_t n = ctx->saved_data["n"].toInt();
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const bool none = reduction == static_cast<int64_t>(Reduction::NONE);
    const c10::List<bool> need = ctx->saved_data["need_grad"].toBoolList();
    const variable_list saved = ctx->get_saved_variables();
    const size_t num_given = saved.size() - static_cast<size_t>(n);
    const bool exact = at::GradMode::is_enabled() || ctx->saved_data["aux_need_grad"].toBool();

    // One entry per forward argument: the given tensors, then the 7 non-tensor arguments.
    variable_list grads(num_given + 7);
    if (!exact) {
      for (int64_t i = 0; i < n; ++i) {
        const Tensor& g_out = grad_outputs[none ? i : 0];
        if (!need[i] || !g_out.defined()) continue;
        if (saved[i].is_cpu() && g_out.is_cpu()) {
          // The gradient is as large as the logits: a pooled buffer (warm, mapped pages).
          Tensor out = cpu::pooled_empty(saved[i].sizes(), saved[i].options());
          grads[i] = at::mul_out(out, saved[i], g_out);
        } else {
          grads[i] = at::mul(saved[i], g_out);
        }
      }
      return grads;
    }

    static const auto exact_op = c10::Dispatcher::singleton()
                                     .findSchemaOrThrow("fusedgan::loss_terms_exact_backward", "")
                                     .typed<ExactBackwardFn>();
    std::vector<bool> present;
    for (bool p : ctx->saved_data["present"].toBoolList()) present.push_back(p);
    const at::TensorList given(saved.data() + n, num_given);
    const std::vector<Tensor> inputs = expand_inputs(given, n, present);
    OptList g_outs;
    for (int64_t i = 0; i < (none ? n : 1); ++i) {
      g_outs.push_back(grad_outputs[i].defined() ? std::optional<Tensor>(grad_outputs[i])
                                                 : std::nullopt);
    }
    // wanted[j] over all 3n positions; given tensor k sits at position pos[k]
    std::vector<int64_t> pos;
    for (int64_t i = 0; i < 3 * n; ++i) {
      if (inputs[i].defined()) pos.push_back(i);
    }
    c10::List<bool> wanted;
    for (int64_t i = 0; i < 3 * n; ++i) wanted.push_back(false);
    for (size_t k = 0; k < num_given; ++k) wanted.set(pos[k], ctx->needs_input_grad(k));
    const at::ArrayRef<Tensor> all(inputs);
    auto exact_grads = exact_op.call(
        std::vector<Tensor>(inputs.begin(), inputs.begin() + n), to_opt_list(all.slice(n, n)),
        to_opt_list(all.slice(2 * n, n)), ctx->saved_data["elems"].toIntVector(),
        ctx->saved_data["label_values"].toDoubleVector(),
        ctx->saved_data["coefs"].toDoubleVector(), reduction, g_outs, wanted);
    for (size_t k = 0; k < num_given; ++k) {
      if (wanted[pos[k]]) grads[k] = exact_grads[pos[k]];
    }
    return grads;
  }
};

void check_lists(at::TensorList logits, const OptList& labels, const OptList& weights) {
  TORCH_CHECK(!logits.empty(), "fusedgan::gan_loss: logits must hold at least one tensor");
  TORCH_CHECK(labels.size() == logits.size() && weights.size() == logits.size(),
              "fusedgan::gan_loss: labels and weights need one entry per logits tensor");
}

std::vector<Tensor> gan_loss_autograd(at::TensorList logits, const OptList& labels,
                                      const OptList& weights, at::IntArrayRef elems,
                                      at::ArrayRef<double> label_values,
                                      at::ArrayRef<double> coefs, int64_t reduction) {
  check_lists(logits, labels, weights);
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<Tensor> given(logits.begin(), logits.end());
  std::vector<bool> present;
  for (const OptList* aux : {&labels, &weights}) {
    for (const auto& t : *aux) {
      const std::optional<Tensor> opt = t;
      present.push_back(opt.has_value() && opt->defined());
      if (present.back()) given.push_back(*opt);
    }
  }
  const bool grad_mode = at::GradMode::is_enabled();
  std::vector<bool> need_grad;
  for (const Tensor& x : logits) need_grad.push_back(grad_mode && x.requires_grad());
  return GanLossFunction::apply(at::TensorList(given), n, present, elems.vec(),
                                label_values.vec(), coefs.vec(), reduction, need_grad);
}

// Below autograd (inference mode, tracing without autograd keys): no gradient to compute.
std::vector<Tensor> gan_loss_no_grad(at::TensorList logits, const OptList& labels,
                                     const OptList& weights, at::IntArrayRef elems,
                                     at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                                     int64_t reduction) {
  check_lists(logits, labels, weights);
  c10::List<bool> need;
  for (size_t i = 0; i < logits.size(); ++i) need.push_back(false);
  auto [total, terms, grads, values] =
      loss_terms_op().call(logits, labels, weights, elems, label_values, coefs, reduction, need);
  return pack_outputs(reduction, total, terms, values);
}

}  // namespace
}  // namespace fusedgan

TORCH_LIBRARY_FRAGMENT(fusedgan, m) {
  m.def(
      "gan_loss(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
      "float[] label_values, float[] coefs, int reduction) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fusedgan, Autograd, m) {
  m.impl("gan_loss", &fusedgan::gan_loss_autograd);
}

TORCH_LIBRARY_IMPL(fusedgan, CompositeExplicitAutograd, m) {
  m.impl("gan_loss", &fusedgan::gan_loss_no_grad);
}
