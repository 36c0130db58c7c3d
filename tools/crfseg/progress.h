// A progress line for long loops: bar, count, elapsed<remaining (ETA from the
// mean time per step so far), and caller-supplied stats (loss, images/s,
// learning rate). On a terminal it redraws one line with '\r'; otherwise
// (logs, CI) it prints a full line at every 10% so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace crfseg::app {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::FILE* out = stderr);
  // `done` steps of `total` finished; `stats` is appended to the line.
  void update(int64_t done, const std::string& stats);
  // Prints the final line (with a newline) and the total time.
  void finish(const std::string& stats);
  double elapsed_seconds() const;

 private:
  std::string line(int64_t done, const std::string& stats) const;
  std::string label_;
  int64_t total_;
  std::FILE* out_;
  bool tty_;
  int64_t last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

// "1:02:03" or "02:03".
std::string format_duration(double seconds);

}  // namespace crfseg::app
