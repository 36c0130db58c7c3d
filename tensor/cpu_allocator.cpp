// CPU caching allocator (see cpu_allocator.h).
#include "tensor/cpu_allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <list>
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
  return env == nullptr || env[0] != '0';
#endif
}

// Free large blocks are kept in the order they were freed (the LRU list),
// and indexed by size class; within a class the most recently freed is
// handed out first (its pages are the likeliest to be in cache).
struct Cache {
  using Lru = std::list<std::pair<size_t, void*>>;  // (class size, block), oldest first
  std::mutex lock;
  bool on = caching_by_default();
  Lru lru;
  std::unordered_map<size_t, std::vector<Lru::iterator>> by_class;  // oldest first
  int64_t live_large = 0;  // class bytes of live blocks >= kCacheMinBytes, cached or not
  CpuMemoryStats stats;

  // Callers hold `lock`.
  void note_allocated(size_t bytes) {
    stats.allocated_bytes += static_cast<int64_t>(bytes);
    stats.peak_allocated_bytes = std::max(stats.peak_allocated_bytes, stats.allocated_bytes);
  }
  void note_live_large(size_t size) {
    live_large += static_cast<int64_t>(size);
    stats.high_water_bytes = std::max(stats.high_water_bytes, live_large);
  }
  void* take(size_t size) {  // the newest cached block of this class, or nullptr
    auto it = by_class.find(size);
    if (it == by_class.end() || it->second.empty()) return nullptr;
    void* p = it->second.back()->second;
    lru.erase(it->second.back());
    it->second.pop_back();
    stats.cached_bytes -= static_cast<int64_t>(size);
    return p;
  }
  void put(size_t size, void* p) {
    by_class[size].push_back(lru.insert(lru.end(), {size, p}));
    stats.cached_bytes += static_cast<int64_t>(size);
  }
  // Unlinks the oldest cached block (the caller frees it outside the lock).
  void* evict_oldest() {
    auto [size, p] = lru.front();
    std::vector<Lru::iterator>& same = by_class[size];
    same.erase(same.begin());  // the class's oldest is the global oldest
    lru.pop_front();
    stats.cached_bytes -= static_cast<int64_t>(size);
    ++stats.evictions;
    return p;
  }
  std::vector<void*> unlink_all() {
    std::vector<void*> out;
    for (auto& [size, p] : lru) out.push_back(p);
    lru.clear();
    by_class.clear();
    stats.cached_bytes = 0;
    return out;
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
  const bool large = bytes >= kCacheMinBytes;
  const size_t size = cpu_size_class(bytes);
  std::vector<void*> evicted;
  {
    std::lock_guard<std::mutex> guard(c.lock);
    ++c.stats.allocations;
    if (large && c.on) {
      if (void* p = c.take(size)) {
        ++c.stats.cache_hits;
        c.note_allocated(bytes);
        c.note_live_large(size);
        return p;
      }
      // A miss maps a fresh block. Cached blocks go back to the system first,
      // oldest first, until live + cached + this block fits under the high
      // water mark of live memory (or nothing is cached): the process then
      // holds no more than it would without the cache at its busiest moment.
      const auto need = static_cast<int64_t>(size);
      while (c.stats.cached_bytes > 0 && c.live_large + c.stats.cached_bytes + need > c.stats.high_water_bytes)
        evicted.push_back(c.evict_oldest());
    }
  }
  for (void* p : evicted) std::free(p);
  void* p = system_allocate(size);
  if (p == nullptr) {  // give the cached blocks back and try once more
    cpu_empty_cache();
    p = system_allocate(size);
  }
  CRFSEG_CHECK(p != nullptr, OutOfMemoryError, "Storage: failed to allocate ", bytes,
               " bytes on cpu; reduce the batch size");
  std::lock_guard<std::mutex> guard(c.lock);
  c.note_allocated(bytes);
  if (large) c.note_live_large(size);
  return p;
}

void cpu_free(void* data, size_t bytes) {
  if (data == nullptr) return;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> guard(c.lock);
    c.stats.allocated_bytes -= static_cast<int64_t>(bytes);
    if (bytes >= kCacheMinBytes) {
      const size_t size = cpu_size_class(bytes);
      c.live_large -= static_cast<int64_t>(size);
      // Caching moves the block from live to cached: live + cached is
      // unchanged, so the bound of cpu_allocate still holds.
      if (c.on) {
        c.put(size, data);
        return;
      }
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
  c.stats.high_water_bytes = c.live_large + c.stats.cached_bytes;  // what is held now
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::vector<void*> blocks;
  {
    std::lock_guard<std::mutex> guard(c.lock);
    blocks = c.unlink_all();
  }
  for (void* p : blocks) std::free(p);
}

bool set_cpu_caching(bool on) {
  Cache& c = cache();
  std::vector<void*> blocks;
  bool was = false;
  {
    std::lock_guard<std::mutex> guard(c.lock);
    was = c.on;
    c.on = on;
    if (!on) blocks = c.unlink_all();
  }
  for (void* p : blocks) std::free(p);
  return was;
}

bool cpu_caching() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  return c.on;
}

}  // namespace crfseg
