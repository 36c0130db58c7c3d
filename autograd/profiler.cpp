// The op-level profiler (autograd/profiler.h).
//
// A stack of open scopes: entry pushes the start time; exit pops it, adds
// the elapsed time to the entry's total, the elapsed time minus what its
// children took to its self time, and the elapsed time to the parent's
// child time. So the self times of all entries sum to the outermost
// scopes' totals exactly (up to rounding).
#include "autograd/profiler.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <map>

#include "tensor/cuda_memory.h"
#include "tensor/error.h"

namespace crfseg::profiler {

namespace {
thread_local Session* g_session = nullptr;
std::atomic<uint64_t> g_next_id{1};

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

bool active() { return g_session != nullptr; }

std::string innermost_label() {
  if (g_session == nullptr || g_session->stack_.empty()) return "";
  const Session::Open& open = g_session->stack_.back();
  return open.detail->empty() ? std::string(open.kind) : std::string(open.kind) + ' ' + *open.detail;
}

Session::Session(Device device)
    : device_(device), id_(g_next_id.fetch_add(1)), start_(std::chrono::steady_clock::now()) {
  CRFSEG_CHECK(g_session == nullptr, ValueError,
               "profiler::Session: a session is already recording on this thread (one at a time)");
  g_session = this;
}

Session::~Session() { g_session = nullptr; }

double Session::wall_ms() const { return ms_since(start_); }

void Session::sync() const {
  // Not cuda::synchronize: that raises deferred input checks, which a
  // scope's destructor could only swallow; they stay for the next read.
  if (device_.is_cuda()) cuda::wait_idle(device_.index);
}

void Session::enter(const char* kind, const std::string* detail) {
  // Work launched before the scope finishes outside it.
  sync();
  stack_.push_back({kind, detail, std::chrono::steady_clock::now(), 0.0});
}

void Session::exit() {
  sync();
  // Everything that can throw before the pop: a failed exit leaves the
  // scope on the stack for abandon() to drop, never its parent.
  const Open open = stack_.back();
  const double elapsed = ms_since(open.start);
  Entry& e = entries_[std::string(open.kind) + '\n' + *open.detail];
  stack_.pop_back();
  if (e.calls == 0) e.kind = open.kind, e.detail = *open.detail;
  ++e.calls;
  e.total_ms += elapsed;
  e.self_ms += elapsed - open.child_ms;
  if (!stack_.empty()) stack_.back().child_ms += elapsed;
}

void Session::abandon(std::string error) {
  if (!stack_.empty()) stack_.pop_back();
  if (error_.empty()) error_ = std::move(error);
}

void Session::check_complete(const char* what) const {
  CRFSEG_CHECK(error_.empty(), Error, "profiler::Session::", what, ": a scope could not be timed: ", error_);
  CRFSEG_CHECK(stack_.empty(), ValueError, "profiler::Session::", what, ": ", stack_.size(),
               " scope(s) still open; read the results after the profiled code returns");
}

std::vector<Entry> Session::entries() const {
  check_complete("entries");
  std::vector<Entry> out;
  out.reserve(entries_.size());
  for (const auto& [key, e] : entries_) out.push_back(e);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    if (a.self_ms != b.self_ms) return a.self_ms > b.self_ms;
    return a.kind != b.kind ? a.kind < b.kind : a.detail < b.detail;
  });
  return out;
}

double Session::profiled_ms() const {
  double sum = 0;
  for (const Entry& e : entries()) sum += e.self_ms;
  return sum;
}

std::string Session::table(size_t rows) const {
  const std::vector<Entry> all = entries();
  const double profiled = profiled_ms();
  auto pct = [&](double ms) { return profiled > 0 ? 100.0 * ms / profiled : 0.0; };
  char line[512];
  std::string out;
  // By kind: a Conv2d's calls at every shape together.
  std::map<std::string, Entry> kinds;
  for (const Entry& e : all) {
    Entry& k = kinds[e.kind];
    k.kind = e.kind;
    k.calls += e.calls;
    k.self_ms += e.self_ms;
  }
  std::vector<Entry> by_kind;
  for (const auto& [name, e] : kinds) by_kind.push_back(e);
  std::stable_sort(by_kind.begin(), by_kind.end(),
                   [](const Entry& a, const Entry& b) { return a.self_ms > b.self_ms; });
  std::snprintf(line, sizeof line,
                "profiled %.1f ms of %.1f ms since the session began%s\n\n| kind | calls | self ms | %% |\n"
                "|---|---|---|---|\n",
                profiled, wall_ms(), device_.is_cuda() ? " (the device synchronised at every scope edge)" : "");
  out += line;
  for (const Entry& e : by_kind) {
    std::snprintf(line, sizeof line, " | %lld | %.2f | %.1f |\n", static_cast<long long>(e.calls), e.self_ms,
                  pct(e.self_ms));
    out += "| " + e.kind + line;
  }
  out += "\n| kind | detail | calls | self ms | total ms | % |\n|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < std::min(rows, all.size()); ++i) {
    const Entry& e = all[i];
    // Kind and detail appended whole (a layer's description has no length
    // limit); only the numbers go through the buffer.
    std::snprintf(line, sizeof line, " | %lld | %.2f | %.2f | %.1f |\n", static_cast<long long>(e.calls), e.self_ms,
                  e.total_ms, pct(e.self_ms));
    out += "| " + e.kind + " | " + e.detail + line;
  }
  if (all.size() > rows) {
    double rest = 0;
    for (size_t i = rows; i < all.size(); ++i) rest += all[i].self_ms;
    std::snprintf(line, sizeof line, "| (%zu more) | | | %.2f | | %.1f |\n", all.size() - rows, rest, pct(rest));
    out += line;
  }
  return out;
}

void Session::clear() {
  CRFSEG_CHECK(stack_.empty(), ValueError, "profiler::Session::clear: ", stack_.size(), " scope(s) still open");
  entries_.clear();
  error_.clear();
}

Scope::Scope(const char* kind, std::string detail)
    : session_(g_session),
      session_id_(g_session != nullptr ? g_session->id_ : 0),
      kind_(kind),
      detail_(std::move(detail)),
      uncaught_(std::uncaught_exceptions()) {
  if (session_ != nullptr) session_->enter(kind_, &detail_);
}

Scope::~Scope() {
  // Its Session gone (or replaced, perhaps at the same address): nothing to record into.
  if (session_ == nullptr || g_session != session_ || session_->id_ != session_id_) return;
  // Unwinding: the scope's work did not finish, so it is not timed (and a
  // device error is not raised again from a destructor).
  if (std::uncaught_exceptions() > uncaught_) {
    session_->abandon("");
    return;
  }
  try {
    session_->exit();
  } catch (const std::exception& e) {
    session_->abandon(e.what());
  }
}

}  // namespace crfseg::profiler
