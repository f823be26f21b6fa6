// fusedgan::rel_gan_loss: the relativistic kinds (rsgan, ragan, ralsgan, rahinge), with the means
// mr = E r and mf = E f computed inside the operator and differentiated through, in C++.
//
//   rel_gan_loss(Tensor[] reals, Tensor[] fakes, Tensor?[] weights, int[] scales, int[] logits,
//                int[] elems, float[] label_values, float[] coefs, int reduction,
//                bool stats=False, bool triton=False) -> Tensor[]
//
// Scale s holds reals[s] and fakes[s] (any sizes; equal for rsgan).  Term t reads scale scales[t]
// and the relativistic logit logits[t]: 0 = r - mf, 1 = f - mr, 2 = r - f, 3 = f - r; then it is
// coefs[t] * reduce(w_t * elem_t(logit, label_values[t])) as in fusedgan::loss_terms, with
// weights[t] (optional) shaped like the term's logit.  Reduction MEAN or SUM returns
// [total, terms] (terms not differentiable), both in the acc dtype; with `stats`, also the
// loss_terms_stats rows of the relativistic logits ([T, kStatCols], not differentiable).
// Reduction NONE returns [values_0, ..., values_{T-1}, terms]: each term's per-element losses
// (acc dtype, the logit's shape; no stats).  `triton` runs the loss pass with
// fusedgan::triton_loss_terms(_stats) instead of fusedgan::loss_terms(_stats) (the Triton backend;
// same schema, registered by Python).
//
// Forward: the means (one reduction per tensor), the relativistic logits, and ONE
// fusedgan::loss_terms (or loss_terms_stats) call over every term of every scale, which returns
// each term's gradient G_t with respect to its logit.  The gradient through the means is added
// here (combine_grads): for a term on r - mf, d/dr = G_t and d/df_j = -sum(G_t) / N_f for every j
// (mf = mean f); symmetrically for f - mr; for r - f, d/dr = G_t and d/df = -G_t.  MEAN / SUM:
// those full gradients are saved (in the inputs' dtypes) and backward multiplies them by
// grad_output, as gan_loss does.  NONE: G_t is saved, and backward combines G_t * grad_output_t
// (elementwise, so the path through a mean is -sum(G_t * grad_output_t) / N).  With grad mode on
// in backward (create_graph=True), or when a weight needs a gradient, backward calls
// fusedgan::rel_gan_loss_exact_backward, a Python operator that differentiates the reference.
#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "fusedgan/autograd_support.h"
#include "fusedgan/codes.h"
#include "fusedgan/loss_terms_call.h"
#include "fusedgan/ops.h"

