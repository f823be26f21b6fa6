// The chunk kernel, included by kernel_default.cpp / kernel_avx2.cpp / kernel_avx512.cpp, each of
// which first defines CPU_CAPABILITY (as ATen does) and the instruction set it may use.
#pragma once

#include <cmath>

#ifndef CPU_CAPABILITY
#error "define CPU_CAPABILITY before including kernel_impl.h"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "loss_terms_cpu.h"
#include "vec_io.h"
#include "vec_ops.h"

#if defined(__GNUC__) || defined(__clang__)
#define FG_INLINE_LAMBDA __attribute__((always_inline))
#else
#define FG_INLINE_LAMBDA
#endif

namespace fusedgan::cpu::CPU_CAPABILITY {
namespace {


template <class A>
FG_INLINE double hsum(const Vectorized<A>& v) {
  __at_align__ A buf[Vectorized<A>::size()];
  v.store(buf);
  double s = 0.0;
  for (int64_t i = 0; i < Vectorized<A>::size(); ++i) s += static_cast<double>(buf[i]);
  return s;
}

// Compensated accumulation, lane by lane: sum + comp carries the rounding error of every
// addition, so a run of fp32 additions whose terms cancel (a WGAN mean over +-1e4 logits) keeps
// the digits that a plain fp32 sum loses.  Knuth's TwoSum: the error of t = a + b is exactly
// (a - (t - (t - a))) + (b - (t - a)), whatever the magnitudes, with no compare or branch.
// Used for the LINEAR element only.
template <class A>
FG_INLINE void compensated_add(Vectorized<A>& sum, Vectorized<A>& comp, const Vectorized<A>& v) {
  const Vectorized<A> t = sum + v;
  const Vectorized<A> bp = t - sum;
  const Vectorized<A> ap = t - bp;
  comp = comp + ((sum - ap) + (v - bp));
  sum = t;
}

// sum + comp of every lane, in double.  A lane whose sum is not finite keeps it as is: its
// compensation is NaN (inf - inf) and must not turn an infinite loss into NaN.
template <class A>
FG_INLINE double hsum_compensated(const Vectorized<A>& sum, const Vectorized<A>& comp) {
  __at_align__ A s[Vectorized<A>::size()];
  __at_align__ A c[Vectorized<A>::size()];
  sum.store(s);
  comp.store(c);
  double total = 0.0;
  for (int64_t i = 0; i < Vectorized<A>::size(); ++i) {
    const double si = static_cast<double>(s[i]);
    total += std::isfinite(si) ? si + static_cast<double>(c[i]) : si;
  }
  return total;
}

// K vectors of an acc-dtype operand (labels, weights: read in their own precision, never rounded
// to the logits' half dtype) for one step of cnt <= kStep elements.
template <int K, class V, class A>
FG_INLINE void load_acc(const A* p, int64_t cnt, V* out) {
  for (int k = 0; k < K; ++k) out[k] = V::loadu(p + static_cast<int64_t>(k) * V::size(), lanes<V>(cnt, k));
}

// Sum over [begin, end) of term `a` of w * value; writes grad and values.  Returned in double.
// With kStats also adds the unweighted sums of x, sigmoid(x), [x > 0] and [x < 0] into
// stats[0..3] (kStatCols).
template <class S, Elem E, bool kGrad, bool kStats>
double term_range(const TermArgs& a, int64_t begin, int64_t end, double* stats) {
  using IO = Io<S>;
  using A = acc_t<S>;
  using V = Vectorized<A>;
  using Ops = VecOps<A>;
  constexpr int K = IO::K;
  constexpr int64_t kStep = IO::kStep;
  static_assert(kRun % kStep == 0);

  const S* x = static_cast<const S*>(a.x);
  const A* lab = static_cast<const A*>(a.label);  // labels and weights: acc dtype
  const A* wt = static_cast<const A*>(a.weight);
  S* grad = static_cast<S*>(a.grad);
  S* vals = static_cast<S*>(a.values);
  const bool lab_full = a.label_mode == Operand::FULL;
  const bool has_w = a.weight_mode != Operand::ARG;
  const bool w_full = a.weight_mode == Operand::FULL;
  // Broadcast operands are read from memory here, so callers never need .item().
  const V t_b(a.label_mode == Operand::SCALAR ? lab[0] : static_cast<A>(a.label_value));
  const V w_b(a.weight_mode == Operand::SCALAR ? wt[0] : A(1));
  const V gscale(static_cast<A>(a.grad_scale));
  const V vscale(static_cast<A>(a.value_scale));
  const V zero(A(0));
  const V one(A(1));

  // One step at element j with cnt <= kStep valid lanes; adds w*value of valid lanes into acc
  // (and the statistics of x into sx, ss, spos, sneg).
  auto step = [&](int64_t j, int64_t cnt, V& acc, V& comp, V& sx, V& ss, V& spos, V& sneg,
                  bool tail) FG_INLINE_LAMBDA {
    V xv[K], tv[K], wv[K], gv[K], vv[K];
    IO::load(x + j, cnt, xv);
    if (lab_full) load_acc<K>(lab + j, cnt, tv);
    else for (int k = 0; k < K; ++k) tv[k] = t_b;
    if (w_full) load_acc<K>(wt + j, cnt, wv);
    else for (int k = 0; k < K; ++k) wv[k] = w_b;
    for (int k = 0; k < K; ++k) {
      V v, g;
      elem_eval<E, V, Ops>(xv[k], tv[k], v, g);
      if (has_w) {
        v = v * wv[k];
        g = g * wv[k];
      }
      gv[k] = g * gscale;
      vv[k] = v * vscale;
      V xs = xv[k], sig, pos, neg;
      if constexpr (kStats) {
        // sigmoid from e = exp(-|x|) as in the BCE element: 1/(1+e) or e/(1+e).  A NaN logit
        // counts as neither positive nor negative; an exact 0 as neither.
        const V e = Ops::exp_nonpos(-xs.abs());
        const V inv = one / (one + e);
        sig = V::blendv(e * inv, inv, xs >= zero);
        pos = V::blendv(zero, one, xs > zero);
        neg = V::blendv(zero, one, xs < zero);
      }
      if (tail) {
        // Padding lanes hold x = 0: drop them by selection (0 * inf would be NaN).
        const int64_t valid = lanes<V>(cnt, k);
        const V lane = V::arange(A(0), A(1));
        const V keep = lane < V(static_cast<A>(valid));
        v = V::blendv(zero, v, keep);
        if constexpr (kStats) {
          xs = V::blendv(zero, xs, keep);
          sig = V::blendv(zero, sig, keep);
          pos = V::blendv(zero, pos, keep);
          neg = V::blendv(zero, neg, keep);
        }
      }
      // Only LINEAR values have both signs; the others are >= 0, where a plain sum is already
      // accurate to a few ulp and the compensation would cost the compute-bound BCE ~30%.
      if constexpr (E == Elem::LINEAR) compensated_add(acc, comp, v);
      else acc = acc + v;
      if constexpr (kStats) {
        sx = sx + xs;
        ss = ss + sig;
        spos = spos + pos;
        sneg = sneg + neg;
      }
    }
    if constexpr (kGrad) {
      if (!kStats || grad) IO::store(grad + j, gv, cnt);  // the stats variant may have no grad
    }
    if (vals) IO::store(vals + j, vv, cnt);
  };

  double total = 0.0;
  double st[kStatCols] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t r0 = begin; r0 < end; r0 += kRun) {
    const int64_t r1 = std::min(r0 + kRun, end);
    V acc(A(0)), comp(A(0)), sx(A(0)), ss(A(0)), spos(A(0)), sneg(A(0));
    int64_t j = r0;
    for (; j + kStep <= r1; j += kStep) step(j, kStep, acc, comp, sx, ss, spos, sneg, false);
    if (j < r1) step(j, r1 - j, acc, comp, sx, ss, spos, sneg, true);
    total += hsum_compensated(acc, comp);
    if constexpr (kStats) {
      st[0] += hsum(sx);
      st[1] += hsum(ss);
      st[2] += hsum(spos);
      st[3] += hsum(sneg);
    }
  }
  if constexpr (kStats) {
    for (int k = 0; k < kStatCols; ++k) stats[k] = st[k];
  }
  return total;
}

// Without a gradient the kernel skips its work (for BCE: the division), not just the store.
// Statistics (loss_terms_stats) are rare: one instantiation per element function, with gradient.
template <class S, Elem E>
double term_range_g(const TermArgs& a, int64_t begin, int64_t end, double* stats) {
  if (stats) return term_range<S, E, true, true>(a, begin, end, stats);
  return a.grad ? term_range<S, E, true, false>(a, begin, end, nullptr)
                : term_range<S, E, false, false>(a, begin, end, nullptr);
}

template <class S>
double term_range_dispatch(const TermArgs& a, int64_t begin, int64_t end, double* stats) {
  switch (static_cast<Elem>(a.elem)) {
    case Elem::BCE: return term_range_g<S, Elem::BCE>(a, begin, end, stats);
    case Elem::HALF_SQUARE: return term_range_g<S, Elem::HALF_SQUARE>(a, begin, end, stats);
    case Elem::LINEAR: return term_range_g<S, Elem::LINEAR>(a, begin, end, stats);
    case Elem::ABS: return term_range_g<S, Elem::ABS>(a, begin, end, stats);
    case Elem::SOFTPLUS_NEG: return term_range_g<S, Elem::SOFTPLUS_NEG>(a, begin, end, stats);
    case Elem::SQ_RELU_ABOVE: return term_range_g<S, Elem::SQ_RELU_ABOVE>(a, begin, end, stats);
    case Elem::SQ_RELU_BELOW: return term_range_g<S, Elem::SQ_RELU_BELOW>(a, begin, end, stats);
    default: return term_range_g<S, Elem::HINGE>(a, begin, end, stats);
  }
}

template <class S>
void run_chunks_t(const ChunkTable& tab, int64_t c0, int64_t c1, double* partials) {
  // No chunk (every term empty): first_chunk[n_terms] == 0 and the walk below would run past
  // the table.  Otherwise c0 < first_chunk[n_terms] bounds it.
  if (c0 >= c1 || c1 > tab.first_chunk[tab.n_terms]) return;
  int i = 0;
  while (tab.first_chunk[i + 1] <= c0) ++i;
  for (int64_t c = c0; c < c1; ++c) {
    while (tab.first_chunk[i + 1] <= c) ++i;
    const TermArgs& a = tab.terms[i];
    const int64_t begin = (c - tab.first_chunk[i]) * kChunk;
    const int64_t end = std::min(begin + kChunk, a.n);
    partials[c] = term_range_dispatch<S>(a, begin, end, tab.stats ? tab.stats + kStatCols * c : nullptr);
  }
}

}  // namespace

void run_chunks(const ChunkTable& tab, int64_t c0, int64_t c1, double* partials) {
  switch (tab.dtype) {
    case Dtype::F32: return run_chunks_t<float>(tab, c0, c1, partials);
    case Dtype::F64: return run_chunks_t<double>(tab, c0, c1, partials);
    case Dtype::F16: return run_chunks_t<c10::Half>(tab, c0, c1, partials);
    case Dtype::BF16: return run_chunks_t<c10::BFloat16>(tab, c0, c1, partials);
  }
}

}  // namespace fusedgan::cpu::CPU_CAPABILITY
