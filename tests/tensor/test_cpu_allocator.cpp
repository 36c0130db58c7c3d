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

TEST_CASE("cpu allocator: a miss evicts the oldest cached blocks until live + cached fits the high water mark") {
  CachingOn on;
  cpu_empty_cache();
  reset_cpu_peak_memory();  // high water = what this process holds in large blocks now
  const int64_t base = cpu_memory_stats().high_water_bytes;
  const size_t MiB = kCacheMinBytes;
  void* a = cpu_allocate(2 * MiB);
  void* b = cpu_allocate(3 * MiB);
  void* c = cpu_allocate(4 * MiB);
  CHECK(cpu_memory_stats().high_water_bytes == base + static_cast<int64_t>(9 * MiB));
  cpu_free(a, 2 * MiB);  // oldest
  cpu_free(b, 3 * MiB);
  cpu_free(c, 4 * MiB);
  CpuMemoryStats s = cpu_memory_stats();
  CHECK(s.cached_bytes == static_cast<int64_t>(9 * MiB));
  // 5 MiB: 9 cached + 5 > 9, so a goes (7 + 5 > 9), then b (4 + 5 = 9): c stays.
  void* d = cpu_allocate(5 * MiB);
  CHECK(cpu_memory_stats().evictions == s.evictions + 2);
  CHECK(cpu_memory_stats().cached_bytes == static_cast<int64_t>(4 * MiB));
  CHECK(cpu_memory_stats().high_water_bytes == base + static_cast<int64_t>(9 * MiB));
  void* e = cpu_allocate(4 * MiB);
  CHECK(e == c);  // served from the cache
  // Nothing left to evict: the high water mark rises instead.
  void* f = cpu_allocate(MiB);
  CHECK(cpu_memory_stats().high_water_bytes == base + static_cast<int64_t>(10 * MiB));
  cpu_free(d, 5 * MiB);
  cpu_free(e, 4 * MiB);
  cpu_free(f, MiB);
  cpu_empty_cache();
}

TEST_CASE("cpu allocator: under random traffic live + cached never passes the high water mark of live") {
  CachingOn on;
  cpu_empty_cache();
  reset_cpu_peak_memory();
  const int64_t base = cpu_memory_stats().high_water_bytes;  // held by others (none in this test binary)
  Generator gen(42);
  std::vector<std::pair<void*, size_t>> live;
  int64_t live_class = 0, most_live = 0;
  const int64_t hits_before = cpu_memory_stats().cache_hits;
  for (int step = 0; step < 3000; ++step) {
    const bool alloc = live.empty() || (live.size() < 24 && gen.uniform_f64() < 0.55);
    if (alloc) {
      // Steady sizes most of the time (a training loop), sometimes new ones.
      const size_t n = gen.uniform_f64() < 0.8 ? (1 + gen.next_u32() % 6) * kCacheMinBytes
                                               : kCacheMinBytes + gen.next_u32() % (24 * kCacheMinBytes);
      void* p = cpu_allocate(n);
      REQUIRE(p != nullptr);
      static_cast<volatile char*>(p)[n - 1] = 1;
      live.emplace_back(p, n);
      live_class += static_cast<int64_t>(cpu_size_class(n));
    } else {
      const size_t k = gen.next_u32() % live.size();
      cpu_free(live[k].first, live[k].second);
      live_class -= static_cast<int64_t>(cpu_size_class(live[k].second));
      live.erase(live.begin() + static_cast<int64_t>(k));
    }
    most_live = std::max(most_live, live_class);
    const CpuMemoryStats s = cpu_memory_stats();
    CAPTURE(step);
    REQUIRE(s.high_water_bytes == base + most_live);
    REQUIRE(base + live_class + s.cached_bytes <= s.high_water_bytes);
  }
  CHECK(cpu_memory_stats().cache_hits - hits_before > 500);
  for (auto [p, n] : live) cpu_free(p, n);
  cpu_empty_cache();
}

TEST_CASE("cpu allocator: off means nothing is kept") {
  CachingOn on;
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
