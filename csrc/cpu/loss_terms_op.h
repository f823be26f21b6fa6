// The CPU implementation of fusedgan::loss_terms, declared for C++ callers (tests); Python and
// everything else reach it through the dispatcher as torch.ops.fusedgan.loss_terms.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace fusedgan::cpu {

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> loss_terms_cpu(
    at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
    const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
    const c10::List<bool>& need_grad);

// loss_terms plus per-term sums of x, sigmoid(x), [x > 0] and [x < 0] ([n, 4], acc dtype), same pass.
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor>
loss_terms_stats_cpu(at::TensorList logits, const c10::List<std::optional<at::Tensor>>& labels,
                     const c10::List<std::optional<at::Tensor>>& weights, at::IntArrayRef elems,
                     at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
                     const c10::List<bool>& need_grad);

}  // namespace fusedgan::cpu
