// Unit tests of csrc/include/fusedgan/math.h (scalar policy: the CUDA and reference path) against
// long-double references: every Elem in float and double at many points, including +-0,
// subnormals, +-88, +-1e4, +-inf and NaN, and the fast float exp / log1p over their whole ranges.
// Plain asserts and a main; prints the measured worst errors.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <vector>

#include "fusedgan/math.h"

using fusedgan::Elem;
using LD = long double;

#include "expect.h"

// ---- long-double references (the plain formulas of fusedgan/kinds.py) ----------------------
static LD sp(LD z) { return (z > 0 ? z : 0) + log1pl(expl(-fabsl(z))); }
static LD sig(LD z) { return 1 / (1 + expl(-z)); }

static void ref(Elem e, LD x, LD t, LD& v, LD& g) {
  switch (e) {
    case Elem::BCE:
      v = t * sp(-x) + (1 - t) * sp(x);
      g = (1 - t) * sig(x) - t * sig(-x);  // = sigmoid(x) - t, without cancellation at t = 1
      if (std::isnan(x)) g = x;
      return;
    case Elem::HALF_SQUARE: v = 0.5L * (x - t) * (x - t); g = x - t; return;
    case Elem::LINEAR: v = -t * x; g = -t; return;
    case Elem::ABS: v = fabsl(x - t); g = x > t ? 1 : (x < t ? -1 : 0); return;
    case Elem::HINGE: {
      const LD m = 1 - t * x;
      v = m > 0 ? m : (std::isnan(m) ? m : 0);
      g = m <= 0 ? 0 : -t;  // torch's relu': 0 at and below the kink, passed at NaN
      return;
    }
    case Elem::SOFTPLUS_NEG:
      v = sp(-x);
      g = -sig(-x);
      if (std::isnan(x)) g = x;
      return;
    case Elem::SQ_RELU_ABOVE:
    case Elem::SQ_RELU_BELOW: {  // torch's relu(d).square(): relu keeps a NaN d
      const bool above = e == Elem::SQ_RELU_ABOVE;
      const LD d = above ? x - t : t - x;
      const LD m = d > 0 ? d : (std::isnan(d) ? d : 0);
      v = m * m;
      g = (above ? 2 : -2) * m;
      return;
    }
  }
}

// Error of `got` against `want` in units of `scale` (the result's natural size), NaN-aware:
// returns 0 for matching NaNs / infinities, +inf on a mismatch.
template <class T>
static double err(T got, LD want, LD scale) {
  if (std::isnan(want) || std::isnan(static_cast<LD>(got)))
    return std::isnan(want) && std::isnan(static_cast<LD>(got)) ? 0.0 : INFINITY;
  if (std::isinf(want) || std::isinf(static_cast<LD>(got))) return static_cast<LD>(got) == want ? 0.0 : INFINITY;
  if (static_cast<LD>(got) == want) return 0.0;
  const LD tiny = std::numeric_limits<T>::min();  // below: absolute error in subnormal ulps
  const LD d = fabsl(static_cast<LD>(got) - want);
  if (scale < tiny) return static_cast<double>(d / std::numeric_limits<T>::denorm_min()) * std::numeric_limits<T>::epsilon() * 0.5;
  return static_cast<double>(d / scale);
}

template <class T>
static std::vector<T> points() {
  std::vector<T> xs = {T(0), -T(0), T(1), T(-1), T(0.5), T(-0.5), T(2), T(-2), T(88), T(-88),
                       T(87.5), T(-87.5), T(89), T(-89), T(100), T(-100), T(103.5), T(-103.5),
                       T(104), T(-104), T(110), T(-110), T(745), T(-745), T(1e4), T(-1e4),
                       std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::denorm_min(),
                       std::numeric_limits<T>::min(), -std::numeric_limits<T>::min(), T(1e-30), T(-1e-30),
                       std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                       std::numeric_limits<T>::quiet_NaN()};
  // Dense log-spaced sweep of |x| in [1e-8, 1e4], both signs.
  for (int i = 0; i <= 200000; ++i) {
    const double a = std::pow(10.0, -8.0 + 12.0 * i / 200000.0);
    xs.push_back(T(a));
    xs.push_back(T(-a));
  }
  return xs;
}

