// CPU caching allocator (see cpu_allocator.h).
#include "tensor/cpu_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <unordered_map>

#include "tensor/block_allocator.h"
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

#ifdef CRFSEG_ASAN
constexpr bool kUseBlocks = false;
#else
constexpr bool kUseBlocks = true;
#endif

std::atomic<bool> caching_on{[] {
  const char* env = std::getenv("CRFSEG_CPU_CACHE");
  return env == nullptr || env[0] != '0';
}()};

// Requested bytes of every live block, and calls; the large-block numbers
// come from the BlockAllocator's own statistics.
std::atomic<int64_t> allocated{0}, peak_allocated{0}, allocations{0};

void note_allocated(int64_t bytes) {
  const int64_t now = allocated.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  int64_t peak = peak_allocated.load(std::memory_order_relaxed);
  while (now > peak && !peak_allocated.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

std::string available_memory() {
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages < 0 || page < 0) return "available memory unknown";
  return std::to_string(static_cast<int64_t>(pages) * page) + " bytes available";
}

// Read on first use (a function-local static: tensors allocated during
// other files' static initialisation see the same setting).
bool huge_pages_on() {
  static const bool on = [] {
    const char* env = std::getenv("CRFSEG_CPU_HUGE_PAGES");
    return env == nullptr || env[0] != '0';
  }();
  return on;
}

// One segment: an anonymous mapping of `bytes` (a multiple of 2 MiB, see
// BlockAllocator::segment_size). With huge pages on it starts on a 2 MiB
// boundary (map 2 MiB more, unmap the slack at both ends) and is advised
// as transparent huge pages: where the kernel's THP mode is "madvise"
// (Debian's default) a 2 MiB page then backs what took 512 4 KiB pages,
// and the convolutions' and GEMMs' walks over activations tens of MiB
// large stop missing the TLB (U-Net step, batch 4 at 256^2: -4 to -6%;
// the kernel zeroes 2 MiB at a time on first touch, a one-time cost:
// bench/NOTES.md change 22). madvise failing (no THP) changes nothing.
void* map_segment(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t slack = huge_pages_on() ? kHuge : 0;
  void* raw = mmap(nullptr, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  if (slack == 0) return raw;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  const uintptr_t end = aligned + bytes, mapped_end = start + bytes + slack;
  if (aligned > start) munmap(raw, aligned - start);
  if (mapped_end > end) munmap(reinterpret_cast<void*>(end), mapped_end - end);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

// The large-block allocator; its segments are anonymous mappings (page
// aligned, so every block, at a multiple of 512 bytes into its segment, is
// 64-byte aligned). munmap needs each segment's length: the backend is
// only called with the allocator's lock held, which guards `lengths` too.
BlockAllocator& blocks() {
  static auto* lengths = new std::unordered_map<void*, size_t>;
  static auto* a = new BlockAllocator({
      .allocate = [](size_t bytes) -> void* {
        void* p = map_segment(bytes);
        if (p != nullptr) lengths->emplace(p, bytes);
        return p;
      },
      .release =
          [](void* p) {
            auto it = lengths->find(p);
            munmap(p, it->second);
            lengths->erase(it);
          },
      .synchronize = [] {},
      .describe = available_memory,
      .name = "cpu",
  });
  return *a;  // never destroyed: Storages may be freed during static destruction
}

void* aligned_malloc(size_t bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment.
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {  // give the cache's free segments back and try once more, as for large blocks
    cpu_empty_cache();
    p = std::aligned_alloc(kAlignment, rounded);
  }
  CRFSEG_CHECK(p != nullptr, OutOfMemoryError, "Storage: failed to allocate ", bytes, " bytes on cpu (",
               available_memory(), "); reduce the batch size");
  return p;
}

}  // namespace

void* cpu_allocate(size_t bytes) {
  void* p = kUseBlocks && bytes >= kCacheMinBytes ? blocks().malloc(bytes, 0) : aligned_malloc(bytes);
  allocations.fetch_add(1, std::memory_order_relaxed);
  note_allocated(static_cast<int64_t>(bytes));
  return p;
}

void cpu_free(void* data, size_t bytes) {
  if (data == nullptr) return;
  allocated.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  if (kUseBlocks && bytes >= kCacheMinBytes) {
    blocks().free(data);
    if (!caching_on.load(std::memory_order_relaxed)) blocks().empty_cache();
  } else {
    std::free(data);
  }
}

CpuMemoryStats cpu_memory_stats() {
  CpuMemoryStats s;
  s.allocated_bytes = allocated.load();
  s.peak_allocated_bytes = peak_allocated.load();
  s.allocations = allocations.load();
  if (kUseBlocks) {
    const DeviceMemoryStats b = blocks().stats();
    s.reserved_bytes = b.reserved_bytes;
    s.peak_reserved_bytes = b.peak_reserved_bytes;
    s.cached_bytes = b.reserved_bytes - b.allocated_bytes;
    s.cache_hits = b.cache_hits;
  }
  return s;
}

void reset_cpu_peak_memory() {
  peak_allocated.store(allocated.load());
  if (kUseBlocks) blocks().reset_peak();
}

void cpu_empty_cache() {
  if (kUseBlocks) blocks().empty_cache();
}

bool set_cpu_caching(bool on) {
  const bool was = caching_on.exchange(on);
  if (!on) cpu_empty_cache();
  return was;
}

bool cpu_caching() { return kUseBlocks && caching_on.load(); }

bool cpu_huge_pages() { return kUseBlocks && huge_pages_on(); }

std::string cpu_memory_summary() {
  return kUseBlocks ? blocks().summary() : "memory on cpu: large blocks from malloc (AddressSanitizer build)\n";
}

}  // namespace crfseg
