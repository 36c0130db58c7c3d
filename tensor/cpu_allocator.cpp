// CPU caching allocator (see cpu_allocator.h).
#include "tensor/cpu_allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define CRFSEG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CRFSEG_ASAN 1
#endif
#endif

namespace crfseg {

namespace {

constexpr size_t kAlignment = 64;

bool caching_by_default() {
#ifdef CRFSEG_ASAN
  return false;
#else
  const char* env = std::getenv("CRFSEG_CPU_CACHE");
  return env != nullptr && env[0] == '1';
#endif
}

struct Cache {
  std::mutex lock;
  bool on = caching_by_default();
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  CpuMemoryStats stats;

  // Callers hold `lock`.
  void note_allocated(size_t bytes) {
    stats.allocated_bytes += static_cast<int64_t>(bytes);
    stats.peak_allocated_bytes = std::max(stats.peak_allocated_bytes, stats.allocated_bytes);
  }
  void release_all() {
    for (auto& [size, blocks] : free_blocks) {
      for (void* p : blocks) std::free(p);
    }
    free_blocks.clear();
    stats.cached_bytes = 0;
  }
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: Storages may be freed during static destruction
  return *c;
}

void* system_allocate(size_t bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment.
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  return std::aligned_alloc(kAlignment, rounded);
}

}  // namespace

size_t cpu_size_class(size_t bytes) {
  if (bytes < kCacheMinBytes) return bytes;
  const size_t step = std::bit_floor(bytes) / 8;  // 1/8 of the power of two at or below: < 12.5% slack
  return (bytes + step - 1) / step * step;
}

void* cpu_allocate(size_t bytes) {
  Cache& c = cache();
  // Every large block is allocated at its class size, cached or not, so any
  // freed large block can serve any later request of its class.
  const size_t size = cpu_size_class(bytes);
  {
    std::lock_guard<std::mutex> guard(c.lock);
    ++c.stats.allocations;
    if (bytes >= kCacheMinBytes && c.on) {
      auto it = c.free_blocks.find(size);
      if (it != c.free_blocks.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        c.stats.cached_bytes -= static_cast<int64_t>(size);
        ++c.stats.cache_hits;
        c.note_allocated(bytes);
        return p;
      }
    }
  }
  void* p = system_allocate(size);
  if (p == nullptr) {  // give the cached blocks back and try once more
    cpu_empty_cache();
    p = system_allocate(size);
  }
  CRFSEG_CHECK(p != nullptr, OutOfMemoryError, "Storage: failed to allocate ", bytes,
               " bytes on cpu; reduce the batch size");
  std::lock_guard<std::mutex> guard(c.lock);
  c.note_allocated(bytes);
  return p;
}

void cpu_free(void* data, size_t bytes) {
  if (data == nullptr) return;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> guard(c.lock);
    c.stats.allocated_bytes -= static_cast<int64_t>(bytes);
    const size_t size = cpu_size_class(bytes);
    // Bounded: the cache never holds more than the peak of live memory
    // (rounded up to its size class, the slack of class sizes), so a run
    // whose sizes keep changing (native-size evaluation) cannot grow without
    // limit; a training loop, which frees and reallocates the same sizes
    // every step, stays within it.
    const auto limit = static_cast<int64_t>(cpu_size_class(static_cast<size_t>(c.stats.peak_allocated_bytes)));
    if (bytes >= kCacheMinBytes && c.on && c.stats.cached_bytes + static_cast<int64_t>(size) <= limit) {
      c.free_blocks[size].push_back(data);
      c.stats.cached_bytes += static_cast<int64_t>(size);
      return;
    }
  }
  std::free(data);
}

CpuMemoryStats cpu_memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  return c.stats;
}

void reset_cpu_peak_memory() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  c.release_all();
}

bool set_cpu_caching(bool on) {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  const bool was = c.on;
  c.on = on;
  if (!on) c.release_all();
  return was;
}

bool cpu_caching() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  return c.on;
}

}  // namespace crfseg
