// Benchmark support: timing protocol (warm-up, then median and min over
// repeats, steady_clock), machine stamp, and simple argument parsing.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace crfseg::bench {

struct Timing {
  double median_ms, min_ms;
};

// Runs fn `warmup` times untimed, then appends the ms of `repeats` timed runs.
inline void time_samples(const std::function<void()>& fn, int warmup, int repeats, std::vector<double>& ms) {
  for (int i = 0; i < warmup; ++i) fn();
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
}

// Median and min of samples (at least one).
inline Timing summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

// Runs fn `warmup` times untimed, then `repeats` times timed.
inline Timing time_it(const std::function<void()>& fn, int warmup, int repeats) {
  std::vector<double> ms;
  time_samples(fn, warmup, repeats, ms);
  return summarize(std::move(ms));
}

// "CPU model, N threads, features" for stamping results.
std::string machine_info();

}  // namespace crfseg::bench
