// The dispatcher calls declared in fusedgan/loss_terms_call.h: typed signatures, cached handles.
#include "fusedgan/loss_terms_call.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

#include "fusedgan/codes.h"

namespace fusedgan {

using at::Tensor;

std::vector<Tensor> pack_outputs(int64_t reduction, const LossTermsOut& o) {
  std::vector<Tensor> out;
  if (reduction == static_cast<int64_t>(Reduction::NONE)) out.assign(o.values.begin(), o.values.end());
  else out.push_back(o.total);
  out.push_back(o.terms);
  if (o.stats.defined()) out.push_back(o.stats);
  return out;
}

LossTermsOut call_loss_terms(bool triton, bool stats, at::TensorList logits, const OptTensorList& labels,
                             const OptTensorList& weights, at::IntArrayRef elems,
                             at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                             int64_t reduction, const c10::List<bool>& need_grad) {
  LossTermsOut out;
  if (stats) {
    std::tie(out.total, out.terms, out.grads, out.values, out.stats) =
        op_handle<LossTermsStatsFn>("fusedgan::loss_terms_stats", "fusedgan::triton_loss_terms_stats", triton)
            .call(logits, labels, weights, elems, label_values, coefs, reduction, need_grad);
  } else {
    std::tie(out.total, out.terms, out.grads, out.values) =
        op_handle<LossTermsFn>("fusedgan::loss_terms", "fusedgan::triton_loss_terms", triton)
            .call(logits, labels, weights, elems, label_values, coefs, reduction, need_grad);
  }
  return out;
}

std::vector<Tensor> call_loss_grads(bool triton, at::TensorList logits, const OptTensorList& labels,
                                    const OptTensorList& weights, at::IntArrayRef elems,
                                    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                                    int64_t reduction, const OptTensorList& grad_outputs) {
  return op_handle<LossGradsFn>("fusedgan::loss_grads", "fusedgan::triton_loss_grads", triton)
      .call(logits, labels, weights, elems, label_values, coefs, reduction, grad_outputs);
}

bool recompute_gradient(const Tensor& logits, bool triton) {
  // Triton and the CUDA kernel (csrc/cuda/loss_terms.cu) recompute the gradient in one pass
  // (three memory passes in all).  The CPU loss_grads below goes through loss_terms (four passes):
  // on the CPU, saving the gradient in forward is never worse.
  if (triton) return true;
  if (!logits.is_cuda()) return false;
  static const bool cuda_kernel = c10::Dispatcher::singleton()
                                      .findSchemaOrThrow("fusedgan::loss_grads", "")
                                      .hasKernelForDispatchKey(c10::DispatchKey::CUDA);
  return cuda_kernel;
}

Tensor fixed_order_sum(const Tensor& x, bool triton, bool mean) {
  // LINEAR with label -1 is the identity: value(x) = x.
  const auto reduction = static_cast<int64_t>(mean ? Reduction::MEAN : Reduction::SUM);
  OptTensorList none;
  none.push_back(std::nullopt);
  c10::List<bool> no_grad;
  no_grad.push_back(false);
  return call_loss_terms(triton, false, {x}, none, none, {static_cast<int64_t>(Elem::LINEAR)}, {-1.0}, {1.0},
                         reduction, no_grad)
      .total;
}

namespace cpu {

// fusedgan::loss_grads on the CPU: the loss_terms kernel's gradients times grad_outputs (the CUDA
// kernel is csrc/cuda/loss_terms.cu).
std::vector<Tensor> loss_grads_cpu(at::TensorList logits, const OptTensorList& labels, const OptTensorList& weights,
                                   at::IntArrayRef elems, at::ArrayRef<double> label_values,
                                   at::ArrayRef<double> coefs, int64_t reduction, const OptTensorList& grad_outputs) {
  TORCH_CHECK(grad_outputs.size() == logits.size(), "fusedgan::loss_grads: grad_outputs has ",
              grad_outputs.size(), " entries for ", logits.size(), " logits");
  c10::List<bool> need_grad;
  for (size_t i = 0; i < grad_outputs.size(); ++i) need_grad.push_back(grad_outputs.get(i).has_value());
  auto out = call_loss_terms(false, false, logits, labels, weights, elems, label_values, coefs, reduction,
                             need_grad);
  for (size_t i = 0; i < grad_outputs.size(); ++i) {
    const auto go = grad_outputs.get(i);
    if (go.has_value()) out.grads[i] = (out.grads[i] * *go).to(logits[i].scalar_type());
  }
  return out.grads;
}

}  // namespace cpu

}  // namespace fusedgan
