// BlockAllocator: the device-independent core of the CUDA caching allocator
// (tensor/cuda_memory.cpp), after PyTorch's CUDACachingAllocator.
//
// Why: cudaMalloc and cudaFree are slow (cudaFree synchronises the whole
// device), and a training step allocates and frees the same activation sizes
// every step. So freed blocks stay reserved and are handed out again.
//
// How:
//  - Requests are rounded up to a multiple of 512 bytes.
//  - Small requests (at most 1 MiB) are carved out of 2 MiB segments; large
//    ones out of segments of their size rounded up to 2 MiB. A segment is one
//    call to the backend's allocate (cudaMalloc).
//  - A free block is found best-fit (smallest that fits) among the free
//    blocks of the same pool (small or large) and the same stream: a block
//    freed on one stream may still be read by kernels queued on it, so it is
//    only reused in that stream's order. The block is split when the rest is
//    worth keeping (at least 512 bytes in the small pool, more than 1 MiB in
//    the large one); on free it merges with free neighbours in its segment.
//  - record_stream(ptr, s) notes that a block is also used on stream s (not
//    the one it was allocated on). Its free() then records an event on each
//    such stream, and the block goes back to its pool only when they have
//    all completed (checked at the next malloc, or after a synchronisation),
//    so it is not handed out while kernels queued on s may still read it.
//  - When the backend refuses memory, every segment that is entirely free is
//    released (after the backend synchronises) and the allocation retried
//    once; then OutOfMemoryError gives the request, what is allocated and
//    reserved, and the backend's own free/total report.
//
// The backend is a small interface, so the bookkeeping is tested on the CPU
// with a fake device (tests/tensor/test_block_allocator.cpp). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace crfseg {

struct DeviceMemoryStats {
  int64_t allocated_bytes = 0;        // in live blocks (rounded sizes)
  int64_t peak_allocated_bytes = 0;
  int64_t requested_bytes = 0;        // in live blocks, as asked for
  int64_t reserved_bytes = 0;         // held from the backend (segments)
  int64_t peak_reserved_bytes = 0;
  int64_t allocations = 0;            // malloc calls
  int64_t frees = 0;
  int64_t segment_allocations = 0;    // backend allocate calls that succeeded
  int64_t segment_frees = 0;
  int64_t cache_hits = 0;             // allocations served without the backend
  int64_t oom_retries = 0;            // times the cache was emptied to retry (this allocator's)
  int64_t foreign_retries = 0;        // ... for another pool's allocation (the kernels' scratch)
  int64_t active_blocks = 0;
};

class BlockAllocator {
 public:
  struct Backend {
    // Returns nullptr when out of memory; throws on any other failure.
    std::function<void*(size_t bytes)> allocate;
    std::function<void(void* ptr)> release;
    // Waits for all queued work (before freeing cached segments).
    std::function<void()> synchronize;
    // "free X of Y bytes" for the out-of-memory message.
    std::function<std::string()> describe;
    std::string name;  // "cuda:0", for messages
    // Events, for record_stream (a backend without them refuses it):
    // record_event(stream) marks the work queued on `stream` so far and
    // returns a handle; event_done(handle) says whether that work has
    // completed, and when it has, releases the handle.
    std::function<void*(uintptr_t stream)> record_event;
    std::function<bool(void* event)> event_done;
  };
  using StreamId = uintptr_t;  // a cudaStream_t's value

  static constexpr size_t kRound = 512;
  static constexpr size_t kSmallLimit = size_t{1} << 20;    // small pool: requests up to 1 MiB
  static constexpr size_t kSmallSegment = size_t{2} << 20;  // small pool segment size
  static constexpr size_t kLargeRound = size_t{2} << 20;    // large segments are multiples of this

  explicit BlockAllocator(Backend backend);
  ~BlockAllocator();  // releases every segment (live blocks too: call at teardown only)
  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;

  // A block of at least `bytes` (0 allowed) for use on `stream`.
  // Throws OutOfMemoryError after one retry with an emptied cache.
  void* malloc(size_t bytes, StreamId stream);
  // Returns a block from malloc to the cache. Unknown pointers throw ValueError.
  void free(void* ptr);
  // The block at ptr (from malloc, not yet freed) is also used by work on
  // `stream` (see above; the allocation's own stream is a no-op). The
  // stream must be on this device and outlive the block's free (if its
  // event cannot be recorded then, free waits for the whole device). Throws
  // ValueError for an unknown pointer, NotImplementedError without events.
  void record_stream(void* ptr, StreamId stream);
  // Releases every entirely free segment to the backend.
  void empty_cache();
  // The same on behalf of memory allocated elsewhere on the device (the
  // kernels' stream-ordered scratch), counted in stats().foreign_retries.
  void empty_cache_for_foreign_retry();

  DeviceMemoryStats stats() const;
  void reset_peak();
  // Human-readable report of stats(), one quantity per line.
  std::string summary() const;

  static size_t round_size(size_t bytes);
  static size_t segment_size(size_t rounded);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crfseg
