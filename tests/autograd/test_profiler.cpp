// The op-level profiler (autograd/profiler.h), through the layers that
// feed it: which scopes it records (module calls, backward nodes under the
// module that made them, named regions), that self times add up to the
// profiled time, that profiling changes no result, and how it behaves on
// errors.
#include <algorithm>
#include <memory>
#include <stdexcept>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/profiler.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/sequential.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::nn;

namespace {

std::shared_ptr<Sequential> small_net(Generator& gen) {
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(Conv2dOptions{.in_channels = 3, .out_channels = 5, .padding = 1}, gen),
      std::make_shared<ReLU>(),
      std::make_shared<Conv2d>(Conv2dOptions{.in_channels = 5, .out_channels = 2, .kernel_h = 1, .kernel_w = 1}, gen)});
}

// One training step's loss and gradients, inside a "step" scope.
std::vector<float> step(Sequential& net, const Tensor& x) {
  net.zero_grad();
  const profiler::Scope scope("step");
  const Tensor loss = sum(mul(net(x), net(x)));
  backward(loss);
  std::vector<float> out = loss.to_vector<float>();
  for (const Tensor& p : net.parameters()) {
    const std::vector<float> g = grad(p).to_vector<float>();
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

const profiler::Entry* find(const std::vector<profiler::Entry>& entries, const std::string& kind,
                            const std::string& detail_part) {
  for (const profiler::Entry& e : entries) {
    if (e.kind == kind && e.detail.find(detail_part) != std::string::npos) return &e;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("profiler: records module calls and backward nodes under their layer; self times add up") {
  Generator gen(7);
  auto net = small_net(gen);
  const Tensor x = randn({2, 3, 9, 7}, {}, gen);
  CHECK_FALSE(profiler::active());
  const std::vector<float> plain = step(*net, x);

  constexpr int kSteps = 3;
  std::vector<profiler::Entry> entries;
  double profiled = 0, wall = 0;
  {
    profiler::Session session;
    CHECK(profiler::active());
    for (int s = 0; s < kSteps; ++s) {
      // Profiling changes nothing: the same loss and gradients, bit for bit.
      CHECK(step(*net, x) == plain);
    }
    entries = session.entries();
    profiled = session.profiled_ms();
    wall = session.wall_ms();
    const std::string table = session.table(5);
    CHECK(table.find("| Conv2dBackward |") != std::string::npos);
    CHECK(table.find("more) |") != std::string::npos);  // more entries than the 5 rows
  }
  CHECK_FALSE(profiler::active());

  // Two calls of the net per step: each Conv2d scope twice per step.
  const profiler::Entry* conv1 = find(entries, "Conv2d", "(3 -> 5, kernel=3x3, padding=1) in [2, 3, 9, 7]");
  const profiler::Entry* conv2 = find(entries, "Conv2d", "(5 -> 2, kernel=1x1) in [2, 5, 9, 7]");
  const profiler::Entry* seq = find(entries, "Sequential", "in [2, 3, 9, 7]");
  const profiler::Entry* relu_fwd = find(entries, "ReLU", "in [2, 5, 9, 7]");
  REQUIRE(conv1 != nullptr);
  REQUIRE(conv2 != nullptr);
  REQUIRE(seq != nullptr);
  REQUIRE(relu_fwd != nullptr);
  CHECK(conv1->calls == 2 * kSteps);
  CHECK(conv2->calls == 2 * kSteps);
  CHECK(seq->calls == 2 * kSteps);
  // The backward nodes carry the scope of the module that made them.
  const profiler::Entry* conv1_bwd = find(entries, "Conv2dBackward", "Conv2d (3 -> 5, kernel=3x3");
  const profiler::Entry* conv2_bwd = find(entries, "Conv2dBackward", "Conv2d (5 -> 2, kernel=1x1");
  REQUIRE(conv1_bwd != nullptr);
  REQUIRE(conv2_bwd != nullptr);
  CHECK(conv1_bwd->calls == 2 * kSteps);
  CHECK(conv2_bwd->calls == 2 * kSteps);
  // The loss's ops ran in the "step" scope, outside every module.
  CHECK(find(entries, "SumBackward", "step") != nullptr);

  // Nested: a Sequential's total covers its children's; the step is the
  // only outermost scope, so its total is the profiled time.
  CHECK(seq->total_ms >= conv1->total_ms / 2 + conv2->total_ms / 2 - 1e-9);
  const profiler::Entry* step_entry = find(entries, "step", "");
  REQUIRE(step_entry != nullptr);
  CHECK(step_entry->calls == kSteps);
  CHECK(std::abs(step_entry->total_ms - profiled) <= 1e-6 * std::max(1.0, profiled));
  CHECK(wall >= profiled);
  for (const profiler::Entry& e : entries) {
    CHECK(e.self_ms >= -1e-9);
    CHECK(e.self_ms <= e.total_ms + 1e-9);
  }
  // Largest self time first.
  CHECK(std::is_sorted(entries.begin(), entries.end(),
                       [](const profiler::Entry& a, const profiler::Entry& b) { return a.self_ms > b.self_ms; }));
}

TEST_CASE("profiler: one session per thread; results only when every scope has closed") {
  profiler::Session session;
  CHECK_THROWS_AS(profiler::Session(), ValueError);
  {
    const profiler::Scope outer("outer");
    CHECK(profiler::innermost_label() == "outer");
    {
      const profiler::Scope inner("inner", "detail");
      CHECK(profiler::innermost_label() == "inner detail");
      CHECK_THROWS_AS(session.entries(), ValueError);
      CHECK_THROWS_AS(session.clear(), ValueError);
    }
  }
  CHECK(profiler::innermost_label().empty());
  REQUIRE(session.entries().size() == 2);
  session.clear();
  CHECK(session.entries().empty());
  CHECK(session.profiled_ms() == 0.0);
}

TEST_CASE("profiler: a scope left by an exception is dropped, and the session stays usable") {
  profiler::Session session;
  try {
    const profiler::Scope outer("outer");
    const profiler::Scope failing("failing");
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  // Nothing left open, nothing recorded for the unwound scopes.
  CHECK(session.entries().empty());
  {
    const profiler::Scope after("after");
  }
  const std::vector<profiler::Entry> entries = session.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].kind == "after");
  CHECK(entries[0].calls == 1);
}

TEST_CASE("profiler: without a session, scopes and module calls record nothing") {
  CHECK_FALSE(profiler::active());
  {
    const profiler::Scope scope("ignored");
    CHECK(profiler::innermost_label().empty());
  }
  profiler::Session session;
  CHECK(session.entries().empty());  // the scope above was not kept anywhere
}

TEST_CASE("profiler: a scope that outlives its session records nothing, even into a new one") {
  auto first = std::make_unique<profiler::Session>();
  auto scope = std::make_unique<profiler::Scope>("orphan");
  first.reset();  // the session ends with the scope still open
  profiler::Session second;
  scope.reset();  // must touch neither the dead session nor the new one
  CHECK(second.entries().empty());
  {
    const profiler::Scope ok("ok");
  }
  REQUIRE(second.entries().size() == 1);
  CHECK(second.entries()[0].kind == "ok");
}

TEST_CASE("profiler: the table keeps a long label whole") {
  profiler::Session session;
  const std::string detail(1500, 'x');
  {
    const profiler::Scope scope("long", detail);
  }
  const std::string table = session.table(10);
  CHECK(table.find("| long | " + detail + " | 1 | ") != std::string::npos);
}
