// fusedgan::gan_loss: the loss kernels with autograd, the one autograd implementation of the loss
// family for every fused backend (CPU, CUDA, Triton).
//
//   gan_loss(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems,
//            float[] label_values, float[] coefs, int reduction, bool stats=False,
//            bool triton=False) -> Tensor[]
//
// returns [total, terms] for MEAN/SUM and [values_0, ..., values_{n-1}, terms] for NONE, then
// `stats` ([n, kStatCols]) when asked for; terms and stats are not differentiable.  The kernel is
// fusedgan::loss_terms(_stats) (the dispatcher picks the CPU or CUDA kernel from the device), or
// with `triton` its Triton twin.
//
// Backward, per device (recompute_gradient): on the CPU forward saves the gradient the kernel
// produced in the same pass and backward multiplies it by grad_output; on GPUs forward saves only
// the inputs and backward recomputes the gradient already scaled by grad_output in one pass
// (fusedgan::loss_grads / triton_loss_grads): three memory passes instead of four.  When backward
// runs with grad mode on (create_graph=True), or when a label or weight tensor needs a gradient,
// backward calls fusedgan::loss_terms_exact_backward, which differentiates the reference formulas
// (fusedgan/ops.py), so derivatives of every order are exact.  A Python autograd Function would
// cost ~40 us per step on a 64-element logit map; this one costs a few.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <ATen/FuncTorchTLS.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/buffer_pool.h"
#include "fusedgan/autograd_support.h"
#include "fusedgan/codes.h"
#include "fusedgan/loss_terms_call.h"

namespace fusedgan {
namespace {

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

bool is_none(int64_t reduction) { return reduction == static_cast<int64_t>(Reduction::NONE); }

// [logits (n), labels (n), weights (n)] with undefined tensors for absent labels/weights, from
// the logits and the aux tensors actually given (autograd inputs must be defined tensors).
std::vector<Tensor> expand_inputs(at::TensorList given, int64_t n, const c10::List<bool>& present) {
  std::vector<Tensor> all(given.begin(), given.begin() + n);
  size_t k = static_cast<size_t>(n);
  for (bool p : present) all.push_back(p ? given[k++] : Tensor());
  return all;
}

// Whether grad_output is a CPU scalar 1 in the gradient's dtype promotion (then the product is
// the saved gradient itself, bit for bit).
bool is_one(const Tensor& g, const Tensor& grad) {
  if (g.dim() != 0 || !g.is_cpu() || !grad.is_cpu()) return false;
  // Traced (fake / functional) tensors have no value to read.
  constexpr c10::DispatchKeySet traced({c10::DispatchKey::Python, c10::DispatchKey::Functionalize,
                                        c10::DispatchKey::PythonTLSSnapshot});
  if (g.key_set().has_any(traced) || grad.key_set().has_any(traced) || !g.has_storage() ||
      g.storage().data() == nullptr)
    return false;
  switch (g.scalar_type()) {
    case at::kFloat: return *g.const_data_ptr<float>() == 1.0f;
    case at::kDouble: return *g.const_data_ptr<double>() == 1.0;
    default: return false;
  }
}

struct Args {  // the non-tensor arguments, as saved by the node
  std::vector<int64_t> elems;
  std::vector<double> label_values, coefs;
  int64_t reduction;
};

// The backward of one gan_loss call.  A hand-written autograd Node rather than a
// torch::autograd::Function: no per-step demangled name, no context hash map of IValues, no
// zero gradients for the non-differentiable outputs; the same saved tensors and arithmetic.
// Inputs: given = logits (n) followed by the labels and weights that are present (present[j],
// j < 2n); outputs with a gradient: the total (MEAN/SUM) or the n values (NONE).
struct GanLossBackward : public torch::autograd::Node {
  std::vector<torch::autograd::SavedVariable> saved;  // the gradients (none when recomputed), then given
  std::vector<bool> present;
  Args a;
  int64_t n = 0;
  bool recompute = false, triton = false, aux_need_grad = false;

  std::string name() const override { return "GanLossBackward"; }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& v : saved) v.reset_data();  // a second backward raises torch's "backward twice"
  }
  variable_list apply(variable_list&& grad_outputs) override;
  void exact(const std::vector<Tensor>& inputs, size_t num_given, const variable_list& grad_outputs,
             variable_list& grads);
};

