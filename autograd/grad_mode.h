// Grad mode: whether ops record the graph. Thread-local, as in c10's GradMode.
//
// NoGradGuard turns recording off for a scope (evaluation, optimizer steps,
// finite differences). It is separate from a module's eval() mode, which
// changes what BatchNorm and Dropout compute, not whether a graph is built.
#pragma once

namespace crfseg {

struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace crfseg
