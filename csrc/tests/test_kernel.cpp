// Tests of the CPU operator (csrc/cpu/loss_terms_cpu.cpp) at the SIMD level chosen by
// FUSEDGAN_CPU_CAPABILITY (ctest runs it once per level): per-element values and gradients
// against long double, the 2^24-element fp32 mean against double, and bitwise-identical results
// for 1 and 2 threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "fusedgan/math.h"
#include "fusedgan/ops.h"

using LD = long double;
#include "expect.h"

using Out = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>;

static Out run(std::vector<at::Tensor> xs, int elem, double label, int64_t reduction, bool grad) {
  const size_t n = xs.size();
  c10::List<std::optional<at::Tensor>> none;
  c10::List<bool> ng;
  std::vector<int64_t> elems(n, elem);
  std::vector<double> labels(n, label), coefs(n, 1.0);
  for (size_t i = 0; i < n; ++i) {
    none.push_back(std::nullopt);
    ng.push_back(grad);
  }
  return fusedgan::cpu::loss_terms_cpu(xs, none, none, elems, labels, coefs, reduction, ng);
}

static LD sp(LD z) { return (z > 0 ? z : 0) + log1pl(expl(-fabsl(z))); }
static LD sig(LD z) { return 1 / (1 + expl(-z)); }

// BCE through the vector kernel (all lanes, tails included) against long double.
static void check_bce_accuracy() {
  std::vector<float> xs = {0.0f, -0.0f, 88.0f, -88.0f, 1e4f, -1e4f, 1e-45f, -1e-45f, 103.0f, -103.0f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN()};
  for (int i = 0; i <= 100000; ++i) {
    const float a = static_cast<float>(std::pow(10.0, -8.0 + 12.0 * i / 100000.0));
    xs.push_back(a);
    xs.push_back(-a);
  }
  at::Tensor x = at::from_blob(xs.data(), {static_cast<int64_t>(xs.size())}, at::kFloat).clone();
  for (double t : {0.0, 1.0}) {
    auto [total, terms, grads, values] = run({x}, 0, t, 0 /*NONE*/, true);
    const float* g = grads[0].const_data_ptr<float>();
    const float* v = values[0].const_data_ptr<float>();
    double worst_v = 0, worst_g = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const LD xl = xs[i];
      const LD rv = t * sp(-xl) + (1 - t) * sp(xl);
      const LD rg = (1 - t) * sig(xl) - t * sig(-xl);
      if (std::isnan(rv)) {
        EXPECT(std::isnan(v[i]), "value at x=%g t=%g: got %g, want NaN", xs[i], t, v[i]);
      } else if (rv != 0 && v[i] != rv) {
        const double ev = static_cast<double>(fabsl(v[i] - rv) / fabsl(rv));
        if (fabsl(rv) >= std::numeric_limits<float>::min()) worst_v = std::max(worst_v, ev);
        EXPECT(ev <= 2.5e-7 || fabsl(v[i] - rv) < 1.5e-45, "value at x=%.9g t=%g: got %.9g want %.9Lg", xs[i], t, v[i], rv);
      }
      if (std::isnan(xs[i])) {
        EXPECT(std::isnan(g[i]), "grad at NaN must be NaN");
      } else if (rg != 0 && g[i] != rg) {
        const double eg = static_cast<double>(fabsl(g[i] - rg) / fabsl(rg));
        if (fabsl(rg) >= std::numeric_limits<float>::min()) worst_g = std::max(worst_g, eg);
        EXPECT(eg <= 2.5e-7 || fabsl(g[i] - rg) < 1.5e-45, "grad at x=%.9g t=%g: got %.9g want %.9Lg", xs[i], t, g[i], rg);
      }
    }
    std::printf("kernel BCE t=%g: worst relative error value %.3g, grad %.3g\n", t, worst_v, worst_g);
  }
}

static void check_mean_accuracy() {
  at::manual_seed(0);
  at::Tensor x = at::randn({1 << 24});
  auto [total, terms, grads, values] = run({x}, 0, 1.0, 1 /*MEAN*/, false);
  const double ref = at::softplus(-x.to(at::kDouble)).mean().item<double>();
  const double rel = std::fabs(total.item<float>() - ref) / std::fabs(ref);
  std::printf("2^24 fp32 mean: relative error %.3g vs double\n", rel);
  EXPECT(rel <= 1e-6, "2^24 mean relative error %.3g", rel);
}

static void check_threads() {
  at::manual_seed(1);
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    std::vector<at::Tensor> xs = {at::randn({300007}).to(dt), at::randn({70001}).to(dt) * 5};
    for (int elem = 0; elem < fusedgan::kNumElems; ++elem) {
      at::set_num_threads(1);
      Out a = run(xs, elem, 1.0, 1, true);
      at::set_num_threads(2);
      Out b = run(xs, elem, 1.0, 1, true);
      const bool same = at::equal(std::get<1>(a), std::get<1>(b)) && at::equal(std::get<0>(a), std::get<0>(b)) &&
                        at::equal(std::get<2>(a)[0], std::get<2>(b)[0]) && at::equal(std::get<2>(a)[1], std::get<2>(b)[1]);
      EXPECT(same, "dtype %s elem %d: 1 and 2 threads differ", c10::toString(dt), elem);
    }
  }
}

int main() {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  std::printf("cpu capability: %s\n", fusedgan::cpu::cpu_capability_name());
  check_bce_accuracy();
  check_threads();
  check_mean_accuracy();
  std::printf(g_failures ? "%d FAILURES\n" : "all passed\n", g_failures);
  return g_failures ? 1 : 0;
}
