// The CUDA caching allocator's bookkeeping (tensor/block_allocator.h), run on
// the CPU against a fake device with a fixed capacity, so every path (best
// fit, splitting, merging, per-stream pools, out-of-memory retry) is tested
// without a GPU.
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "tensor/block_allocator.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

// A device of `capacity` bytes; records every segment it hands out. Its
// streams in `busy` have work queued: an event recorded on one completes
// only once the test takes the stream out of `busy` (or synchronises).
constexpr uintptr_t kGoneStream = 9;  // record_event on it throws (a destroyed stream)

struct FakeDevice {
  size_t capacity;
  size_t used = 0;
  int syncs = 0;
  std::map<void*, size_t> segments;
  std::set<uintptr_t> busy;
  std::map<int*, uintptr_t> events;  // outstanding: handle -> stream

  BlockAllocator::Backend backend() {
    return {
        .allocate = [this](size_t bytes) -> void* {
          if (used + bytes > capacity) return nullptr;
          void* p = std::malloc(bytes);
          used += bytes;
          segments[p] = bytes;
          return p;
        },
        .release = [this](void* p) {
          auto it = segments.find(p);
          REQUIRE(it != segments.end());  // only whole segments are ever released
          used -= it->second;
          segments.erase(it);
          std::free(p);
        },
        .synchronize = [this] {
          ++syncs;
          busy.clear();
        },
        .describe = [this] { return "fake: " + std::to_string(capacity - used) + " free"; },
        .name = "fake:0",
        .record_event = [this](uintptr_t stream) -> void* {
          if (stream == kGoneStream) throw DeviceError("fake: no stream " + std::to_string(stream));
          int* e = new int(0);
          events[e] = stream;
          return e;
        },
        .event_done = [this](void* event) {
          int* e = static_cast<int*>(event);
          REQUIRE(events.count(e) == 1);  // never asked again once done
          if (busy.count(events[e]) != 0) return false;
          events.erase(e);
          delete e;
          return true;
        },
    };
  }
};

constexpr size_t MiB = size_t{1} << 20;

}  // namespace

TEST_CASE("block allocator: rounding and segment sizes") {
  CHECK(BlockAllocator::round_size(0) == 512);
  CHECK(BlockAllocator::round_size(1) == 512);
  CHECK(BlockAllocator::round_size(512) == 512);
  CHECK(BlockAllocator::round_size(513) == 1024);
  CHECK(BlockAllocator::segment_size(512) == 2 * MiB);
  CHECK(BlockAllocator::segment_size(MiB) == 2 * MiB);
  CHECK(BlockAllocator::segment_size(MiB + 512) == 2 * MiB);
  CHECK(BlockAllocator::segment_size(5 * MiB + 512) == 6 * MiB);
}

TEST_CASE("block allocator: small blocks share a segment and freed blocks are reused") {
  FakeDevice dev{.capacity = 64 * MiB};
  BlockAllocator a(dev.backend());
  void* p = a.malloc(1000, 0);
  void* q = a.malloc(3000, 0);
  CHECK(dev.segments.size() == 1);  // both carved from one 2 MiB segment
  CHECK(static_cast<char*>(q) - static_cast<char*>(p) == 1024);
  a.free(p);
  void* r = a.malloc(700, 0);  // best fit: the freed 1024-byte block
  CHECK(r == p);
  const DeviceMemoryStats s = a.stats();
  CHECK(s.allocations == 3);
  CHECK(s.cache_hits == 2);  // q was split off the first segment, r reused p
  CHECK(s.segment_allocations == 1);
  CHECK(s.allocated_bytes == 1024 + 3072);
  CHECK(s.requested_bytes == 700 + 3000);
  CHECK(s.reserved_bytes == static_cast<int64_t>(2 * MiB));
  a.free(q);
  a.free(r);
  CHECK(a.stats().allocated_bytes == 0);
  CHECK(a.stats().active_blocks == 0);
}

TEST_CASE("block allocator: freed neighbours merge back into a whole segment") {
  FakeDevice dev{.capacity = 64 * MiB};
  BlockAllocator a(dev.backend());
  std::vector<void*> ps;
  for (int i = 0; i < 8; ++i) ps.push_back(a.malloc(100 * 1024, 0));
  CHECK(dev.segments.size() == 1);
  // Free in a scrambled order: every merge case (prev, next, both) happens.
  for (int i : {3, 5, 4, 0, 7, 1, 6, 2}) a.free(ps[static_cast<size_t>(i)]);
  a.empty_cache();  // only whole free segments can go; all of it must
  CHECK(dev.segments.empty());
  CHECK(a.stats().reserved_bytes == 0);
  CHECK(a.stats().segment_frees == 1);
}