namespace fusedgan {
namespace {

using ExactFn = std::vector<Tensor>(at::TensorList, at::TensorList, const OptList&, at::IntArrayRef,
                                    at::IntArrayRef, at::IntArrayRef, at::ArrayRef<double>,
                                    at::ArrayRef<double>, int64_t, const OptList&, const c10::List<bool>&);

constexpr int64_t R_MINUS_MF = static_cast<int64_t>(RelLogit::R_MINUS_MF);
constexpr int64_t F_MINUS_MR = static_cast<int64_t>(RelLogit::F_MINUS_MR);
constexpr int64_t R_MINUS_F = static_cast<int64_t>(RelLogit::R_MINUS_F);

void check_args(at::TensorList reals, at::TensorList fakes, const OptList& weights,
                at::IntArrayRef scales, at::IntArrayRef logits, at::IntArrayRef elems,
                at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
                bool stats) {
  const char* op = "fusedgan::rel_gan_loss";
  TORCH_CHECK(!reals.empty() && reals.size() == fakes.size(), op,
              ": needs one or more scales, the same number of reals and fakes");
  const size_t T = scales.size();
  TORCH_CHECK(T > 0 && logits.size() == T && elems.size() == T && label_values.size() == T &&
                  coefs.size() == T && weights.size() == T,
              op, ": scales, logits, elems, label_values, coefs and weights need one entry per term");
  TORCH_CHECK(reduction >= 0 && reduction < kNumReductions, op,
              ": reduction must be NONE (0), MEAN (1) or SUM (2), got ", reduction);
  TORCH_CHECK(!(stats && reduction == static_cast<int64_t>(Reduction::NONE)), op,
              ": stats need reduction MEAN or SUM");
  for (size_t t = 0; t < T; ++t) {
    TORCH_CHECK(scales[t] >= 0 && scales[t] < static_cast<int64_t>(reals.size()), op,
                ": scales[", t, "] = ", scales[t], " is out of range");
    TORCH_CHECK(logits[t] >= 0 && logits[t] < kNumRelLogits, op, ": logits[", t, "] must be in [0, ",
                kNumRelLogits, "), got ", logits[t]);
    if (logits[t] >= R_MINUS_F) {
      TORCH_CHECK(reals[scales[t]].sym_sizes() == fakes[scales[t]].sym_sizes(), op,
                  ": pairwise logits (r - f) need real and fake of equal shapes");
    }
  }
}

// The loss_terms call over the relativistic logits (values: reduction NONE's per-element losses of
// each term, acc dtype; grads: each term's gradient wrt its logit, kept for reduction NONE only),
// and for MEAN / SUM the full gradients through the means.
struct Forward : LossTermsOut {
  std::vector<Tensor> grad_r, grad_f;  // full gradients (through the means), inputs' dtypes
};

// The full gradients with respect to reals and fakes from each term's gradient G_t with respect
// to its relativistic logit: a term on r - mf gives G_t to r and -sum(G_t) / N_f to every f_j
// (mf = mean f); symmetrically for f - mr; a term on r - f gives G_t to r and -G_t to f.  In the
// inputs' shapes (a 0-dim contribution alone still needs it) and dtypes, contiguous.
void combine_grads(at::TensorList reals, at::TensorList fakes, at::IntArrayRef scales,
                   at::IntArrayRef logits, bool triton, const std::vector<Tensor>& grads,
                   std::vector<Tensor>& grad_r, std::vector<Tensor>& grad_f) {
  const size_t S = reals.size();
  std::vector<Tensor> gr(S), gf(S);
  auto add = [](Tensor& acc_t, const Tensor& g) { acc_t = acc_t.defined() ? acc_t + g : g; };
  for (size_t t = 0; t < scales.size(); ++t) {
    const int64_t s = scales[t];
    const Tensor& g = grads[t];
    if (!g.defined()) continue;  // (backward of reduction NONE: no gradient for this output)
    switch (logits[t]) {
      case R_MINUS_MF:
        add(gr[s], g);
        add(gf[s], fixed_order_sum(g, triton).neg().div(c10::Scalar(fakes[s].sym_numel())));
        break;
      case F_MINUS_MR:
        add(gf[s], g);
        add(gr[s], fixed_order_sum(g, triton).neg().div(c10::Scalar(reals[s].sym_numel())));
        break;
      case R_MINUS_F:
        add(gr[s], g);
        add(gf[s], -g);
        break;
      default:
        add(gf[s], g);
        add(gr[s], -g);
        break;
    }
  }
  auto finish = [](const Tensor& g, const Tensor& input) {
    Tensor out = (g.defined() ? g : at::zeros({}, input.options())).expand_symint(input.sym_sizes());
    return out.scalar_type() == input.scalar_type() ? out.contiguous() : out.to(input.scalar_type()).contiguous();
  };
  grad_r.clear();
  grad_f.clear();
  for (size_t s = 0; s < S; ++s) {
    grad_r.push_back(finish(gr[s], reals[s]));
    grad_f.push_back(finish(gf[s], fakes[s]));
  }
}

Forward rel_forward(at::TensorList reals, at::TensorList fakes, const OptList& weights,
                    at::IntArrayRef scales, at::IntArrayRef logits, at::IntArrayRef elems,
                    at::ArrayRef<double> label_values, at::ArrayRef<double> coefs, int64_t reduction,
                    bool stats, bool triton, bool want_grads) {
  const size_t S = reals.size(), T = scales.size();
  const at::ScalarType acc =
      reals[0].scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  std::vector<Tensor> r(S), f(S), mr(S), mf(S);
  // (No .to() when the dtype is already right: an operator below autograd must not hand an
  // input back as an output, and to() would.)
  auto as_acc = [acc](const Tensor& t) { return t.scalar_type() == acc ? t : t.to(acc); };
  for (size_t s = 0; s < S; ++s) {
    r[s] = as_acc(reals[s]);
    f[s] = as_acc(fakes[s]);
  }
  std::vector<Tensor> x(T);
  for (size_t t = 0; t < T; ++t) {
    const int64_t s = scales[t];
    switch (logits[t]) {
      case R_MINUS_MF:
        if (!mf[s].defined()) mf[s] = fixed_order_sum(f[s], triton, /*mean=*/true);
        x[t] = r[s] - mf[s];
        break;
      case F_MINUS_MR:
        if (!mr[s].defined()) mr[s] = fixed_order_sum(r[s], triton, /*mean=*/true);
        x[t] = f[s] - mr[s];
        break;
      case R_MINUS_F: x[t] = r[s] - f[s]; break;
      default: x[t] = f[s] - r[s]; break;
    }
  }
  OptList labels, w;
  c10::List<bool> need;
  for (size_t t = 0; t < T; ++t) {
    labels.push_back(std::nullopt);
    const std::optional<Tensor> wt = weights.get(t);
    w.push_back(wt.has_value() && wt->defined() ? std::optional<Tensor>(as_acc(*wt)) : std::nullopt);
    need.push_back(want_grads);
  }
  Forward out;
  static_cast<LossTermsOut&>(out) =
      call_loss_terms(triton, stats, x, labels, w, elems, label_values, coefs, reduction, need);
  // Reduction NONE: the logit gradients are combined in backward, once grad_output is known.
  if (!want_grads || reduction == static_cast<int64_t>(Reduction::NONE)) return out;
  combine_grads(reals, fakes, scales, logits, triton, out.grads, out.grad_r, out.grad_f);
  out.grads.clear();
  return out;
}

// given = reals (S), fakes (S), then the weights that are present (present[t]).
struct RelGanLossFunction : public torch::autograd::Function<RelGanLossFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList given, int64_t S,
                               std::vector<bool> present, std::vector<int64_t> scales,
                               std::vector<int64_t> logits, std::vector<int64_t> elems,
                               std::vector<double> label_values, std::vector<double> coefs,
                               int64_t reduction, bool stats, bool triton) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const at::TensorList reals = given.slice(0, S), fakes = given.slice(S, S);
    OptList weights;
    size_t k = 2 * static_cast<size_t>(S);
    bool aux_need_grad = false;
    for (bool p : present) {
      if (p) {
        aux_need_grad = aux_need_grad || given[k].requires_grad();
        weights.push_back(given[k++]);
      } else {
        weights.push_back(std::nullopt);
      }
    }
    Forward fw = rel_forward(reals, fakes, weights, scales, logits, elems, label_values, coefs,
                             reduction, stats, triton, /*want_grads=*/true);
    const bool none = reduction == static_cast<int64_t>(Reduction::NONE);
    // Saved: the full gradients (2S; MEAN / SUM) or each term's logit gradient (T; NONE), then
    // the given tensors (for the exact backward).
    std::vector<Tensor> saved;
    if (none) {
      saved = fw.grads;
    } else {
      saved.assign(fw.grad_r.begin(), fw.grad_r.end());
      saved.insert(saved.end(), fw.grad_f.begin(), fw.grad_f.end());
    }
    SavedArgs()
        .put(static_cast<int64_t>(saved.size()))  // n_lead
        .put(S)
        .put(present)
        .put(scales)
        .put(logits)
        .put(elems)
        .put(label_values)
        .put(coefs)
        .put(reduction)
        .put(aux_need_grad)
        .put(triton)
        .save(ctx);
    saved.insert(saved.end(), given.begin(), given.end());
    ctx->save_for_backward(saved);
    ctx->mark_non_differentiable(stats ? variable_list{fw.terms, fw.stats} : variable_list{fw.terms});
    return pack_outputs(reduction, fw);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    SavedArgs args(ctx);
    const size_t n_lead = static_cast<size_t>(args.get_int());
    const int64_t S = args.get_int();
    const c10::List<bool> present = args.get_bools();
    const std::vector<int64_t> scales = args.get_ints();
    const std::vector<int64_t> logits = args.get_ints();
    const std::vector<int64_t> elems = args.get_ints();
    const std::vector<double> label_values = args.get_floats();
    const std::vector<double> coefs = args.get_floats();
    const int64_t reduction = args.get_int();
    const bool aux_need_grad = args.get_bool(), triton = args.get_bool();
    const variable_list saved = ctx->get_saved_variables();
    const size_t num_given = saved.size() - n_lead;
    const at::TensorList given(saved.data() + n_lead, num_given);
    variable_list grads(num_given + 10);  // given, then the 10 non-tensor arguments of forward
    const bool none = reduction == static_cast<int64_t>(Reduction::NONE);
    const size_t n_out = none ? scales.size() : 1;  // the differentiable outputs
    OptList gos;
    bool any = false;
    for (size_t i = 0; i < n_out; ++i) {
      any = any || grad_outputs[i].defined();
      gos.push_back(grad_outputs[i].defined() ? std::optional<Tensor>(grad_outputs[i]) : std::nullopt);
    }
    if (!any) return grads;
    const bool exact = at::GradMode::is_enabled() || aux_need_grad;
    if (!exact && !none) {
      for (int64_t i = 0; i < 2 * S; ++i) {
        if (ctx->needs_input_grad(i)) grads[i] = at::mul(saved[i], grad_outputs[0]);
      }
      return grads;
    }
    if (!exact) {  // NONE: each term's logit gradient times its elementwise grad_output, combined
      std::vector<Tensor> h(scales.size());
      for (size_t t = 0; t < scales.size(); ++t) {
        if (grad_outputs[t].defined()) h[t] = saved[t] * grad_outputs[t];
      }
      const at::TensorList reals = given.slice(0, S), fakes = given.slice(S, S);
      std::vector<Tensor> gr, gf;
      combine_grads(reals, fakes, scales, logits, triton, h, gr, gf);
      for (int64_t s = 0; s < S; ++s) {
        if (ctx->needs_input_grad(s)) grads[s] = gr[s];
        if (ctx->needs_input_grad(S + s)) grads[S + s] = gf[s];
      }
      return grads;
    }
    static const auto exact_op = c10::Dispatcher::singleton()
                                     .findSchemaOrThrow("fusedgan::rel_gan_loss_exact_backward", "")
                                     .typed<ExactFn>();
    OptList weights;
    size_t k = 2 * static_cast<size_t>(S);
    for (bool p : present) {
      weights.push_back(p ? std::optional<Tensor>(given[k++]) : std::nullopt);
    }
    c10::List<bool> wanted;
    for (size_t i = 0; i < num_given; ++i) wanted.push_back(ctx->needs_input_grad(i));
    auto exact_grads = exact_op.call(given.slice(0, S), given.slice(S, S), weights, scales, logits, elems,
                                     label_values, coefs, reduction, gos, wanted);
    for (size_t i = 0; i < num_given; ++i) {
      if (wanted[i]) grads[i] = exact_grads[i];
    }
    return grads;
  }
};

