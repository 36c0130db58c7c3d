// The deferred-check queue (tensor/cuda_deferred.h) driven by fake checks on
// the CPU: which are read, in what order, what a failure leaves, and that a
// raise function reading the device again does not recurse. The CUDA side
// (pinned slots, events, the ops that defer) is in tests/cuda/.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/cuda_deferred.h"
#include "tensor/error.h"

using crfseg::cuda::DeferredEntry;
using crfseg::cuda::DeferredQueue;

namespace {

// A fake check: ready when *done, value `value`, and a raise that logs its
// name and throws for a value of 100 or more (the raise function decides;
// the queue calls it for any nonzero value, never for 0).
struct Fake {
  bool done = false;
  int waited = 0;
};

DeferredEntry entry(int device, Fake& f, int64_t value, const std::string& name, std::vector<std::string>& log) {
  return {.device = device,
          .ready = [&f] { return f.done; },
          .wait = [&f] { ++f.waited, f.done = true; },
          .value = [value] { return value; },
          .raise = [name, &log](int64_t v) {
            log.push_back(name);
            if (v >= 100) throw crfseg::ValueError(name + " failed with " + std::to_string(v));
          }};
}

}  // namespace

TEST_CASE("deferred checks: completed ones are read in order, running ones wait, other devices keep theirs") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake a, b, c, d;
  q.push(entry(0, a, 1, "a", log));
  q.push(entry(0, b, 1, "b", log));
  q.push(entry(1, c, 1, "c", log));
  q.push(entry(0, d, 1, "d", log));
  a.done = d.done = c.done = true;  // b still running (another stream)
  q.raise_ready(0, /*wait=*/false);
  CHECK(log == std::vector<std::string>{"a", "d"});
  CHECK(q.size() == 2);  // b, and device 1's c
  CHECK(b.waited == 0);
  q.raise_ready(0, /*wait=*/true);
  CHECK(b.waited == 1);
  CHECK(log == std::vector<std::string>{"a", "d", "b"});
  CHECK(q.size() == 1);
  q.raise_ready(-1, /*wait=*/false);  // every device
  CHECK(log == std::vector<std::string>{"a", "d", "b", "c"});
  CHECK(q.size() == 0);
  CHECK(c.waited == 0);
}

TEST_CASE("deferred checks: a failed check throws once and the later ones stay queued") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake a, b, c;
  a.done = b.done = c.done = true;
  q.push(entry(0, a, 1, "a", log));
  q.push(entry(0, b, 300, "b", log));
  q.push(entry(0, c, 500, "c", log));
  CHECK_THROWS_WITH_AS(q.raise_ready(0, false), "b failed with 300", crfseg::ValueError);
  CHECK(q.size() == 1);
  CHECK_THROWS_WITH_AS(q.raise_ready(0, false), "c failed with 500", crfseg::ValueError);
  CHECK(q.size() == 0);
  q.raise_ready(0, false);  // nothing left: no throw
  CHECK(log == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("deferred checks: a passed check (0) is dropped without its raise; drop_passed drops only those") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake a, b, c, d;
  a.done = b.done = d.done = true;
  q.push(entry(0, a, 0, "a", log));    // passed
  q.push(entry(0, b, 200, "b", log));  // failed: kept for a read to raise
  q.push(entry(0, c, 0, "c", log));    // not done yet: kept
  q.push(entry(1, d, 0, "d", log));    // passed, another device
  q.drop_passed();
  CHECK(q.size() == 2);
  CHECK(log.empty());
  c.done = true;
  CHECK_THROWS_WITH_AS(q.raise_ready(-1, false), "b failed with 200", crfseg::ValueError);
  q.raise_ready(-1, false);
  CHECK(q.size() == 0);
  CHECK(log == std::vector<std::string>{"b"});  // c passed: never raised
}

TEST_CASE("deferred checks: a raise function that reads the device again does not recurse") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake a, b;
  a.done = b.done = true;
  int inner_calls = 0;
  // a's raise calls back into the queue, as a message read with Tensor::to
  // does: that call must not read b (b would run inside a's raise).
  q.push({.device = 0,
          .ready = [] { return true; },
          .wait = [] {},
          .value = [] { return int64_t{1}; },
          .raise = [&](int64_t) {
            ++inner_calls;
            q.raise_ready(0, false);
            log.push_back("a");
            throw crfseg::ValueError("a located");
          }});
  q.push(entry(0, b, 1, "b", log));
  CHECK_THROWS_WITH_AS(q.raise_ready(0, false), "a located", crfseg::ValueError);
  CHECK(inner_calls == 1);
  CHECK(log == std::vector<std::string>{"a"});
  CHECK(q.size() == 1);
  q.raise_ready(0, false);  // the guard is down again after the throw
  CHECK(log == std::vector<std::string>{"a", "b"});
}

TEST_CASE("deferred checks: raise_oldest's raise function reading the device raises nothing else") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake b;
  b.done = true;
  q.push({.device = 0,
          .ready = [] { return true; },
          .wait = [] {},
          .value = [] { return int64_t{1}; },
          .raise = [&](int64_t) {
            q.raise_ready(0, false);  // would raise b's error out of this one
            log.push_back("a");
            throw crfseg::ValueError("a located");
          }});
  q.push(entry(0, b, 200, "b", log));
  CHECK_THROWS_WITH_AS(q.raise_oldest(0), "a located", crfseg::ValueError);
  CHECK(log == std::vector<std::string>{"a"});
  CHECK_THROWS_WITH_AS(q.raise_ready(0, false), "b failed with 200", crfseg::ValueError);  // guard down again
}

TEST_CASE("deferred checks: raise_oldest reads the oldest of one device, waiting for it") {
  DeferredQueue q;
  std::vector<std::string> log;
  Fake a, b, c;
  q.push(entry(1, a, 1, "a", log));
  q.push(entry(0, b, 1, "b", log));
  q.push(entry(0, c, 1, "c", log));
  CHECK(q.raise_oldest(0));
  CHECK(b.waited == 1);
  CHECK(log == std::vector<std::string>{"b"});
  CHECK_FALSE(q.raise_oldest(2));
  CHECK(q.size() == 2);
}

TEST_CASE("deferred checks: reading with none queued is a no-op; without a device none can be queued") {
  CHECK(crfseg::cuda::deferred_checks_pending() == 0);  // this binary's ops are on the CPU
  crfseg::cuda::raise_deferred_errors(0);
  crfseg::cuda::wait_deferred_checks(0);
  CHECK(crfseg::cuda::deferred_checks_pending() == 0);
  if (crfseg::cuda::device_count() == 0) {
    CHECK_THROWS_AS(crfseg::cuda::defer_check(0, nullptr, nullptr, [](int64_t) {}), crfseg::DeviceError);
    CHECK(crfseg::cuda::deferred_checks_pending() == 0);
  }
}