template <class T>
static void check_elems(const char* name, double tol_value, double tol_grad) {
  using Ops = fusedgan::ScalarOps<T>;
  const T labels[] = {T(0), T(1), T(0.3), T(0.9), T(-1), T(2)};
  const auto xs = points<T>();
  for (int ei = 0; ei < fusedgan::kNumElems; ++ei) {
    const Elem e = static_cast<Elem>(ei);
    double worst_v = 0, worst_g = 0;
    for (T t : labels) {
      for (T x : xs) {
        T v, g;
        fusedgan::elem_eval<T, Ops>(e, x, t, v, g);
        LD rv, rg;
        ref(e, x, t, rv, rg);
        // Scales: for labels in {0, 1} BCE terms do not cancel, so errors are relative to the
        // result; otherwise relative to the size of the terms that are added.
        LD sv = fabsl(rv), sg = fabsl(rg);
        if (e == Elem::BCE && !(t == 0 || t == 1)) {
          sv = fabsl(t * sp(-LD(x))) + fabsl((1 - t) * sp(LD(x)));
          sg = fabsl(sig(LD(x))) + fabsl(LD(t));
        } else if (e != Elem::BCE) {
          sv = fabsl(LD(x) * t) + fabsl(LD(x)) + 1;
          sg = fabsl(LD(x)) + fabsl(LD(t)) + 1;
          if (e == Elem::HALF_SQUARE || e == Elem::SQ_RELU_ABOVE || e == Elem::SQ_RELU_BELOW) sv = sg * sg;
        }
        const double ev = err(v, rv, sv), eg = err(g, rg, sg);
        EXPECT(ev <= tol_value, "%s elem %d value x=%.9g t=%g got %.9g want %.9Lg (err %.3g)", name, ei,
              double(x), double(t), double(v), rv, ev);
        EXPECT(eg <= tol_grad, "%s elem %d grad x=%.9g t=%g got %.9g want %.9Lg (err %.3g)", name, ei,
              double(x), double(t), double(g), rg, eg);
        if (ev > worst_v) worst_v = ev;
        if (eg > worst_g) worst_g = eg;
      }
    }
    std::printf("%-6s elem %d: worst relative error value %.3g, grad %.3g\n", name, ei, worst_v, worst_g);
  }
}

static void check_fast_exp_log1p() {
  using Ops = fusedgan::ScalarOps<float>;
  double worst = 0, worst_sub = 0;
  // Every float in [-104, 0] is too many; a fine uniform grid plus the edges.
  for (int i = 0; i <= 20000000; ++i) {
    const float a = -104.0f * static_cast<float>(i) / 20000000.0f;
    const float got = Ops::exp_nonpos(a);
    const LD want = expl(static_cast<LD>(a));
    if (want >= FLT_MIN) {
      const double e = static_cast<double>(fabsl(got - want) / want);
      if (e > worst) worst = e;
    } else {
      const double e = static_cast<double>(fabsl(got - want) / std::numeric_limits<float>::denorm_min());
      if (e > worst_sub) worst_sub = e;
    }
  }
  std::printf("fast exp: worst relative error %.3g (normal results), %.3g subnormal ulps\n", worst, worst_sub);
  EXPECT(worst <= 2e-7, "fast exp relative error %.3g", worst);
  EXPECT(worst_sub <= 1.0, "fast exp subnormal error %.3g ulp", worst_sub);
  EXPECT(Ops::exp_nonpos(-INFINITY) == 0.0f, "exp(-inf) must be 0");
  EXPECT(Ops::exp_nonpos(0.0f) == 1.0f && Ops::exp_nonpos(-0.0f) == 1.0f, "exp(0) must be 1");
  EXPECT(std::isnan(Ops::exp_nonpos(NAN)), "exp(NaN) must be NaN");
  EXPECT(Ops::exp_nonpos(-103.0f) > 0.0f, "exp(-103) must be a subnormal, not 0");
  EXPECT(Ops::exp_nonpos(-200.0f) == 0.0f, "exp(-200) must be 0");

  double worst_l = 0;
  for (int i = 0; i <= 20000000; ++i) {
    const float e = static_cast<float>(i) / 20000000.0f;
    if (e == 0) continue;
    const LD want = log1pl(static_cast<LD>(e));
    const double err_l = static_cast<double>(fabsl(Ops::log1p_unit(e) - want) / want);
    if (err_l > worst_l) worst_l = err_l;
  }
  for (float e = std::numeric_limits<float>::denorm_min(); e < 1e-3f; e = std::max(e * 1.01f, std::nextafter(e, 1.0f))) {
    const LD want = log1pl(static_cast<LD>(e));
    const double err_l = static_cast<double>(fabsl(Ops::log1p_unit(e) - want) / want);
    if (err_l > worst_l) worst_l = err_l;
  }
  std::printf("fast log1p on [0, 1]: worst relative error %.3g\n", worst_l);
  EXPECT(worst_l <= 2e-7, "fast log1p relative error %.3g", worst_l);
  EXPECT(Ops::log1p_unit(0.0f) == 0.0f, "log1p(0) must be 0");
  EXPECT(std::isnan(Ops::log1p_unit(NAN)), "log1p(NaN) must be NaN");
}

int main() {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  static_assert(static_cast<int>(Elem::BCE) == 0 && static_cast<int>(Elem::HALF_SQUARE) == 1 &&
                static_cast<int>(Elem::LINEAR) == 2 && static_cast<int>(Elem::HINGE) == 3);
  static_assert(static_cast<int>(fusedgan::Reduction::NONE) == 0 &&
                static_cast<int>(fusedgan::Reduction::MEAN) == 1 &&
                static_cast<int>(fusedgan::Reduction::SUM) == 2);
  check_fast_exp_log1p();
  check_elems<float>("float", 2.5e-7, 2.5e-7);
  check_elems<double>("double", 1e-15, 1e-15);
  std::printf(g_failures ? "%d FAILURES\n" : "all passed\n", g_failures);
  return g_failures ? 1 : 0;
}
