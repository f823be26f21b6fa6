// Declarations shared by csrc/ops.cpp (schemas, Python module) and the backend kernels.
#pragma once

namespace fusedgan {

// The schema of fusedgan::loss_terms; see csrc/ops.cpp for the contract.
inline constexpr const char* kLossTermsSchema =
    "loss_terms(Tensor[] logits, Tensor?[] labels, Tensor?[] weights, int[] elems, "
    "float[] label_values, float[] coefs, int reduction, bool[] need_grad) "
    "-> (Tensor total, Tensor terms, Tensor[] grads, Tensor[] values)";

namespace cpu {
// The SIMD level the CPU kernel dispatches to on this machine: "avx512", "avx2" or "default".
const char* cpu_capability_name();
}  // namespace cpu

}  // namespace fusedgan
