// fusedgan's operator registry: every schema, and the CPU and CUDA kernels of the kernel operators
// (FUSEDGAN_KERNEL_OPS, fusedgan/ops.h).  The operators with autograd register their two kernels
// where their autograd Function lives (FUSEDGAN_AUTOGRAD_OP); the Triton twins (triton_<name>, the
// same schemas) and the Python operators (fakes, exact backwards) are registered by fusedgan/ops.py.
//
// fusedgan::loss_terms(logits, labels, weights, elems, label_values, coefs, reduction, need_grad)
//     -> (total, terms, grads, values)
// computes n loss terms in one pass.  For term i, with x = logits[i], N = x.numel(), label t
// (labels[i]: 1 or N elements, else label_values[i]), weight w (weights[i]: 1 or N elements, else 1),
// scale = 1/N for MEAN and 1 otherwise, and math in float (double for float64 logits):
//     terms[i]  = coefs[i] * scale * sum_j w_j * elem(x_j, t_j)         (acc dtype, shape [n])
//     total     = terms[0] + terms[1] + ...                             (acc dtype, 0-dim)
//     grads[i]  = coefs[i] * scale * w * d elem/dx   if need_grad[i]    (x's shape and dtype)
//     values[i] = coefs[i] * w * elem(x, t)          if reduction NONE  (x's shape and dtype)
// Unwanted grads / values are empty [0] tensors.  Element functions: fusedgan/math.h; codes:
// fusedgan/codes.h (generated from fusedgan/codes.py).
#include <torch/library.h>

#include "fusedgan/codes.h"
#include "fusedgan/ops.h"

namespace {

constexpr const char* kLossTermsSchema =
    "loss_terms(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, bool[] need_grad) "
    "-> (Tensor total, Tensor terms, Tensor[] grads, Tensor[] values)";

// fusedgan::loss_terms_stats(<same arguments>) -> (total, terms, grads, values, stats): loss_terms
// plus, from the same pass, stats[i] = (sum x, sum sigmoid(x), count x > 0, count x < 0) over
// logits[i], unweighted, shape [n, 4] in the acc dtype (docs/operators.md).
constexpr const char* kLossTermsStatsSchema =
    "loss_terms_stats(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, bool[] need_grad) "
    "-> (Tensor total, Tensor terms, Tensor[] grads, Tensor[] values, Tensor stats)";

// fusedgan::loss_grads(<loss_terms' arguments, with grad_outputs for need_grad>) -> grads: each
// term's gradient times grad_outputs[i] (0-dim / one element: broadcast; else per element, for
// reduction NONE), recomputed from the logits in one pass; an empty [0] tensor where
// grad_outputs[i] is None.  The backward of gan_loss on GPUs (docs/operators.md).
constexpr const char* kLossGradsSchema =
    "loss_grads(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, Tensor?[] grad_outputs) -> Tensor[]";

// The penalty kernels (contracts: csrc/penalty.cpp).
constexpr const char* kGroupSumsqSchema = "group_sumsq(Tensor g, int A, int C, int B) -> Tensor";
constexpr const char* kGroupScaleMulSchema =
    "group_scale_mul(Tensor g, Tensor scale, Tensor grad_output, int A, int C, int B) -> Tensor";
constexpr const char* kGroupPenaltySchema =
    "group_penalty(Tensor g, int A, int C, int B, int kind, float center, bool one_sided, "
    "int reduction, float gamma, int batch) -> (Tensor value, Tensor scale)";

// The operators with autograd (contracts: csrc/autograd.cpp, csrc/relativistic.cpp,
// csrc/penalty.cpp).
constexpr const char* kGanLossSchema =
    "gan_loss(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, bool stats=False, bool triton=False) -> Tensor[]";
constexpr const char* kRelGanLossSchema =
    "rel_gan_loss(Tensor[] reals, Tensor[] fakes, Tensor?[] weights, int[] scales, int[] logits, "
    "int[] elems, float[] label_values, float[] coefs, int reduction, bool stats=False, "
    "bool triton=False) -> Tensor[]";
constexpr const char* kGanPenaltySchema =
    "gan_penalty(Tensor g, int A, int C, int B, int kind, float center, bool one_sided, "
    "int reduction, float gamma, int batch, int[] value_shape, str norm, bool triton=False) -> Tensor";

}  // namespace

TORCH_LIBRARY(fusedgan, m) {
  for (const char* kernel : {kLossTermsSchema, kLossTermsStatsSchema, kLossGradsSchema, kGroupSumsqSchema,
                             kGroupScaleMulSchema, kGroupPenaltySchema}) {
    m.def(kernel, {at::Tag::pt2_compliant_tag});
  }
  for (const char* with_autograd : {kGanLossSchema, kRelGanLossSchema, kGanPenaltySchema}) m.def(with_autograd);
}

#define FUSEDGAN_IMPL_KERNEL(name, Fn, dev) m.impl(#name, &fusedgan::dev::name##_##dev);

TORCH_LIBRARY_IMPL(fusedgan, CPU, m) { FUSEDGAN_KERNEL_OPS(FUSEDGAN_IMPL_KERNEL, cpu) }

#if defined(FUSEDGAN_WITH_CUDA)
TORCH_LIBRARY_IMPL(fusedgan, CUDA, m) { FUSEDGAN_KERNEL_OPS(FUSEDGAN_IMPL_KERNEL, cuda) }
#endif

// The Python module: introspection, and OpCall (csrc/python_calls.cpp), the short eager entry into
// the operators with autograd.
#if defined(TORCH_EXTENSION_NAME)
#include <torch/extension.h>
#include <torch/version.h>

#include <string>

namespace fusedgan::cpu {
int64_t buffer_pool_bytes();
void empty_buffer_pool();
}  // namespace fusedgan::cpu

namespace fusedgan {
void add_op_calls(pybind11::module_& m);  // csrc/python_calls.cpp
}  // namespace fusedgan

#ifndef FUSEDGAN_CUDA_ARCHS
#define FUSEDGAN_CUDA_ARCHS ""
#endif

namespace {

// Every code this build was compiled with (codes.h), for tests/test_codes.py.
pybind11::dict codes() {
  pybind11::dict d;
  for (const fusedgan::CodeEntry& e : fusedgan::kAllCodes) d[e.name] = e.value;
  return d;
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

pybind11::dict build_info() {
  pybind11::dict d;
  d["cpu"] = true;
#if defined(FUSEDGAN_WITH_CUDA)
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["cuda_archs"] = std::string(FUSEDGAN_CUDA_ARCHS);
  d["cpu_capability"] = std::string(fusedgan::cpu::cpu_capability_name());
  d["torch_version"] = std::string(TORCH_VERSION);
  d["compiler"] = compiler();
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fusedgan native kernels; the operators live in torch.ops.fusedgan (OpCall: their eager entry)";
  m.def("codes", &codes, "Every code of csrc/include/fusedgan/codes.h, by name");
  m.def("build_info", &build_info, "What this build of fusedgan._C contains");
  m.def("buffer_pool_bytes", &fusedgan::cpu::buffer_pool_bytes,
        "Bytes of CPU gradient buffers the pool keeps for reuse (csrc/cpu/buffer_pool.h)");
  m.def("empty_buffer_pool", &fusedgan::cpu::empty_buffer_pool,
        "Drop the CPU gradient buffers the pool keeps for reuse");
  fusedgan::add_op_calls(m);
}
#endif