TEST_CASE("block allocator: emptied for another pool's allocation, it counts that apart from its own retries") {
  FakeDevice dev{.capacity = 64 * MiB};
  BlockAllocator a(dev.backend());
  void* kept = a.malloc(4 * MiB, 0);
  a.free(a.malloc(20 * MiB, 0));
  CHECK(dev.segments.size() == 2);
  a.empty_cache_for_foreign_retry();  // what the kernels' scratch asks for when the device is full
  CHECK(dev.segments.size() == 1);     // the free segment went back; the live one stays
  CHECK(dev.syncs == 1);
  CHECK(a.stats().foreign_retries == 1);
  CHECK(a.stats().oom_retries == 0);
  CHECK(a.summary().find("1 emptied for other pools (kernel scratch)") != std::string::npos);
  a.free(kept);
}

TEST_CASE("block allocator: a large block is split only when the rest is over 1 MiB") {
  FakeDevice dev{.capacity = 64 * MiB};
  BlockAllocator a(dev.backend());
  void* big = a.malloc(9 * MiB, 0);  // 10 MiB segment
  a.free(big);
  void* p = a.malloc(3 * MiB, 0);  // reuses it, splits off 7 MiB
  CHECK(p == big);
  CHECK(a.stats().allocated_bytes == static_cast<int64_t>(3 * MiB));
  void* q = a.malloc(6 * MiB + 512, 0);  // fits the 7 MiB rest; remaining < 1 MiB is not split off
  CHECK(static_cast<char*>(q) == static_cast<char*>(p) + 3 * MiB);
  CHECK(a.stats().allocated_bytes == static_cast<int64_t>(10 * MiB));
  CHECK(dev.segments.size() == 1);
  a.free(p);
  a.free(q);
}

TEST_CASE("block allocator: blocks freed on one stream are not handed to another") {
  FakeDevice dev{.capacity = 64 * MiB};
  BlockAllocator a(dev.backend());
  void* p = a.malloc(4 * MiB, /*stream=*/1);
  a.free(p);
  void* q = a.malloc(4 * MiB, /*stream=*/2);
  CHECK(q != p);
  CHECK(dev.segments.size() == 2);
  void* r = a.malloc(4 * MiB, /*stream=*/1);
  CHECK(r == p);
  a.free(q);
  a.free(r);
}

TEST_CASE("block allocator: a block used on another stream is reused only after that stream's work") {
  FakeDevice dev{.capacity = 64 * MiB};
  {
    BlockAllocator a(dev.backend());
    // Small blocks (one 2 MiB segment): p used on stream 2 as well.
    void* p = a.malloc(1000, /*stream=*/1);
    a.record_stream(p, 2);
    a.record_stream(p, 2);  // once is enough
    a.record_stream(p, 1);  // its own stream: nothing to wait for
    dev.busy = {2};
    a.free(p);
    CHECK(a.stats().allocated_bytes == 0);  // freed by its owner...
    CHECK(dev.events.size() == 1);          // ...but one event on stream 2 guards it
    void* q = a.malloc(1000, 1);
    CHECK(q != p);  // stream 2 may still read p
    CHECK(dev.segments.size() == 1);
    dev.busy.clear();  // stream 2's work is done
    void* r = a.malloc(1000, 1);
    CHECK(r == p);  // the best fit again
    CHECK(dev.events.empty());
    a.free(q);
    a.free(r);
    // A large block whose segment is released: empty_cache synchronises, so
    // the event completes and the whole segment goes back.
    void* big = a.malloc(6 * MiB, 1);
    a.record_stream(big, 3);
    a.record_stream(big, 4);
    dev.busy = {3, 4};
    a.free(big);
    CHECK(dev.events.size() == 2);
    const size_t segments = dev.segments.size();
    a.empty_cache();
    CHECK(dev.events.empty());
    CHECK(dev.segments.size() == segments - 2);  // the 6 MiB one and the small one
    CHECK(a.stats().reserved_bytes == 0);
    // The legacy default stream (handle 0) as the other stream: a block
    // of stream 7 used there waits for it too.
    void* on7 = a.malloc(1000, 7);
    a.record_stream(on7, 0);
    dev.busy = {0};
    a.free(on7);
    CHECK(a.malloc(1000, 7) != on7);
    dev.busy.clear();
    void* on7_again = a.malloc(1000, 7);
    CHECK(on7_again == on7);
    a.free(on7_again);
    // An event that cannot be recorded: free waits for the whole device
    // instead (the events already made are done then), and the block is
    // free at once, its books balanced.
    void* gone = a.malloc(1000, 1);
    a.record_stream(gone, 6);
    a.record_stream(gone, kGoneStream);
    dev.busy = {6};
    const int syncs = dev.syncs;
    a.free(gone);
    CHECK(dev.syncs == syncs + 1);
    CHECK(dev.events.empty());  // stream 6's event was made, then released after the sync
    void* again = a.malloc(1000, 1);
    CHECK(again == gone);
    a.free(again);
    // Freed while its events are outstanding, then the allocator goes:
    // the segment is still released once (the fake checks).
    void* last = a.malloc(3 * MiB, 1);
    a.record_stream(last, 5);
    dev.busy = {5};
    a.free(last);
    CHECK(dev.events.size() == 1);
    int local = 0;
    check_throws_with<ValueError>([&] { a.record_stream(&local, 2); },
                                  "record_stream on fake:0: expected a pointer from this allocator, not yet freed");
    check_throws_with<ValueError>([&] { a.record_stream(p, 2); }, "not yet freed");  // p was freed (as r)
  }
  CHECK(dev.segments.empty());
  for (auto& [e, s] : dev.events) delete e;
  // A backend without events refuses record_stream.
  BlockAllocator::Backend plain = dev.backend();
  plain.record_event = nullptr;
  BlockAllocator b(plain);
  void* p = b.malloc(100, 0);
  check_throws_with<NotImplementedError>([&] { b.record_stream(p, 1); }, "has no stream events");
  b.free(p);
}

