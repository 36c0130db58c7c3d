// Benchmark support: timing protocol (warm-up, then median and min over
// repeats, steady_clock), machine stamp, and simple argument parsing.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
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

// One of the implementations timed side by side.
struct Contender {
  std::string name;
  bool verified;  // only verified contenders are timed
  std::function<void()> run;
  std::vector<double> ms;
};

// Times the contenders in alternated blocks: each round gives every one a
// warm-up call and `block` timed calls, in forward order on even rounds and
// reverse order on odd ones, until each has `repeats` samples, with `pause`
// before each block. Alternating spreads the machine's slow phases over all
// contenders instead of landing on whoever ran during them (on the shared
// development VM a layer's time moves by 20-30% between phases).
inline void time_alternated(std::vector<Contender>& contenders, int repeats, int block,
                            std::chrono::milliseconds pause) {
  for (int done = 0, round = 0; done < repeats; done += block, ++round) {
    const int take = std::min(block, repeats - done);
    for (size_t i = 0; i < contenders.size(); ++i) {
      Contender& c = contenders[round % 2 == 0 ? i : contenders.size() - 1 - i];
      if (!c.verified) continue;
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
      time_samples(c.run, 1, take, c.ms);
    }
  }
}

// "CPU model, N threads, features" for stamping results.
std::string machine_info();

}  // namespace crfseg::bench