variable_list GanLossBackward::apply(variable_list&& grad_outputs) {
  std::lock_guard<std::mutex> lock(mutex_);
  variable_list saved_t;
  saved_t.reserve(saved.size());
  for (const auto& v : saved) saved_t.push_back(v.unpack());
  const size_t lead = recompute ? 0 : static_cast<size_t>(n);  // saved gradients first
  const at::TensorList given(saved_t.data() + lead, saved_t.size() - lead);
  c10::List<bool> present_list;
  for (bool p : present) present_list.push_back(p);
  const std::vector<Tensor> inputs = expand_inputs(given, n, present_list);
  // grad_outputs[i] for term i (NONE: its values; else the one total).
  OptList g_outs;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor& g = grad_outputs[is_none(a.reduction) ? i : 0];
    g_outs.push_back(g.defined() && task_should_compute_output(i) ? std::optional<Tensor>(g) : std::nullopt);
  }
  variable_list grads(given.size());
  if (at::GradMode::is_enabled() || aux_need_grad) {
    exact(inputs, given.size(), grad_outputs, grads);
    return grads;
  }
  if (recompute) {
    const at::ArrayRef<Tensor> all(inputs);
    std::vector<Tensor> got = call_loss_grads(triton, all.slice(0, n), to_opt_list(all.slice(n, n)),
                                              to_opt_list(all.slice(2 * n, n)), a.elems, a.label_values,
                                              a.coefs, a.reduction, g_outs);
    for (int64_t i = 0; i < n; ++i) {
      if (g_outs.get(i).has_value()) grads[i] = std::move(got[i]);
    }
    return grads;
  }
  for (int64_t i = 0; i < n; ++i) {
    const std::optional<Tensor> g_out = g_outs.get(i);
    if (!g_out.has_value()) continue;
    if (is_one(*g_out, saved_t[i])) {
      grads[i] = saved_t[i];  // loss.backward(): the saved gradient is the gradient
    } else if (saved_t[i].is_cpu() && g_out->is_cpu()) {
      // The gradient is as large as the logits: a pooled buffer (warm, mapped pages).
      Tensor out = cpu::pooled_empty(saved_t[i].sizes(), saved_t[i].options());
      grads[i] = at::mul_out(out, saved_t[i], *g_out);
    } else {
      grads[i] = at::mul(saved_t[i], *g_out);
    }
  }
  return grads;
}

// Gradients of every order through fusedgan::loss_terms_exact_backward (the reference).
void GanLossBackward::exact(const std::vector<Tensor>& inputs, size_t num_given, const variable_list& grad_outputs,
                            variable_list& grads) {
  static const auto exact_op = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("fusedgan::loss_terms_exact_backward", "")
                                   .typed<ExactBackwardFn>();
  OptList g_outs;
  for (int64_t i = 0; i < (is_none(a.reduction) ? n : 1); ++i) {
    g_outs.push_back(grad_outputs[i].defined() ? std::optional<Tensor>(grad_outputs[i]) : std::nullopt);
  }
  // wanted[j] over all 3n positions; given tensor k sits at position pos[k]
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < 3 * n; ++i) {
    if (inputs[i].defined()) pos.push_back(i);
  }
  c10::List<bool> wanted;
  for (int64_t i = 0; i < 3 * n; ++i) wanted.push_back(false);
  for (size_t k = 0; k < num_given; ++k) wanted.set(pos[k], task_should_compute_output(k));
  const at::ArrayRef<Tensor> all(inputs);
  auto got = exact_op.call(all.slice(0, n), to_opt_list(all.slice(n, n)), to_opt_list(all.slice(2 * n, n)),
                           a.elems, a.label_values, a.coefs, a.reduction, g_outs, wanted);
  for (size_t k = 0; k < num_given; ++k) {
    if (wanted[pos[k]]) grads[k] = got[pos[k]];
  }
}

// torch 2.14 holds autograd nodes by c10::intrusive_ptr, earlier releases (2.11, the GPU machine's)
// by std::shared_ptr: make the node the way this torch's Edge holds one.
template <class N>
auto make_node() {
  using Ptr = decltype(torch::autograd::Edge::function);
  if constexpr (std::is_same_v<Ptr, std::shared_ptr<torch::autograd::Node>>) {
    return std::make_shared<N>();
  } else {
    return c10::make_intrusive<N>();
  }
}

