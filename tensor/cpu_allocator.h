// The CPU allocator behind every Storage: 64-byte aligned host memory, with a
// cache of large freed blocks.
//
// Why a cache: a training step allocates and frees the same activation
// sizes every step, many of them tens of MiB. glibc serves blocks above its
// mmap threshold (at most 32 MiB) with a fresh mmap each time, so every step
// pays page faults and the kernel's zeroing of every page touched, then
// munmap (measured: about 5% of a ResNet-50 forward at batch 8, 224^2, on
// the 2-core VM; bench/NOTES.md). Keeping freed large blocks and handing
// them out again avoids that, as PyTorch's CUDA caching allocator does on
// the GPU.
//
// How: a request of at least kCacheMinBytes is rounded up to its size class
// (a multiple of an eighth of the power of two at or below it: under 12.5%
// slack), and a freed block goes onto its class's free list instead of back
// to the system. An allocation takes the most recently freed block of its
// class when there is one. Smaller requests go straight to
// aligned_alloc/free (glibc already reuses small blocks).
//
// The bound: what the process holds in large blocks (live + cached) never
// exceeds the high water mark of live large blocks. A miss first returns
// cached blocks to the system, oldest first, until live + cached + the new
// block fits under that mark (or the cache is empty). So the cache costs no
// resident memory beyond the busiest moment the run would have had without
// it (plus class rounding), whatever sizes a run asks for: a training step
// whose backward frees activations of one size and allocates gradients of
// another evicts, where a simpler "cache at most the peak" rule kept both
// (measured: U-Net step peak RSS +28%, bench/NOTES.md change 1), and a
// steady training or inference loop, which reallocates the same sizes every
// step, is served from the cache.
//
// When the system refuses memory, the cache is emptied and the allocation
// retried once before OutOfMemoryError.
//
// On by default; CRFSEG_CPU_CACHE=0 in the environment (or
// set_cpu_caching(false)) turns it off. A build with AddressSanitizer keeps
// it off whatever the variable says (a reused block would hide
// use-after-free bugs from it). Thread-safe (one mutex; data-loading threads
// allocate too).
#pragma once

#include <cstddef>
#include <cstdint>

namespace crfseg {

struct CpuMemoryStats {
  int64_t allocated_bytes = 0;       // held by live Storages (requested sizes)
  int64_t peak_allocated_bytes = 0;  // the most allocated_bytes has been
  int64_t cached_bytes = 0;          // freed large blocks kept for reuse (class sizes)
  int64_t allocations = 0;           // calls of cpu_allocate
  int64_t cache_hits = 0;            // allocations served from the cache
  int64_t evictions = 0;             // cached blocks returned to the system to stay under the bound
  int64_t high_water_bytes = 0;      // most large-block bytes live at once (class sizes): live + cached <= this
};

// Requests this large or larger are cached (smaller ones are left to malloc).
constexpr size_t kCacheMinBytes = size_t{1} << 20;

// 64-byte aligned, uninitialised; `bytes` may be 0. Throws OutOfMemoryError.
void* cpu_allocate(size_t bytes);
// Frees a block from cpu_allocate; `bytes` must be the size it was asked for.
void cpu_free(void* data, size_t bytes);

CpuMemoryStats cpu_memory_stats();
// peak_allocated_bytes = allocated_bytes; high_water_bytes = what is held now (live + cached).
void reset_cpu_peak_memory();
// Returns every cached block to the system.
void cpu_empty_cache();
// Turns the cache on or off (off also empties it); returns the previous setting.
bool set_cpu_caching(bool on);
bool cpu_caching();

// The size class a cached request of `bytes` is rounded to (exposed for tests).
size_t cpu_size_class(size_t bytes);

}  // namespace crfseg
