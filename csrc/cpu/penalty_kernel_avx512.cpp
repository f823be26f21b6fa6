// AVX-512 (F, BW, VL, DQ) build of the penalty loops; compiled with those -m flags (setup.py gives
// them to every csrc/cpu/*_avx512.cpp) and called only on CPUs that have them.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "penalty_kernel_impl.h"
#endif
