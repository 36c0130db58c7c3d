// The CPU caching allocator (tensor/cpu_allocator.h): size classes, reuse of
// freed large blocks, the bound on the cache, switching it off, statistics,
// and that tensors allocate through it.
#include <cstring>

#include "tensor/cpu_allocator.h"
#include "tests/support/helpers.h"

using namespace crfseg;

namespace {

// Turns caching on for a test and restores the previous setting (ASan
// builds default to off).
struct CachingOn {
  bool was = set_cpu_caching(true);
  ~CachingOn() { set_cpu_caching(was); }
};

}  // namespace

TEST_CASE("cpu allocator: size classes have under 12.5% slack; small sizes are exact") {
  CHECK(cpu_size_class(1000) == 1000);
  CHECK(cpu_size_class(kCacheMinBytes - 1) == kCacheMinBytes - 1);
  CHECK(cpu_size_class(kCacheMinBytes) == kCacheMinBytes);
  CHECK(cpu_size_class(kCacheMinBytes + 1) == kCacheMinBytes + kCacheMinBytes / 8);
  for (size_t b = kCacheMinBytes; b < (size_t{1} << 34); b = b * 9 / 7 + 13) {
    CAPTURE(b);
    const size_t c = cpu_size_class(b);
    CHECK(c >= b);
    CHECK(static_cast<double>(c - b) < 0.125 * static_cast<double>(b));
    CHECK(cpu_size_class(c) == c);  // a class is its own class
  }
}

TEST_CASE("cpu allocator: a freed large block serves the next request of its class") {
  CachingOn on;
  cpu_empty_cache();
  const size_t n = 3 * kCacheMinBytes + 100;
  void* a = cpu_allocate(n);
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  std::memset(a, 1, n);
  const CpuMemoryStats before = cpu_memory_stats();
  cpu_free(a, n);
  CHECK(cpu_memory_stats().cached_bytes == static_cast<int64_t>(cpu_size_class(n)));
  CHECK(cpu_memory_stats().allocated_bytes == before.allocated_bytes - static_cast<int64_t>(n));
  // Another size of the same class gets the same block, and all of it is usable.
  const size_t m = cpu_size_class(n);
  void* b = cpu_allocate(m);
  CHECK(b == a);
  std::memset(b, 2, m);
  CHECK(cpu_memory_stats().cache_hits == before.cache_hits + 1);
  CHECK(cpu_memory_stats().cached_bytes == 0);
  cpu_free(b, m);
  // A small block is never cached.
  void* s = cpu_allocate(4096);
  cpu_free(s, 4096);
  CHECK(cpu_memory_stats().cached_bytes == static_cast<int64_t>(m));
  cpu_empty_cache();
  CHECK(cpu_memory_stats().cached_bytes == 0);
}

TEST_CASE("cpu allocator: the cache stays within the peak of live memory; off means nothing is kept") {
  CachingOn on;
  cpu_empty_cache();
  reset_cpu_peak_memory();
  std::vector<std::pair<void*, size_t>> blocks;
  for (size_t k = 1; k <= 12; ++k) blocks.emplace_back(cpu_allocate(k * kCacheMinBytes), k * kCacheMinBytes);
  for (auto [p, n] : blocks) cpu_free(p, n);
  // Live then: 1 + ... + 12 MiB = 78 MiB at the peak; each freed block fits.
  CpuMemoryStats s = cpu_memory_stats();
  CHECK(s.cached_bytes > 0);
  CHECK(s.cached_bytes <= static_cast<int64_t>(cpu_size_class(static_cast<size_t>(s.peak_allocated_bytes))));
  // Sizes that keep changing: the cache never passes the peak.
  for (size_t k = 13; k <= 40; ++k) {
    void* p = cpu_allocate(k * kCacheMinBytes);
    cpu_free(p, k * kCacheMinBytes);
    s = cpu_memory_stats();
    CHECK(s.cached_bytes <= static_cast<int64_t>(cpu_size_class(static_cast<size_t>(s.peak_allocated_bytes))));
  }
  // Switching off empties it; a block allocated while off is not cached when freed.
  set_cpu_caching(false);
  CHECK(!cpu_caching());
  CHECK(cpu_memory_stats().cached_bytes == 0);
  void* p = cpu_allocate(5 * kCacheMinBytes);
  cpu_free(p, 5 * kCacheMinBytes);
  CHECK(cpu_memory_stats().cached_bytes == 0);
  // A block allocated while off and freed while on is class-sized, so reusing it is safe.
  void* q = cpu_allocate(5 * kCacheMinBytes + 1);
  set_cpu_caching(true);
  cpu_free(q, 5 * kCacheMinBytes + 1);
  const size_t cls = cpu_size_class(5 * kCacheMinBytes + 1);
  void* r = cpu_allocate(cls);
  CHECK(r == q);
  std::memset(r, 3, cls);
  cpu_free(r, cls);
  cpu_empty_cache();
}

TEST_CASE("cpu allocator: tensors allocate through it") {
  const int64_t before = cpu_memory_stats().allocated_bytes;
  {
    const Tensor t = zeros({1024, 1024});
    CHECK(cpu_memory_stats().allocated_bytes == before + 4 * 1024 * 1024);
  }
  CHECK(cpu_memory_stats().allocated_bytes == before);
}
