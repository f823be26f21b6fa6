// AVX2 + FMA + F16C build of the penalty loops; compiled with those -m flags (setup.py gives them
// to every csrc/cpu/*_avx2.cpp) and called only on CPUs that have them.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "penalty_kernel_impl.h"
#endif
