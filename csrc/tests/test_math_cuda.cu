// The shared maths (fusedgan/math.h) compiled as CUDA: every element function, in float and
// double, instantiated in device code through both dispatches (run time and compile time), so an
// element function that is not __host__ __device__-clean fails the build.  The kernels are never
// launched (ctest runs without a GPU); main() checks on the host that nvcc's instantiation of the
// two dispatches agree bitwise, and a few known values.
#include <cmath>
#include <cstdio>
#include <utility>

#include "fusedgan/math.h"

namespace {

using fusedgan::Elem;
using fusedgan::ScalarOps;

template <class T, int... Es>
__host__ __device__ bool same_both_ways(T x, T t, std::integer_sequence<int, Es...>) {
  bool ok = true;
  auto one = [&](auto e) {
    constexpr Elem E = static_cast<Elem>(decltype(e)::value);
    T v1, g1, v2, g2;
    fusedgan::elem_eval<T, ScalarOps<T>>(E, x, t, v1, g1);
    fusedgan::elem_eval<E, T, ScalarOps<T>>(x, t, v2, g2);
    const bool nan_v = v1 != v1 && v2 != v2, nan_g = g1 != g1 && g2 != g2;
    ok = ok && (v1 == v2 || nan_v) && (g1 == g2 || nan_g);
  };
  (one(std::integral_constant<int, Es>{}), ...);
  return ok;
}

template <class T>
__global__ void eval_kernel(const T* x, const T* t, int n, bool* ok) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) ok[i] = same_both_ways<T>(x[i], t[i], std::make_integer_sequence<int, fusedgan::kNumElems>{});
}

template __global__ void eval_kernel<float>(const float*, const float*, int, bool*);
template __global__ void eval_kernel<double>(const double*, const double*, int, bool*);

template <class T>
int check_host(const char* name) {
  const T xs[] = {T(0), T(-0.0), T(1e-30), T(-1e-30), T(0.5), T(-3), T(88), T(-88), T(1e4), T(-1e4),
                  T(INFINITY), T(-INFINITY), T(NAN)};
  const T ts[] = {T(0), T(1), T(0.9), T(-1)};
  int failures = 0;
  for (T x : xs) {
    for (T t : ts) {
      if (!same_both_ways<T>(x, t, std::make_integer_sequence<int, fusedgan::kNumElems>{})) {
        std::printf("%s: run-time and compile-time dispatch differ at x=%g t=%g\n", name, double(x), double(t));
        ++failures;
      }
    }
  }
  T v, g;
  fusedgan::elem_eval<T, ScalarOps<T>>(Elem::BCE, T(0), T(1), v, g);
  if (std::fabs(double(v) - std::log(2.0)) > 1e-6 || std::fabs(double(g) + 0.5) > 1e-6) {
    std::printf("%s: BCE(0, 1) = (%g, %g), want (log 2, -0.5)\n", name, double(v), double(g));
    ++failures;
  }
  return failures;
}

}  // namespace

int main() {
  const int failures = check_host<float>("float") + check_host<double>("double");
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
