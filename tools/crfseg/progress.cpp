// Progress line; see progress.h.
#include "tools/crfseg/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace crfseg::app {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::FILE* out)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), out_(out),
      tty_(::isatty(::fileno(out)) != 0), start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::line(int64_t done, const std::string& stats) const {
  constexpr int kWidth = 24;
  const double frac = std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0);
  const int filled = static_cast<int>(frac * kWidth);
  const double elapsed = elapsed_seconds();
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : NAN;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s [%s] %lld/%lld %s<%s", label_.c_str(), bar.c_str(), static_cast<long long>(done),
                static_cast<long long>(total_), format_duration(elapsed).c_str(), format_duration(eta).c_str());
  return std::string(buf) + (stats.empty() ? "" : "  " + stats);
}

void Progress::update(int64_t done, const std::string& stats) {
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K", line(done, stats).c_str());
    std::fflush(out_);
    return;
  }
  const int64_t decile = done * 10 / total_;
  if (decile != last_decile_ && decile < 10) {
    last_decile_ = decile;
    std::fprintf(out_, "%s\n", line(done, stats).c_str());
    std::fflush(out_);
  }
}

void Progress::finish(const std::string& stats) {
  std::fprintf(out_, tty_ ? "\r%s\033[K\n" : "%s\n", line(total_, stats).c_str());
  std::fflush(out_);
}

}  // namespace crfseg::app
