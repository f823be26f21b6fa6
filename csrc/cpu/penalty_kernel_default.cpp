// Baseline build of the penalty loops (see penalty_kernel_impl.h).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "penalty_kernel_impl.h"