// rel_gan_loss's kernels: kAutograd, at the Autograd key, makes the node (RelGanLossFunction)
// when an input needs a gradient; else (and below autograd: inference mode, tracing without
// autograd keys) the loss only.
template <bool kAutograd>
std::vector<Tensor> rel_gan_loss_kernel(at::TensorList reals, at::TensorList fakes, const OptList& weights,
                                        at::IntArrayRef scales, at::IntArrayRef logits, at::IntArrayRef elems,
                                        at::ArrayRef<double> label_values, at::ArrayRef<double> coefs,
                                        int64_t reduction, bool stats, bool triton) {
  check_args(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction, stats);
  std::optional<at::AutoDispatchBelowADInplaceOrView> below_autograd;
  if constexpr (kAutograd) {
    std::vector<Tensor> given(reals.begin(), reals.end());
    given.insert(given.end(), fakes.begin(), fakes.end());
    std::vector<bool> present;
    for (const auto& wt : weights) {
      const std::optional<Tensor> opt = wt;
      present.push_back(opt.has_value() && opt->defined());
      if (present.back()) given.push_back(*opt);
    }
    bool any_grad = false;
    for (const Tensor& x : given) any_grad = any_grad || x.requires_grad();
    if (at::GradMode::is_enabled() && any_grad) {
      return RelGanLossFunction::apply(at::TensorList(given), static_cast<int64_t>(reals.size()), present,
                                       scales.vec(), logits.vec(), elems.vec(), label_values.vec(), coefs.vec(),
                                       reduction, stats, triton);
    }
    below_autograd.emplace();  // nothing to differentiate: no node
  }
  const Forward fw = rel_forward(reals, fakes, weights, scales, logits, elems, label_values, coefs, reduction,
                                 stats, triton, /*want_grads=*/false);
  return pack_outputs(reduction, fw);
}

}  // namespace
}  // namespace fusedgan

FUSEDGAN_AUTOGRAD_OP(rel_gan_loss, &fusedgan::rel_gan_loss_kernel<true>, &fusedgan::rel_gan_loss_kernel<false>)
