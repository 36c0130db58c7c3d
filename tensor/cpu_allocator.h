// The CPU allocator behind every Storage: 64-byte aligned host memory, with a
// cache of large freed blocks.
//
// Why a cache: a training step allocates and frees the same activation
// sizes every step, many of them tens of MiB. glibc serves blocks above its
// mmap threshold (at most 32 MiB) with a fresh mmap each time, so every step
// pays page faults and the kernel's zeroing of every page touched, then
// munmap. On a virtual machine a page fault costs far more than on bare
// metal: on the development VM a U-Net (base 64, 256^2, batch 4) training
// step took 14.8 s without the cache and 5.7 s with it (bench/NOTES.md).
//
// How: requests of at least kCacheMinBytes go to a BlockAllocator
// (tensor/block_allocator.h, the same best-fit allocator with splitting and
// merging that caches CUDA memory) whose segments are anonymous mmaps. A
// freed block can thus serve any smaller request, or merge with its free
// neighbours into a larger one: a cache of exact sizes cannot reuse the
// stem's activation for two smaller ones, and on a network's cyclic
// pattern of sizes it thrashes. Smaller requests go to aligned_alloc/free
// (glibc already reuses small blocks). When the system refuses memory, the
// entirely free segments are released and the allocation retried once
// before OutOfMemoryError.
//
// Segments start on 2 MiB boundaries and are advised as transparent huge
// pages (MADV_HUGEPAGE; fewer TLB misses on large activations);
// CRFSEG_CPU_HUGE_PAGES=0 in the environment maps them plainly.
//
// On by default; CRFSEG_CPU_CACHE=0 in the environment (or
// set_cpu_caching(false)) releases every free segment as soon as it is
// free, so resident memory follows live memory. A build with
// AddressSanitizer sends large blocks to malloc too, whatever the variable
// says (a reused block would hide use-after-free bugs from it).
// Thread-safe (data-loading threads allocate too).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace crfseg {

struct CpuMemoryStats {
  int64_t allocated_bytes = 0;       // held by live Storages (requested sizes, all blocks)
  int64_t peak_allocated_bytes = 0;  // the most allocated_bytes has been
  int64_t reserved_bytes = 0;        // large-block segments mapped from the system
  int64_t peak_reserved_bytes = 0;
  int64_t cached_bytes = 0;          // reserved but not handed out
  int64_t allocations = 0;           // calls of cpu_allocate
  int64_t cache_hits = 0;            // large allocations served without mapping memory
};

// Requests this large or larger go through the cache (smaller ones to
// malloc). Not 1 MiB, as until session 41: kernels' scratch of 64 KiB to
// 1 MiB, allocated and freed once per call, made glibc trim the heap's top
// and fault it in again on the next call. A Winograd weight gradient of 64
// channels at 24^2 (374 KB of scratch) took 2.2 ms that way, 0.21 ms from
// the cache. (Training steps hold enough live blocks that glibc kept its
// top: the U-Net step did not change.)
constexpr size_t kCacheMinBytes = size_t{1} << 16;

// 64-byte aligned, uninitialised; `bytes` may be 0. Throws OutOfMemoryError.
void* cpu_allocate(size_t bytes);
// Frees a block from cpu_allocate; `bytes` must be the size it was asked for.
void cpu_free(void* data, size_t bytes);

CpuMemoryStats cpu_memory_stats();
void reset_cpu_peak_memory();  // peaks = current values
// Returns every entirely free segment to the system.
void cpu_empty_cache();
// Turns the cache on or off (off also empties it); returns the previous setting.
bool set_cpu_caching(bool on);
bool cpu_caching();
// Whether large-block segments are mapped for transparent huge pages
// (2 MiB aligned, MADV_HUGEPAGE): not in AddressSanitizer builds, nor
// with CRFSEG_CPU_HUGE_PAGES=0. Whether the kernel grants them is its call.
bool cpu_huge_pages();
// Scratch arrays of kernels (packed GEMM panels, per-thread buffers) through
// the same cache: a GEMM packs into several MiB per call, which malloc would
// map and fault in afresh every time. Uninitialised.
template <typename T>
struct CpuFree {
  size_t bytes;
  void operator()(T* p) const { cpu_free(p, bytes); }
};
template <typename T>
using CpuArray = std::unique_ptr<T[], CpuFree<T>>;
template <typename T>
CpuArray<T> cpu_array(int64_t n) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
  return CpuArray<T>(static_cast<T*>(cpu_allocate(bytes)), CpuFree<T>{bytes});
}

// A standard allocator over cpu_allocate, for std::vectors that hold large
// tables rebuilt every step (the CRF's lattice: tens of MiB per image), so
// that they reuse cached blocks instead of faulting in fresh mappings.
// Like cpu_array, it leaves new elements default-initialised: for plain
// types, CpuVector<T> v(n) and v.resize(n) do not zero them (the lattice
// writes every element of its tables once; zeroing them first was 7% of its
// build). Values given explicitly (v.assign(n, x), v(n, x)) are written.
template <typename T>
struct CpuCacheAllocator {
  using value_type = T;
  CpuCacheAllocator() = default;
  template <typename U>
  CpuCacheAllocator(const CpuCacheAllocator<U>&) {}  // NOLINT: rebinding, as std::allocator
  T* allocate(size_t n) { return static_cast<T*>(cpu_allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { cpu_free(p, n * sizeof(T)); }
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const CpuCacheAllocator<U>&) const {
    return true;
  }
};
template <typename T>
using CpuVector = std::vector<T, CpuCacheAllocator<T>>;

// The large-block allocator's report (tensor/block_allocator.h's summary()).
std::string cpu_memory_summary();

}  // namespace crfseg
