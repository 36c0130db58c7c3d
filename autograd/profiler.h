// An op-level profiler: where a training step's time goes.
//
//   {
//     profiler::Session session(device);         // this thread records
//     ... forward, loss, backward, optimizer ...
//     std::printf("%s", session.table(25).c_str());
//   }
//
// While a Session lives, every Module call (keyed by the module's type,
// hyper-parameters and input shape), every backward Node (keyed by the
// module call that created it) and every region a caller names is a Scope.
// Total time: entry to exit. Self time: total minus the child scopes'
// totals, so self times add up to the profiled time with nothing counted
// twice (a Sequential's self time is the glue between its children).
//
// On a CUDA device the Session synchronises at every scope edge, so each
// kernel's time lands in the scope that launched it; a profiled step is
// slower than an unprofiled one, and the shares are what to read. On the
// CPU a scope costs two clock reads and its label (a few strings).
// With no Session nothing is built or timed; results never depend on
// profiling. One Session per thread at a time; only its thread records.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/device.h"

namespace crfseg::profiler {

struct Entry {
  std::string kind;    // "Conv2d", "Conv2dBackward", "optimizer", ...
  std::string detail;  // hyper-parameters and shape; "" for a named region
  int64_t calls = 0;
  double total_ms = 0;  // entry to exit, summed over calls
  double self_ms = 0;   // total minus the child scopes' totals
};

class Session {
 public:
  // device: the device to synchronise at scope edges (a no-op for the CPU).
  explicit Session(Device device = Device::cpu());
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Every entry, the largest self time first (ties by kind, then detail).
  std::vector<Entry> entries() const;
  // Self time over all entries: the time spent inside outermost scopes.
  double profiled_ms() const;
  // Wall time since the Session began: profiled_ms() and what no scope covered.
  double wall_ms() const;
  // Two markdown tables: self time summed by kind, then the `rows` entries
  // with the largest self time; each with its share of profiled_ms().
  std::string table(size_t rows) const;
  void clear();

  // Used by Scope: enter and exit synchronise the device (and may throw);
  // abandon drops the innermost open scope untimed, keeping the first error.
  void enter(const char* kind, const std::string* detail);
  void exit();
  void abandon(std::string error);

 private:
  struct Open {
    const char* kind;
    const std::string* detail;  // the Scope's own string
    std::chrono::steady_clock::time_point start;
    double child_ms = 0;
  };
  friend std::string innermost_label();
  friend class Scope;
  void sync() const;
  // Throws if a scope failed to time or one is still open.
  void check_complete(const char* what) const;

  Device device_;
  uint64_t id_;  // unique over the process: a Scope outliving its Session is ignored
  std::chrono::steady_clock::time_point start_;
  std::vector<Open> stack_;
  std::unordered_map<std::string, Entry> entries_;  // key: kind + '\n' + detail
  std::string error_;  // why a scope's exit could not be timed
};

// True while a Session records on this thread.
bool active();
// The innermost open scope on this thread as "kind detail" ("" if none).
std::string innermost_label();

// Times the enclosing block as one scope when a Session is active; a no-op
// otherwise. kind must outlive the scope. A scope left by an exception is
// not timed; a device error at its exit is kept and thrown by the Session's
// readers (a destructor cannot throw it).
class Scope {
 public:
  explicit Scope(const char* kind, std::string detail = {});
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Session* session_;
  uint64_t session_id_;
  const char* kind_;
  std::string detail_;
  int uncaught_;  // std::uncaught_exceptions() at entry: a larger count at exit means unwinding
};

}  // namespace crfseg::profiler
