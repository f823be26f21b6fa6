// Calling fusedgan::loss_terms (or loss_terms_stats, or their Triton twins triton_loss_terms /
// triton_loss_terms_stats, which share the schema) through the dispatcher from C++ (the autograd
// Functions of csrc/autograd.cpp and csrc/relativistic.cpp): typed signatures, cached handles.
// The Triton operators are registered by Python (fusedgan/triton/__init__.py); a handle to one is
// looked up on first use, which the Python caller makes sure comes after that registration.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>
#include <vector>

namespace fusedgan {

using OptTensorList = c10::List<std::optional<at::Tensor>>;

using LossTermsFn =
    std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>(
        at::TensorList, const OptTensorList&, const OptTensorList&, at::IntArrayRef,
        at::ArrayRef<double>, at::ArrayRef<double>, int64_t, const c10::List<bool>&);

using LossTermsStatsFn =
    std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>(
        at::TensorList, const OptTensorList&, const OptTensorList&, at::IntArrayRef,
        at::ArrayRef<double>, at::ArrayRef<double>, int64_t, const c10::List<bool>&);

template <class Fn>
const c10::TypedOperatorHandle<Fn> find_loss_terms_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

inline const c10::TypedOperatorHandle<LossTermsFn>& loss_terms_op(bool triton = false) {
  if (triton) {
    static const auto op = find_loss_terms_op<LossTermsFn>("fusedgan::triton_loss_terms");
    return op;
  }
  static const auto op = find_loss_terms_op<LossTermsFn>("fusedgan::loss_terms");
  return op;
}

inline const c10::TypedOperatorHandle<LossTermsStatsFn>& loss_terms_stats_op(bool triton = false) {
  if (triton) {
    static const auto op = find_loss_terms_op<LossTermsStatsFn>("fusedgan::triton_loss_terms_stats");
    return op;
  }
  static const auto op = find_loss_terms_op<LossTermsStatsFn>("fusedgan::loss_terms_stats");
  return op;
}

}  // namespace fusedgan
