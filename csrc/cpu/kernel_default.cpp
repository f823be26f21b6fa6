// Baseline x86-64 (or any CPU) build of the chunk kernel: Vectorized falls back to plain arrays
// that the compiler vectorises with the baseline instruction set.
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "kernel_impl.h"
