// Reuse of large CPU output buffers: the gradients of the loss and penalty operators.
//
// A [64,3,128,128] float32 gradient is 12.6 MB: glibc serves it with mmap (or trims it back to
// the OS when it is freed), so every step writes freshly faulted-in, zero-filled pages, and that
// costs as much as the arithmetic.  The pool keeps the storages it handed out; a storage whose
// only remaining owner is the pool (the step that used it has dropped every tensor on it) is
// handed out again, warm and already mapped.  A storage anyone still references is never reused.
//
// Bounded: at most kMaxEntries storages and kMaxBytes in all; buffers under kMinBytes are left to
// the allocator.  FUSEDGAN_CPU_BUFFER_POOL=0 turns the pool off; empty_buffer_pool() drops it.
#pragma once

#include <ATen/core/Tensor.h>

namespace fusedgan::cpu {

// An uninitialised contiguous tensor of `sizes` and `options` (a CPU device), from the pool when
// a free buffer of exactly that many bytes is there.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

// Bytes held by the pool now, and drop every buffer it holds.
int64_t buffer_pool_bytes();
void empty_buffer_pool();

}  // namespace fusedgan::cpu
