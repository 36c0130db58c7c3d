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
// (a multiple of an eighth of the power of two at or below it: under 12.5% slack), and a freed
// block of a class goes onto that class's free list instead of back to the
// system, as long as the cache stays within the peak of live memory
// (rounded up to its size class; else the block is freed). An allocation takes a block of its class from the
// list when there is one. When the system refuses memory, the cache is
// emptied and the allocation retried once before OutOfMemoryError. Smaller
// requests go straight to aligned_alloc/free (glibc already reuses small
// blocks).
//
// The cache is OFF by default: CRFSEG_CPU_CACHE=1 in the environment (or
// set_cpu_caching(true)) turns it on; a build with AddressSanitizer ignores
// the variable (a reused block would hide use-after-free bugs from it).
// The trade-off, measured in bench/NOTES.md: a ResNet-50 forward (batch 8,
// 224^2) about 8% faster, but a U-Net training step's peak resident memory
// 28% higher (2253 against 1766 MiB, base 64, 256^2, batch 4), because
// blocks freed in the backward stay resident while the gradients' other
// sizes are mapped fresh. Thread-safe (one mutex; data-loading threads
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
};

// Requests this large or larger are cached (smaller ones are left to malloc).
constexpr size_t kCacheMinBytes = size_t{1} << 20;

// 64-byte aligned, uninitialised; `bytes` may be 0. Throws OutOfMemoryError.
void* cpu_allocate(size_t bytes);
// Frees a block from cpu_allocate; `bytes` must be the size it was asked for.
void cpu_free(void* data, size_t bytes);

CpuMemoryStats cpu_memory_stats();
void reset_cpu_peak_memory();  // peak_allocated_bytes = allocated_bytes
// Returns every cached block to the system.
void cpu_empty_cache();
// Turns the cache on or off (off also empties it); returns the previous setting.
bool set_cpu_caching(bool on);
bool cpu_caching();

// The size class a cached request of `bytes` is rounded to (exposed for tests).
size_t cpu_size_class(size_t bytes);

}  // namespace crfseg
