// The CPU caching allocator (tensor/cpu_allocator.h): reuse of freed large
// blocks (smaller requests too), splitting and merging in real mappings,
// random traffic, switching it off, statistics, and that tensors allocate
// through it. The bookkeeping itself is tested against a fake device in
// test_block_allocator.cpp.
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

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

// Whether this build caches at all (AddressSanitizer builds do not).
bool caching_build() {
  CachingOn on;
  return cpu_caching();
}

constexpr size_t MiB = size_t{1} << 20;

}  // namespace

TEST_CASE("cpu allocator: a freed large block serves a later request of its size or smaller") {
  if (!caching_build()) {
    MESSAGE("skipped: AddressSanitizer build, large blocks come from malloc");
    return;
  }
  CachingOn on;
  cpu_empty_cache();
  const CpuMemoryStats start = cpu_memory_stats();
  const size_t n = 3 * MiB + 100;
  void* a = cpu_allocate(n);
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  std::memset(a, 1, n);
  CHECK(cpu_memory_stats().reserved_bytes == start.reserved_bytes + static_cast<int64_t>(4 * MiB));  // 2 MiB segments
  CHECK(cpu_memory_stats().allocated_bytes == start.allocated_bytes + static_cast<int64_t>(n));
  cpu_free(a, n);
  CHECK(cpu_memory_stats().cached_bytes == start.cached_bytes + static_cast<int64_t>(4 * MiB));
  CHECK(cpu_memory_stats().allocated_bytes == start.allocated_bytes);
  // A smaller request takes the same memory; nothing new is mapped.
  void* b = cpu_allocate(2 * MiB);
  CHECK(b == a);
  std::memset(b, 2, 2 * MiB);
  CHECK(cpu_memory_stats().cache_hits == start.cache_hits + 1);
  CHECK(cpu_memory_stats().reserved_bytes == start.reserved_bytes + static_cast<int64_t>(4 * MiB));
  cpu_free(b, 2 * MiB);
  // A small block never goes through the cache.
  void* s = cpu_allocate(4096);
  cpu_free(s, 4096);
  CHECK(cpu_memory_stats().cache_hits == start.cache_hits + 1);
  cpu_empty_cache();
  CHECK(cpu_memory_stats().reserved_bytes == start.reserved_bytes);
}

namespace {
// The "THPeligible:" field of the /proc/self/smaps entry holding address
// p: 1 or 0, or -1 where the kernel does not report it.
int thp_eligible(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long long lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
    } else if (inside && line.rfind("THPeligible:", 0) == 0) {
      return std::stoi(line.substr(12));
    }
  }
  return -1;
}
}  // namespace

TEST_CASE("cpu allocator: segments start on 2 MiB boundaries and are advised as huge pages") {
  if (!cpu_huge_pages()) {
    MESSAGE("skipped: huge pages off (AddressSanitizer build, or CRFSEG_CPU_HUGE_PAGES=0)");
    return;
  }
  CachingOn on;
  cpu_empty_cache();
  // Each request maps a segment of its own (the cache is empty, and each
  // is larger than what the one before left free).
  const size_t sizes[] = {3 * MiB + 100, 8 * MiB, 17 * MiB + 4096};
  void* blocks[3];
  for (int i = 0; i < 3; ++i) {
    blocks[i] = cpu_allocate(sizes[i]);
    REQUIRE(blocks[i] != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(blocks[i]) % (2 * MiB) == 0);
    std::memset(blocks[i], i + 1, sizes[i]);  // the whole mapping is ours to write
  }
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  std::getline(mode, modes);
  // A process may also have THP switched off for itself (prctl).
  std::ifstream status("/proc/self/status");
  bool process_off = false;
  for (std::string line; std::getline(status, line);) process_off |= line == "THP_enabled:\t0";
  const int eligible = thp_eligible(blocks[1]);
  if (eligible < 0 || modes.find("[never]") != std::string::npos || modes.empty() || process_off) {
    MESSAGE("THP eligibility not checked: the kernel reports no THPeligible field or has THP off ('", modes,
            "'; off for this process: ", process_off, ")");
  } else {
    CHECK(eligible == 1);
  }
  for (int i = 0; i < 3; ++i) {
    CHECK(static_cast<unsigned char*>(blocks[i])[sizes[i] - 1] == i + 1);
    cpu_free(blocks[i], sizes[i]);
  }
  cpu_empty_cache();
}

