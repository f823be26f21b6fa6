// Calling fusedgan::loss_terms through the dispatcher from C++ (the autograd Functions of
// csrc/autograd.cpp and csrc/relativistic.cpp): the typed signature and one cached handle.
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

inline const c10::TypedOperatorHandle<LossTermsFn>& loss_terms_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fusedgan::loss_terms", "")
                             .typed<LossTermsFn>();
  return op;
}

}  // namespace fusedgan