TEST_CASE("block allocator: out of memory empties the cache, retries, then throws with the byte counts") {
  FakeDevice dev{.capacity = 16 * MiB};
  BlockAllocator a(dev.backend());
  void* p = a.malloc(6 * MiB, 0);
  void* q = a.malloc(6 * MiB, 0);
  a.free(p);  // cached, so the device has only 4 MiB left
  void* r = a.malloc(8 * MiB, 0);  // needs the cache emptied first
  CHECK(r != nullptr);
  CHECK(a.stats().oom_retries == 1);
  CHECK(dev.syncs >= 1);
  CHECK(a.stats().reserved_bytes == static_cast<int64_t>(14 * MiB));
  check_throws_with<OutOfMemoryError>([&] { a.malloc(8 * MiB, 0); },
                                      "malloc on fake:0: out of memory allocating 8388608 bytes");
  check_throws_with<OutOfMemoryError>([&] { a.malloc(8 * MiB, 0); }, "14680064 reserved (fake: 2097152 free)");
  // Nothing was lost: the live blocks are intact and the allocator still works.
  CHECK(a.stats().active_blocks == 2);
  a.free(q);
  a.free(r);
  CHECK(a.malloc(15 * MiB, 0) != nullptr);
}

TEST_CASE("block allocator: an unknown pointer or a double free throws") {
  FakeDevice dev{.capacity = 16 * MiB};
  BlockAllocator a(dev.backend());
  void* p = a.malloc(100, 0);
  a.free(p);
  check_throws_with<ValueError>([&] { a.free(p); }, "double free");
  int local = 0;
  check_throws_with<ValueError>([&] { a.free(&local); }, "expected a pointer from this allocator");
}

TEST_CASE("block allocator: random traffic keeps blocks disjoint and the books balanced") {
  FakeDevice dev{.capacity = 4096 * MiB};  // never touched: malloc'd pages stay virtual
  std::mt19937 rng(7);
  {
    BlockAllocator a(dev.backend());
    std::map<char*, size_t> live;  // ptr -> requested size
    for (int step = 0; step < 3000; ++step) {
      if (live.empty() || rng() % 2 == 0) {
        const size_t kind = rng() % 10;
        const size_t bytes = kind < 7 ? rng() % (64 * 1024) : rng() % (12 * MiB);
        char* p = static_cast<char*>(a.malloc(bytes, rng() % 2));
        // The new block overlaps no live one.
        auto next = live.lower_bound(p);
        if (next != live.end()) CHECK(p + bytes <= next->first);
        if (next != live.begin()) {
          auto prev = std::prev(next);
          CHECK(prev->first + prev->second <= p);
        }
        live[p] = bytes;
      } else {
        auto it = live.begin();
        std::advance(it, static_cast<long>(rng() % live.size()));
        a.free(it->first);
        live.erase(it);
      }
      if (step % 500 == 0) a.empty_cache();
    }
    int64_t requested = 0;
    for (auto& [p, n] : live) requested += static_cast<int64_t>(n);
    const DeviceMemoryStats s = a.stats();
    CHECK(s.requested_bytes == requested);
    CHECK(s.active_blocks == static_cast<int64_t>(live.size()));
    CHECK(s.reserved_bytes == static_cast<int64_t>(dev.used));
    CHECK(s.allocated_bytes <= s.reserved_bytes);
    for (auto& [p, n] : live) a.free(p);
    a.empty_cache();
    CHECK(dev.segments.empty());
    CHECK(a.summary().find("allocated  0.0 MiB") != std::string::npos);
  }
  CHECK(dev.used == 0);
}
