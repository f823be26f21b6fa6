// What the three autograd Functions (csrc/autograd.cpp, csrc/relativistic.cpp, csrc/penalty.cpp)
// share: the names they use and SavedArgs.
//
// SavedArgs: the non-tensor arguments of an autograd Function (penalty.cpp, relativistic.cpp),
// saved in its context as two entries, the integers (bools as 0 / 1, each list after its length)
// and the floats: every saved_data entry costs a hash-map insertion per step, as gan_loss's
// Function found (csrc/autograd.cpp packs its own the same way).  Forward put()s them; backward
// constructs SavedArgs from the context and reads them back with get_*() in the same order.
#pragma once

#include <ATen/core/List.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "fusedgan/ops.h"

namespace fusedgan {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptList = OptTensorList;

class SavedArgs {
 public:
  SavedArgs() = default;
  explicit SavedArgs(torch::autograd::AutogradContext* ctx)
      : ints_(ctx->saved_data["ints"].toIntVector()), floats_(ctx->saved_data["floats"].toDoubleVector()) {}

  SavedArgs& put(int64_t v) {
    ints_.push_back(v);
    return *this;
  }
  SavedArgs& put(bool v) { return put(static_cast<int64_t>(v)); }
  SavedArgs& put(double v) {
    floats_.push_back(v);
    return *this;
  }
  SavedArgs& put(at::IntArrayRef v) {
    put(static_cast<int64_t>(v.size()));
    ints_.insert(ints_.end(), v.begin(), v.end());
    return *this;
  }
  SavedArgs& put(at::ArrayRef<double> v) {
    put(static_cast<int64_t>(v.size()));
    floats_.insert(floats_.end(), v.begin(), v.end());
    return *this;
  }
  SavedArgs& put(const std::vector<bool>& v) {
    put(static_cast<int64_t>(v.size()));
    ints_.insert(ints_.end(), v.begin(), v.end());
    return *this;
  }
  void save(torch::autograd::AutogradContext* ctx) {
    ctx->saved_data["ints"] = std::move(ints_);
    ctx->saved_data["floats"] = std::move(floats_);
  }

  int64_t get_int() { return ints_.at(next_int_++); }
  bool get_bool() { return get_int() != 0; }
  double get_float() { return floats_.at(next_float_++); }
  std::vector<int64_t> get_ints() { return take(ints_, next_int_); }
  std::vector<double> get_floats() { return take(floats_, next_float_); }
  c10::List<bool> get_bools() {
    c10::List<bool> out;
    for (int64_t v : get_ints()) out.push_back(v != 0);
    return out;
  }

 private:
  template <class T>
  std::vector<T> take(const std::vector<T>& from, size_t& next) {  // a list: its length, then it
    const size_t n = static_cast<size_t>(get_int());
    std::vector<T> out(from.begin() + next, from.begin() + next + n);
    next += n;
    return out;
  }

  std::vector<int64_t> ints_;
  std::vector<double> floats_;
  size_t next_int_ = 0, next_float_ = 0;
};

}  // namespace fusedgan
