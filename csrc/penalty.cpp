// Schemas of the gradient-penalty operators (contract: docs/operators.md).
//
// A gradient tensor g is viewed, contiguous, as [A, C, B]; each penalty group is a column
// g[a, :, b] (norm="sample": [batch, numel/batch, 1]; "pixel": [batch, channels, pixels];
// "batch": [1, numel, 1]).
//
//   group_sumsq(g, A, C, B) -> sumsq      sumsq[a, b] = sum_c g[a, c, b]^2
//       shape [A, B], float32 (float64 for float64 g): squares of fp16 / bf16 taken in float32.
//   group_scale_mul(g, scale, grad_output, A, C, B) -> grad_g
//       grad_g[a, c, b] = scale[a, b] * g[a, c, b] * grad_output
//       scale: [A, B] acc dtype; grad_output: one element, read on the device (no .item());
//       grad_g: g's shape and dtype, contiguous.
// Kernels: csrc/cpu/penalty_cpu.cpp (CPU), csrc/cuda/ (CUDA); the Triton versions are
// fusedgan::triton_group_sumsq / triton_group_scale_mul (fusedgan/triton/penalty.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fusedgan, m) {
  m.def("group_sumsq(Tensor g, int A, int C, int B) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("group_scale_mul(Tensor g, Tensor scale, Tensor grad_output, int A, int C, int B) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
