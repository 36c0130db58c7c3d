// Deferred device checks (see cuda_deferred.h). Written on cuda_memory.h's
// pinned buffers, events and asynchronous copies alone, so it needs no
// #ifdef: without CUDA, defer_check throws their DeviceError and the queue
// stays empty.
#include "tensor/cuda_deferred.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "tensor/error.h"

namespace crfseg::cuda {

namespace {
// Sets the queue's reentrancy flag while raise functions run, then puts
// back what it was (raise_oldest may run inside a raise).
struct RaisingGuard {
  bool& flag;
  const bool previous;
  explicit RaisingGuard(bool& f) : flag(f), previous(f) { flag = true; }
  ~RaisingGuard() { flag = previous; }
};
}  // namespace

void DeferredQueue::raise_ready(int device, bool wait) {
  if (raising_) return;  // a raise function reading the device to build its message
  const RaisingGuard guard(raising_);
  for (size_t i = 0; i < entries_.size();) {
    DeferredEntry& e = entries_[i];
    if (device >= 0 && e.device != device) {
      ++i;
      continue;
    }
    if (wait) {
      e.wait();
    } else if (!e.ready()) {
      ++i;  // on another stream, still running: read at a later call
      continue;
    }
    DeferredEntry taken = std::move(e);
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    const int64_t value = taken.value();
    if (value == 0) continue;
    taken.raise(value);  // gone from the queue whether or not it throws
    i = 0;  // (one that returned may have queued checks: scan again)
  }
}

void DeferredQueue::drop_passed() {
  // One at a time (not erase_if): if ready() throws (a CUDA error), the
  // queue is left whole.
  for (size_t i = 0; i < entries_.size();) {
    if (entries_[i].ready() && entries_[i].value() == 0) {
      entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

bool DeferredQueue::raise_oldest(int device) {
  // Guarded as raise_ready: the raise function's own reads of the device
  // must not raise a later check out of it (the oldest's error would be lost).
  const RaisingGuard guard(raising_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].device != device) continue;
    entries_[i].wait();
    DeferredEntry taken = std::move(entries_[i]);
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    if (const int64_t value = taken.value(); value != 0) taken.raise(value);
    return true;
  }
  return false;
}

namespace {

constexpr int kSlots = 256;  // unread checks per thread and device before defer_check reads the oldest

bool read_each_check_at_once() {
  static const bool sync = [] {
    const char* env = std::getenv("CRFSEG_CUDA_SYNC");
    return env != nullptr && std::strcmp(env, "1") == 0;
  }();
  return sync;
}

// Pinned int64 slots the checks' values are copied into: allocating pinned
// memory per check would cost a driver call each, and freeing it waits
// for the device.
struct SlotPool {
  PinnedBuffer buffer;
  std::vector<int> free;
};

// The pools are declared first so they outlive the queue's entries, whose
// slot leases return to them.
struct ThreadState {
  std::map<int, SlotPool> pools;
  DeferredQueue queue;
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

void defer_check(int device, StreamHandle stream, const int64_t* device_value, DeferredRaise raise) {
  ThreadState& s = thread_state();
  SlotPool& pool = s.pools[device];
  if (pool.buffer.data() == nullptr) {
    pool.buffer = PinnedBuffer(kSlots * sizeof(int64_t), device);
    for (int k = kSlots - 1; k >= 0; --k) pool.free.push_back(k);
  }
  s.queue.drop_passed();  // their raise functions may hold large tensors (a batch's masks)
  while (pool.free.empty()) {  // kSlots unread on this device: read the oldest
    if (!s.queue.raise_oldest(device)) throw DeviceError("cuda::defer_check: every pinned slot is in use");
  }
  // Everything that can throw is made before the copy: once the copy is
  // queued, the slot may be written until the event, and goes back to the
  // pool only with the entry, once read.
  const int slot = pool.free.back();
  pool.free.pop_back();
  int64_t* host = static_cast<int64_t*>(pool.buffer.data()) + slot;
  const std::shared_ptr<int64_t> lease(host, [&pool, slot](int64_t*) { pool.free.push_back(slot); });
  auto done = std::make_shared<Event>(device, /*timing=*/false);
  DeferredEntry entry{.device = device,
                      .ready = [done] { return done->query(); },
                      .wait = [done] { done->synchronize(); },
                      .value = [lease] { return *lease; },
                      .raise = std::move(raise)};
  s.queue.reserve_one();  // the push below moves into reserved space: it cannot throw
  copy_to_host_async(host, device_value, sizeof(int64_t), device, stream);  // (throws: nothing was queued)
  try {
    done->record(stream);
  } catch (...) {
    (void)new std::shared_ptr<int64_t>(lease);  // the copy may be running: never return its slot
    throw;
  }
  s.queue.push(std::move(entry));
  if (read_each_check_at_once()) s.queue.raise_ready(device, /*wait=*/true);
}

void raise_deferred_errors(int device) { thread_state().queue.raise_ready(device, /*wait=*/false); }

void wait_deferred_checks(int device) { thread_state().queue.raise_ready(device, /*wait=*/true); }

size_t deferred_checks_pending() { return thread_state().queue.size(); }

}  // namespace crfseg::cuda
