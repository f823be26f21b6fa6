// Calling the loss kernels through the dispatcher from C++ (the autograd Functions of
// csrc/autograd.cpp and csrc/relativistic.cpp).
//
// One kernel family, two implementations of each operator, chosen by `triton`:
//   fusedgan::loss_terms        / fusedgan::triton_loss_terms         (forward; CPU, CUDA / Triton)
//   fusedgan::loss_terms_stats  / fusedgan::triton_loss_terms_stats   (forward + statistics)
//   fusedgan::loss_grads        / fusedgan::triton_loss_grads         (gradient recomputed in backward)
// The Triton twins share the C++ schemas and are registered by Python (fusedgan/ops.py registers
// them when fusedgan is imported, before any call can ask for them).
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstring>

#include <optional>
#include <vector>

#include "fusedgan/ops.h"

namespace fusedgan {

// The typed handle of operator `name` or (triton) of its Triton twin `triton_name`, looked up on
// first use (the twins are registered by Python when fusedgan is imported).  The cache is per
// signature Fn: two operators of one signature must not share it (checked).
template <class Fn>
const c10::TypedOperatorHandle<Fn>& op_handle(const char* name, const char* triton_name, bool triton) {
  struct Entry {
    const char* name;
    c10::TypedOperatorHandle<Fn> op;
  };
  auto find = [](const char* n) {
    return Entry{n, c10::Dispatcher::singleton().findSchemaOrThrow(n, "").template typed<Fn>()};
  };
  if (triton) {
    static const Entry e = find(triton_name);
    TORCH_INTERNAL_ASSERT(std::strcmp(e.name, triton_name) == 0, "op_handle: one cache for ", e.name,
                          " and ", triton_name);
    return e.op;
  }
  static const Entry e = find(name);
  TORCH_INTERNAL_ASSERT(std::strcmp(e.name, name) == 0, "op_handle: one cache for ", e.name, " and ", name);
  return e.op;
}

struct LossTermsOut {
  at::Tensor total, terms;
  at::Tensor stats;  // defined when asked for
  std::vector<at::Tensor> grads, values;
};

// The outputs of gan_loss and rel_gan_loss from their loss_terms call: [total] (MEAN / SUM) or
// [values...] (NONE), then terms, then stats when present.
std::vector<at::Tensor> pack_outputs(int64_t reduction, const LossTermsOut& o);

// One loss_terms (or, with `stats`, loss_terms_stats) call.
LossTermsOut call_loss_terms(bool triton, bool stats, at::TensorList logits, const OptTensorList& labels,
                             const OptTensorList& weights, at::IntArrayRef elems,
                             at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                             int64_t reduction, const c10::List<bool>& need_grad);

// The gradients of the terms times grad_outputs[i] (nullopt: no gradient for term i), recomputed
// from the logits in one pass.
std::vector<at::Tensor> call_loss_grads(bool triton, at::TensorList logits, const OptTensorList& labels,
                                        const OptTensorList& weights, at::IntArrayRef elems,
                                        at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                                        int64_t reduction, const OptTensorList& grad_outputs);

// Whether backward recomputes the gradient from the logits (GPU: three memory passes instead of
// four) rather than multiplying one that forward saved (CPU: the kernel is compute-bound and the
// exp is not worth paying twice).  Triton and CUDA recompute (one-pass loss_grads kernels); the
// CPU loss_grads is loss_terms times grad_output (four passes), kept for completeness and tests.
bool recompute_gradient(const at::Tensor& logits, bool triton);

// sum (or mean) of all elements of x in the acc dtype, as a 0-dim tensor, by the loss kernel
// itself: fixed-size chunks added in a fixed order, so the bits do not depend on the thread count.
at::Tensor fixed_order_sum(const at::Tensor& x, bool triton, bool mean = false);

}  // namespace fusedgan
