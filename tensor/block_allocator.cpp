// BlockAllocator (see block_allocator.h).
//
// A segment is a doubly linked list of blocks covering it end to end, in
// address order; each block is either handed out or free. Free blocks also
// sit in one of two ordered sets (small and large pool) keyed by
// (stream, size, address), so lower_bound finds the best fit on a stream.
#include "tensor/block_allocator.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "tensor/error.h"

namespace crfseg {

namespace {

struct Block {
  char* ptr = nullptr;
  size_t size = 0;  // bytes this block covers in its segment
  size_t requested = 0;
  BlockAllocator::StreamId stream = 0;
  bool small = false;
  bool free = true;
  std::vector<BlockAllocator::StreamId> uses;  // other streams that use it (record_stream)
  int pending_events = 0;                      // freed, waiting for those streams' events
  Block* prev = nullptr;  // neighbours in the same segment
  Block* next = nullptr;
};

struct BySize {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return a->stream < b->stream;
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};

using Pool = std::set<Block*, BySize>;

}  // namespace

struct BlockAllocator::Impl {
  Backend backend;
  mutable std::mutex lock;
  Pool small_pool, large_pool;
  std::unordered_map<void*, Block*> active;
  std::vector<std::pair<void*, Block*>> pending;  // (event, freed block) for record_stream's blocks
  DeviceMemoryStats stats;

  Pool& pool_of(const Block* b) { return b->small ? small_pool : large_pool; }

  // Best fit on `stream` in `pool`, removed from the pool; nullptr if none.
  Block* take_free(Pool& pool, size_t size, StreamId stream) {
    Block key;
    key.stream = stream;
    key.size = size;
    auto it = pool.lower_bound(&key);
    if (it == pool.end() || (*it)->stream != stream) return nullptr;
    Block* b = *it;
    pool.erase(it);
    return b;
  }

  Block* new_segment(size_t seg_bytes, bool small, StreamId stream) {
    void* p = backend.allocate(seg_bytes);
    if (p == nullptr) return nullptr;
    Block* b = new Block;
    b->ptr = static_cast<char*>(p);
    b->size = seg_bytes;
    b->small = small;
    b->stream = stream;
    stats.reserved_bytes += static_cast<int64_t>(seg_bytes);
    stats.peak_reserved_bytes = std::max(stats.peak_reserved_bytes, stats.reserved_bytes);
    ++stats.segment_allocations;
    return b;
  }

  // Back to its pool, merged with free neighbours. Caller holds lock.
  void release_block(Block* b) {
    b->free = true;
    if (b->prev != nullptr && b->prev->free) absorb(b, b->prev);
    if (b->next != nullptr && b->next->free) absorb(b, b->next);
    pool_of(b).insert(b);
  }

  // Returns the blocks whose streams' events have all completed. Caller holds lock.
  // An event that throws stays pending, as do those after it.
  void process_events() {
    std::vector<std::pair<void*, Block*>> still;
    size_t i = 0;
    try {
      for (; i < pending.size(); ++i) {
        Block* b = pending[i].second;
        if (!backend.event_done(pending[i].first)) {
          still.push_back(pending[i]);
        } else if (--b->pending_events == 0) {
          release_block(b);
        }
      }
    } catch (...) {
      still.insert(still.end(), pending.begin() + static_cast<std::ptrdiff_t>(i), pending.end());
      pending.swap(still);
      throw;
    }
    pending.swap(still);
  }

