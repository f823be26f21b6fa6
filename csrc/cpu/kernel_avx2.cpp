// AVX2 + FMA + F16C build of the chunk kernel.  The build compiles this file alone with
// -mavx2 -mfma -mf16c (setup.py, CMakeLists.txt); loss_terms_cpu.cpp calls it only on CPUs that
// have those.  Without the flags (another compiler or architecture) it compiles to nothing.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "kernel_impl.h"
#endif