TEST_CASE("cpu allocator: blocks split from one segment merge back when freed") {
  if (!caching_build()) {
    MESSAGE("skipped: AddressSanitizer build, large blocks come from malloc");
    return;
  }
  CachingOn on;
  cpu_empty_cache();
  const int64_t reserved = cpu_memory_stats().reserved_bytes;
  void* big = cpu_allocate(16 * MiB);
  cpu_free(big, 16 * MiB);
  void* x = cpu_allocate(6 * MiB);
  void* y = cpu_allocate(6 * MiB);
  CHECK(x == big);
  CHECK(static_cast<char*>(y) == static_cast<char*>(big) + 6 * MiB);
  std::memset(x, 1, 6 * MiB);
  std::memset(y, 2, 6 * MiB);
  CHECK(static_cast<unsigned char*>(x)[6 * MiB - 1] == 1);  // y did not overlap x
  cpu_free(x, 6 * MiB);
  cpu_free(y, 6 * MiB);
  void* z = cpu_allocate(15 * MiB);  // fits only in the merged segment
  CHECK(z == big);
  CHECK(cpu_memory_stats().reserved_bytes == reserved + static_cast<int64_t>(16 * MiB));
  cpu_free(z, 15 * MiB);
  cpu_empty_cache();
}

TEST_CASE("cpu allocator: random traffic keeps blocks disjoint and the books balanced") {
  CachingOn on;
  cpu_empty_cache();
  const CpuMemoryStats start = cpu_memory_stats();
  Generator gen(42);
  struct Live {
    unsigned char* p;
    size_t n;
    unsigned char tag;
  };
  std::vector<Live> live;
  for (int step = 0; step < 2000; ++step) {
    CAPTURE(step);
    if (live.empty() || (live.size() < 20 && gen.uniform_f64() < 0.55)) {
      const size_t n = gen.uniform_f64() < 0.7 ? (1 + gen.next_u32() % 6) * MiB : MiB + gen.next_u32() % (24 * MiB);
      auto* p = static_cast<unsigned char*>(cpu_allocate(n));
      REQUIRE(reinterpret_cast<uintptr_t>(p) % 64 == 0);
      const auto tag = static_cast<unsigned char>(1 + step % 250);
      // First, middle and last byte: enough to catch overlapping blocks cheaply.
      p[0] = p[n / 2] = p[n - 1] = tag;
      live.push_back({p, n, tag});
    } else {
      const size_t k = gen.next_u32() % live.size();
      const Live& l = live[k];
      REQUIRE(l.p[0] == l.tag);
      REQUIRE(l.p[l.n / 2] == l.tag);
      REQUIRE(l.p[l.n - 1] == l.tag);
      cpu_free(l.p, l.n);
      live.erase(live.begin() + static_cast<int64_t>(k));
    }
    const CpuMemoryStats s = cpu_memory_stats();
    REQUIRE(s.cached_bytes >= 0);
    REQUIRE(s.reserved_bytes <= s.peak_reserved_bytes);
  }
  for (const Live& l : live) cpu_free(l.p, l.n);
  const CpuMemoryStats end = cpu_memory_stats();
  CHECK(end.allocated_bytes == start.allocated_bytes);
  if (caching_build()) CHECK(end.cache_hits - start.cache_hits > 300);
  cpu_empty_cache();
  CHECK(cpu_memory_stats().reserved_bytes == start.reserved_bytes);
}

TEST_CASE("cpu allocator: off releases every free segment at once") {
  CachingOn on;
  cpu_empty_cache();
  const int64_t reserved = cpu_memory_stats().reserved_bytes;
  set_cpu_caching(false);
  CHECK(!cpu_caching());
  void* p = cpu_allocate(5 * MiB);
  std::memset(p, 0, 5 * MiB);
  cpu_free(p, 5 * MiB);
  CHECK(cpu_memory_stats().cached_bytes == 0);
  CHECK(cpu_memory_stats().reserved_bytes == reserved);
  // Switching on again caches; switching off empties the cache.
  set_cpu_caching(true);
  void* q = cpu_allocate(5 * MiB);
  cpu_free(q, 5 * MiB);
  if (caching_build()) CHECK(cpu_memory_stats().cached_bytes > 0);
  set_cpu_caching(false);
  CHECK(cpu_memory_stats().cached_bytes == 0);
  CHECK(cpu_memory_stats().reserved_bytes == reserved);
  CHECK(cpu_memory_summary().find("cpu") != std::string::npos);
}

TEST_CASE("cpu allocator: tensors allocate through it") {
  const int64_t before = cpu_memory_stats().allocated_bytes;
  {
    const Tensor t = zeros({1024, 1024});
    CHECK(cpu_memory_stats().allocated_bytes == before + 4 * 1024 * 1024);
  }
  CHECK(cpu_memory_stats().allocated_bytes == before);
}
