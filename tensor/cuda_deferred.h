// Deferred device checks: input errors found by a kernel, reported at the
// host's next read instead of making every op wait for the device.
//
// Some inputs can only be checked where they are: a cross-entropy target
// outside [0, C) is found by the kernel that reads it. Reading that count
// back at the op makes the host wait for all the work queued before it (on
// a training step, the whole forward) before it may queue anything else.
// Instead the op queues the count's copy into pinned host memory, records
// an event, and returns; the count is read where this thread waits for the
// device anyway:
//   - a copy of a tensor to the host (Tensor::item, Tensor::to(cpu),
//     ops::to_device), once it has completed;
//   - cuda::synchronize(device);
//   - raise_deferred_errors(device), or wait_deferred_checks(device).
// A nonzero count throws there, the op's own message (e.g. "cross_entropy:
// target 7 at flat position 12 is outside [0, 3) ..."): the same exception
// as on the CPU, later. Checks are per thread, read in the order queued;
// a failed one is dropped once raised. PyTorch reports the same errors as
// device-side assertions that leave the CUDA context unusable; here the
// process goes on.
//
// CRFSEG_CUDA_SYNC=1 (which also synchronises after every launch) reads
// each check as it is queued, so the error comes from its op.
// A check nobody reads again (the thread ends, or never reads the device)
// is dropped; the ops that defer a check also make their result NaN
// (cross_entropy) or leave it uncounted (confusion counts) when it fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "tensor/cuda_memory.h"

namespace crfseg::cuda {

// Called with the check's value once it is known, when that is not 0 (0:
// passed); throws the op's error. It may read tensors (for the message).
using DeferredRaise = std::function<void(int64_t value)>;

// Queues a copy of the int64 at `device_value` (device memory on `device`,
// written by work already queued on `stream`) and `raise` to be called
// with it later. Checks already passed are dropped first (their raise
// functions may hold tensors). Throws only as the CUDA calls do, or when
// reading the oldest check to make room (256 unread on the device) raises it.
void defer_check(int device, StreamHandle stream, const int64_t* device_value, DeferredRaise raise);

// Reads this thread's checks on `device` whose copies have completed, in
// the order queued, and calls their raise functions (the first to throw
// propagates; the rest stay queued). Never waits. A call made from inside a
// raise function (which may read tensors to build its message) does nothing.
void raise_deferred_errors(int device);
// Waits for this thread's checks on `device`, then raise_deferred_errors.
void wait_deferred_checks(int device);
// How many checks this thread has queued and not yet read (on any device).
size_t deferred_checks_pending();

// The queue behind the functions above, free of CUDA so the CPU tests can
// drive it with fake checks. ready() says whether value() may be called;
// wait() blocks until it may.
struct DeferredEntry {
  int device = 0;
  std::function<bool()> ready;
  std::function<void()> wait;
  std::function<int64_t()> value;
  DeferredRaise raise;
};

class DeferredQueue {
 public:
  void push(DeferredEntry entry) { entries_.push_back(std::move(entry)); }
  void reserve_one() { entries_.reserve(entries_.size() + 1); }  // so a push after it cannot throw
  // Drops the ready entries whose value is 0, without raising anything.
  void drop_passed();
  // Pops the ready entries of `device` (all devices for -1) in order and
  // raises the failed ones; with wait, waits for each first. Entries not
  // ready and those of other devices keep their place. Reentrant calls
  // (from a raise function) return at once.
  void raise_ready(int device, bool wait);
  // Waits for and raises the oldest entry of `device` (to make room);
  // false when there is none.
  bool raise_oldest(int device);
  size_t size() const { return entries_.size(); }

 private:
  std::vector<DeferredEntry> entries_;
  bool raising_ = false;
};

}  // namespace crfseg::cuda
