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

// One cached handle per (operator, backend): kStats picks loss_terms_stats, `triton` the Triton twin.
template <class Fn, bool kStats>
const c10::TypedOperatorHandle<Fn>& loss_terms_handle(bool triton) {
  constexpr const char* native = kStats ? "fusedgan::loss_terms_stats" : "fusedgan::loss_terms";
  constexpr const char* twin = kStats ? "fusedgan::triton_loss_terms_stats" : "fusedgan::triton_loss_terms";
  auto find = [](const char* name) {
    return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
  };
  if (triton) {
    static const auto op = find(twin);
    return op;
  }
  static const auto op = find(native);
  return op;
}

inline const c10::TypedOperatorHandle<LossTermsFn>& loss_terms_op(bool triton = false) {
  return loss_terms_handle<LossTermsFn, false>(triton);
}

inline const c10::TypedOperatorHandle<LossTermsStatsFn>& loss_terms_stats_op(bool triton = false) {
  return loss_terms_handle<LossTermsStatsFn, true>(triton);
}

}  // namespace fusedgan
