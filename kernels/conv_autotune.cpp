// ConvAutotuner (see conv_autotune.h).
#include "kernels/conv_autotune.h"

#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include "tensor/error.h"

namespace crfseg::kernels {

const char* conv_pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::forward: return "forward";
    case ConvPass::backward_input: return "backward-input";
    case ConvPass::backward_weight: return "backward-weight";
  }
  return "?";
}

ConvTuneKey ConvTuneKey::of(ConvPass pass, const ConvGeometry& g, int element_bytes, int precision, int device,
                            int64_t workspace_limit) {
  ConvTuneKey k;
  k.pass = pass;
  k.N = g.N, k.C = g.C, k.H = g.H, k.W = g.W, k.K = g.K, k.R = g.R, k.S = g.S;
  k.sh = g.sh, k.sw = g.sw, k.ph = g.ph, k.pw = g.pw, k.dh = g.dh, k.dw = g.dw;
  k.element_bytes = element_bytes;
  k.precision = precision;
  k.device = device;
  k.workspace_limit = workspace_limit;
  return k;
}

std::string ConvTuneKey::str() const {
  std::ostringstream s;
  s << conv_pass_name(pass) << " " << C << " -> " << K << ", " << R << "x" << S;
  if (sh != 1 || sw != 1) s << ", stride " << sh << "x" << sw;
  if (ph != 0 || pw != 0) s << ", pad " << ph << "x" << pw;
  if (dh != 1 || dw != 1) s << ", dilation " << dh << "x" << dw;
  s << ", in [" << N << ", " << C << ", " << H << ", " << W << "]";
  if (element_bytes != 4) s << ", " << element_bytes << "-byte elements";
  return s.str();
}

int ConvAutotuner::choose(const ConvTuneKey& key, const std::vector<int>& candidates,
                          const std::function<double(int)>& time_ms) {
  CRFSEG_CHECK(!candidates.empty(), ValueError, "ConvAutotuner::choose: no candidate algorithm for ", key.str());
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (const auto it = results_.find(key); it != results_.end()) return it->second.chosen;
  }
  // Timed without the lock: other threads' lookups (and their timings of
  // other keys) need not wait for this key's GPU runs.
  ConvTuneResult r;
  double best = 0;
  for (const int c : candidates) {
    double t = 0;
    try {
      t = time_ms(c);
    } catch (const Error&) {
      t = std::numeric_limits<double>::infinity();  // e.g. its workspace did not fit: never chosen over one that ran
    }
    r.times_ms.emplace_back(c, t);
    if (r.chosen < 0 || t < best) r.chosen = c, best = t;  // strictly faster: a tie keeps the earlier one
  }
  std::lock_guard<std::mutex> guard(lock_);
  return results_.emplace(key, r).first->second.chosen;  // another thread's result, if it finished first
}

std::map<ConvTuneKey, ConvTuneResult> ConvAutotuner::results() const {
  std::lock_guard<std::mutex> guard(lock_);
  return results_;
}

std::string ConvAutotuner::report(const std::function<std::string(int)>& name) const {
  const std::map<ConvTuneKey, ConvTuneResult> all = results();
  std::set<int> columns;
  for (const auto& [key, r] : all)
    for (const auto& [c, t] : r.times_ms) columns.insert(c);
  std::ostringstream s;
  s << "| convolution pass |";
  for (const int c : columns) s << " " << name(c) << " ms |";
  s << " chosen |\n|---|";
  for (size_t i = 0; i <= columns.size(); ++i) s << "---|";
  s << "\n";
  for (const auto& [key, r] : all) {
    s << "| " << key.str() << " |";
    for (const int c : columns) {
      bool timed = false;
      for (const auto& [cc, t] : r.times_ms) {
        if (cc != c) continue;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", t);
        s << " " << buf << (c == r.chosen ? "*" : "") << " |";
        timed = true;
      }
      if (!timed) s << " - |";
    }
    s << " " << name(r.chosen) << " |\n";
  }
  return s.str();
}

void ConvAutotuner::clear() {
  std::lock_guard<std::mutex> guard(lock_);
  results_.clear();
}

ConvAutotuner& conv_autotuner() {
  static ConvAutotuner tuner;
  return tuner;
}

}  // namespace crfseg::kernels
