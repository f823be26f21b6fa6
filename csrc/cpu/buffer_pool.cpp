// See buffer_pool.h.
#include "buffer_pool.h"

#include <ATen/ops/empty.h>
#include <c10/core/Storage.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace fusedgan::cpu {
namespace {

constexpr int64_t kMinBytes = int64_t(1) << 20;    // smaller buffers come from the allocator
constexpr int64_t kMaxBytes = int64_t(1) << 30;    // the most the pool keeps alive
constexpr size_t kMaxEntries = 8;

bool pool_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FUSEDGAN_CPU_BUFFER_POOL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

struct Pool {
  std::mutex mu;
  std::vector<c10::Storage> entries;  // most recently used last
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: no ordering issue at exit
  return *p;
}

// The pool holds the only reference (strong and weak) to `s`: nobody can see its bytes.
bool only_pool_owns(const c10::Storage& s) {
  if (s.use_count() != 1) return false;
  // The weak count is 1 for all strong references together, plus one per weak reference: ours
  // (`w`) makes it 2 when no one else holds a weak one.
  const c10::weak_intrusive_ptr<c10::StorageImpl> w = s.getWeakStorageImpl();
  return w.weak_use_count() == 2;
}

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t nbytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
  if (!pool_enabled() || nbytes < kMinBytes || nbytes > kMaxBytes) return at::empty(sizes, options);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (size_t i = p.entries.size(); i-- > 0;) {
    c10::Storage& s = p.entries[i];
    if (static_cast<int64_t>(s.nbytes()) == nbytes && only_pool_owns(s)) {
      c10::Storage reuse = s;
      p.entries.erase(p.entries.begin() + static_cast<std::ptrdiff_t>(i));
      p.entries.push_back(reuse);
      return at::empty({0}, options).set_(reuse, 0, sizes);
    }
  }
  at::Tensor out = at::empty(sizes, options);
  // Keep it for later steps, evicting the least recently used free entries to stay in bounds.
  int64_t total = nbytes;
  for (const c10::Storage& s : p.entries) total += static_cast<int64_t>(s.nbytes());
  for (size_t i = 0; i < p.entries.size() && (total > kMaxBytes || p.entries.size() >= kMaxEntries);) {
    total -= static_cast<int64_t>(p.entries[i].nbytes());
    p.entries.erase(p.entries.begin() + static_cast<std::ptrdiff_t>(i));
  }
  p.entries.push_back(out.storage());
  return out;
}

int64_t buffer_pool_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  int64_t total = 0;
  for (const c10::Storage& s : p.entries) total += static_cast<int64_t>(s.nbytes());
  return total;
}

void empty_buffer_pool() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.entries.clear();
}

}  // namespace fusedgan::cpu
