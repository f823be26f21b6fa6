// AVX-512 (F, BW, VL, DQ) build of the chunk kernel.  The build compiles this file alone with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma (setup.py, CMakeLists.txt);
// loss_terms_cpu.cpp calls it only on CPUs that have those.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "kernel_impl.h"
#endif