  // Releases every free block that spans a whole segment. Caller holds lock.
  void release_free_segments() {
    for (Pool* pool : {&small_pool, &large_pool}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev == nullptr && b->next == nullptr) {
          backend.release(b->ptr);
          stats.reserved_bytes -= static_cast<int64_t>(b->size);
          ++stats.segment_frees;
          delete b;
          it = pool->erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // Splits b so that it covers `size` bytes, returning the rest to its pool
  // when the rest is worth keeping as its own block.
  void maybe_split(Block* b, size_t size) {
    const size_t rest = b->size - size;
    const bool worth = b->small ? rest >= kRound : rest > kSmallLimit;
    if (!worth) return;
    Block* r = new Block;
    r->ptr = b->ptr + size;
    r->size = rest;
    r->stream = b->stream;
    r->small = b->small;
    r->prev = b;
    r->next = b->next;
    if (b->next != nullptr) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool_of(r).insert(r);
  }

  // Merges free neighbour `n` into b (n is adjacent to b in its segment).
  void absorb(Block* b, Block* n) {
    pool_of(n).erase(n);
    if (n == b->next) {
      b->size += n->size;
      b->next = n->next;
      if (n->next != nullptr) n->next->prev = b;
    } else {  // n == b->prev: b moves its start back to n's
      b->ptr = n->ptr;
      b->size += n->size;
      b->prev = n->prev;
      if (n->prev != nullptr) n->prev->next = b;
    }
    delete n;
  }
};

BlockAllocator::BlockAllocator(Backend backend) : impl_(std::make_unique<Impl>()) {
  impl_->backend = std::move(backend);
}

BlockAllocator::~BlockAllocator() {
  // Gather every block, then free each segment once (through its head block).
  std::set<Block*> all;
  for (auto& [p, b] : impl_->active) all.insert(b);
  for (auto& [event, b] : impl_->pending) all.insert(b);  // (their events are not released: teardown only)
  for (Block* b : impl_->small_pool) all.insert(b);
  for (Block* b : impl_->large_pool) all.insert(b);
  for (Block* b : all) {
    if (b->prev == nullptr) impl_->backend.release(b->ptr);
  }
  for (Block* b : all) delete b;
}

size_t BlockAllocator::round_size(size_t bytes) {
  if (bytes < kRound) return kRound;
  return (bytes + kRound - 1) / kRound * kRound;
}

size_t BlockAllocator::segment_size(size_t rounded) {
  if (rounded <= kSmallLimit) return kSmallSegment;
  return (rounded + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void* BlockAllocator::malloc(size_t bytes, StreamId stream) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> guard(m.lock);
  const size_t size = round_size(bytes);
  const bool small = size <= kSmallLimit;
  Pool& pool = small ? m.small_pool : m.large_pool;
  ++m.stats.allocations;
  if (!m.pending.empty()) m.process_events();
  Block* b = m.take_free(pool, size, stream);
  if (b != nullptr) {
    ++m.stats.cache_hits;
  } else {
    const size_t seg = segment_size(size);
    b = m.new_segment(seg, small, stream);
    if (b == nullptr) {
      // Out of memory: give back what the cache holds and try once more.
      ++m.stats.oom_retries;
      m.backend.synchronize();
      m.process_events();
      m.release_free_segments();
      b = m.new_segment(seg, small, stream);
    }
    if (b == nullptr) {
      --m.stats.allocations;
      CRFSEG_CHECK(false, OutOfMemoryError, "malloc on ", m.backend.name, ": out of memory allocating ",
                   bytes, " bytes (a segment of ", seg, "); ", m.stats.allocated_bytes,
                   " bytes allocated by crfseg, ", m.stats.reserved_bytes, " reserved (", m.backend.describe(),
                   "); reduce the batch size or the image size");
    }
  }
  m.maybe_split(b, size);
  b->free = false;
  b->requested = bytes;
  m.active.emplace(b->ptr, b);
  m.stats.allocated_bytes += static_cast<int64_t>(b->size);
  m.stats.peak_allocated_bytes = std::max(m.stats.peak_allocated_bytes, m.stats.allocated_bytes);
  m.stats.requested_bytes += static_cast<int64_t>(bytes);
  ++m.stats.active_blocks;
  return b->ptr;
}

void BlockAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  Impl& m = *impl_;
  std::lock_guard<std::mutex> guard(m.lock);
  auto it = m.active.find(ptr);
  CRFSEG_CHECK(it != m.active.end(), ValueError, "free on ", m.backend.name, ": expected a pointer from ",
               "this allocator, got ", ptr, " (double free?)");
  Block* b = it->second;
  // Used on other streams: an event on each, so that the block leaves the
  // pools until their work so far is done. Made before the books change: if
  // one cannot be recorded (e.g. the stream is gone), the whole device is
  // waited for instead, and the events made so far (done by then) released.
  std::vector<void*> events;
  try {
    for (const StreamId s : b->uses) events.push_back(m.backend.record_event(s));
  } catch (...) {
    m.backend.synchronize();  // if this throws too, the block stays allocated (reported, not reused)
    for (void* e : events) (void)m.backend.event_done(e);
    events.clear();
  }
  b->uses.clear();
  m.active.erase(it);
  m.stats.allocated_bytes -= static_cast<int64_t>(b->size);
  m.stats.requested_bytes -= static_cast<int64_t>(b->requested);
  --m.stats.active_blocks;
  ++m.stats.frees;
  b->requested = 0;
  if (events.empty()) {
    m.release_block(b);
    return;
  }
  m.pending.reserve(m.pending.size() + events.size());
  for (void* e : events) m.pending.emplace_back(e, b);
  b->pending_events = static_cast<int>(events.size());
}

void BlockAllocator::record_stream(void* ptr, StreamId stream) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> guard(m.lock);
  CRFSEG_CHECK(m.backend.record_event && m.backend.event_done, NotImplementedError, "record_stream on ",
               m.backend.name, ": this allocator has no stream events");
  auto it = m.active.find(ptr);
  CRFSEG_CHECK(it != m.active.end(), ValueError, "record_stream on ", m.backend.name,
               ": expected a pointer from this allocator, not yet freed, got ", ptr);
  Block* b = it->second;
  if (stream != b->stream && std::find(b->uses.begin(), b->uses.end(), stream) == b->uses.end()) {
    b->uses.push_back(stream);
  }
}

void BlockAllocator::empty_cache() {
  std::lock_guard<std::mutex> guard(impl_->lock);
  impl_->backend.synchronize();
  if (!impl_->pending.empty()) impl_->process_events();
  impl_->release_free_segments();
}

void BlockAllocator::empty_cache_for_foreign_retry() {
  {
    std::lock_guard<std::mutex> guard(impl_->lock);
    ++impl_->stats.foreign_retries;
  }
  empty_cache();
}

DeviceMemoryStats BlockAllocator::stats() const {
  std::lock_guard<std::mutex> guard(impl_->lock);
  return impl_->stats;
}

void BlockAllocator::reset_peak() {
  std::lock_guard<std::mutex> guard(impl_->lock);
  impl_->stats.peak_allocated_bytes = impl_->stats.allocated_bytes;
  impl_->stats.peak_reserved_bytes = impl_->stats.reserved_bytes;
}

std::string BlockAllocator::summary() const {
  const DeviceMemoryStats s = stats();
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1 << 20); };
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(1);
  out << "memory on " << impl_->backend.name << "\n"
      << "  allocated  " << mib(s.allocated_bytes) << " MiB (peak " << mib(s.peak_allocated_bytes) << ", requested "
      << mib(s.requested_bytes) << ") in " << s.active_blocks << " blocks\n"
      << "  reserved   " << mib(s.reserved_bytes) << " MiB (peak " << mib(s.peak_reserved_bytes) << ")\n"
      << "  calls      " << s.allocations << " allocations (" << s.cache_hits << " from the cache), " << s.frees
      << " frees; " << s.segment_allocations << " segments allocated, " << s.segment_frees << " released, "
      << s.oom_retries << " out-of-memory retries, " << s.foreign_retries
      << " emptied for other pools (kernel scratch)\n";
  return out.str();
}

}  // namespace crfseg