// Forward with autograd: the kernel below autograd, then one GanLossBackward node.
std::vector<Tensor> gan_loss_with_node(std::vector<Tensor>&& given, int64_t n, std::vector<bool>&& present,
                                       at::IntArrayRef elems, at::ArrayRef<double> label_values,
                                       at::ArrayRef<double> coefs, int64_t reduction, bool stats, bool triton) {
  if (const auto& functorch_tls = at::functorch::functorchTLSAccessor()) {
    functorch_tls->checkSupportsCppAutogradFunction();  // as torch's C++ Functions: functorch unsupported
  }
  for (const Tensor& t : given) {
    TORCH_CHECK(!torch::autograd::isFwGradDefined(t),
                "fusedgan::gan_loss: forward-mode AD (jvp) is not implemented");
  }
  auto node = make_node<GanLossBackward>();
  node->set_next_edges(torch::autograd::collect_next_edges(given));
  c10::List<bool> present_list;
  for (bool p : present) present_list.push_back(p);
  const std::vector<Tensor> inputs = expand_inputs(given, n, present_list);
  const at::ArrayRef<Tensor> all(inputs);
  node->n = n;
  node->recompute = recompute_gradient(inputs[0], triton);
  node->triton = triton;
  c10::List<bool> need;
  for (size_t i = 0; i < given.size(); ++i) {
    if (i < static_cast<size_t>(n)) need.push_back(!node->recompute && given[i].requires_grad());
    else node->aux_need_grad = node->aux_need_grad || given[i].requires_grad();
  }
  LossTermsOut o;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    o = call_loss_terms(triton, stats, all.slice(0, n), to_opt_list(all.slice(n, n)),
                        to_opt_list(all.slice(2 * n, n)), elems, label_values, coefs, reduction, need);
  }
  node->saved.reserve((node->recompute ? 0 : n) + given.size());
  if (!node->recompute) {
    for (const Tensor& g : o.grads) node->saved.emplace_back(g, false);
  }
  for (const Tensor& t : given) node->saved.emplace_back(t, false);
  node->present = std::move(present);
  node->a = Args{elems.vec(), label_values.vec(), coefs.vec(), reduction};
  std::vector<Tensor> out = pack_outputs(reduction, o);
  const size_t differentiable = is_none(reduction) ? static_cast<size_t>(n) : 1;  // then terms, stats
  for (size_t i = 0; i < differentiable; ++i) torch::autograd::set_history(out[i], node);
  return out;
}

void check_lists(at::TensorList logits, const OptList& labels, const OptList& weights) {
  TORCH_CHECK(!logits.empty(), "fusedgan::gan_loss: logits must hold at least one tensor");
  TORCH_CHECK(labels.size() == logits.size() && weights.size() == logits.size(),
              "fusedgan::gan_loss: labels and weights need one entry per logits tensor");
}

// Below autograd (inference mode, tracing without autograd keys): no gradient to compute.
std::vector<Tensor> gan_loss_no_grad(at::TensorList logits, const OptList& labels, const OptList& weights,
                                     at::IntArrayRef elems, at::ArrayRef<double> label_values,
                                     at::ArrayRef<double> coefs, int64_t reduction, bool stats, bool triton) {
  check_lists(logits, labels, weights);
  c10::List<bool> need;
  for (size_t i = 0; i < logits.size(); ++i) need.push_back(false);
  return pack_outputs(reduction, call_loss_terms(triton, stats, logits, labels, weights, elems, label_values,
                                                 coefs, reduction, need));
}

std::vector<Tensor> gan_loss_autograd(at::TensorList logits, const OptList& labels, const OptList& weights,
                                      at::IntArrayRef elems, at::ArrayRef<double> label_values,
                                      at::ArrayRef<double> coefs, int64_t reduction, bool stats, bool triton) {
  check_lists(logits, labels, weights);
  std::vector<Tensor> given(logits.begin(), logits.end());
  bool any_grad = false;
  std::vector<bool> present;
  for (const OptList* aux : {&labels, &weights}) {
    for (const auto& t : *aux) {
      const std::optional<Tensor> opt = t;
      present.push_back(opt.has_value() && opt->defined());
      if (present.back()) given.push_back(*opt);
    }
  }
  for (const Tensor& t : given) any_grad = any_grad || t.requires_grad();
  if (!at::GradMode::is_enabled() || !any_grad) {  // nothing to differentiate: no node
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return gan_loss_no_grad(logits, labels, weights, elems, label_values, coefs, reduction, stats, triton);
  }
  return gan_loss_with_node(std::move(given), static_cast<int64_t>(logits.size()), std::move(present), elems,
                            label_values, coefs, reduction, stats, triton);
}

}  // namespace
}  // namespace fusedgan

FUSEDGAN_AUTOGRAD_OP(gan_loss, &fusedgan::gan_loss_autograd, &fusedgan::gan_loss_no_grad)  // schema: csrc/ops.cpp
