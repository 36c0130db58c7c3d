// ConvAutotuner's rules (kernels/conv_autotune.h) with a fake clock: the
// fastest candidate is kept, a tie keeps the earlier one, a key is timed
// once, keys differ by pass, geometry, element size and precision, and a
// failed timing keeps nothing. The CUDA side (the op timing real kernels)
// is in tests/cuda/test_cuda_conv.cpp.
#include <cmath>
#include <stdexcept>

#include "kernels/conv_autotune.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::kernels;
using namespace crfseg::test;

namespace {

ConvGeometry layer(int64_t C, int64_t K, int64_t HW) {
  ConvGeometry g{};
  g.N = 16, g.C = C, g.H = HW, g.W = HW, g.K = K, g.R = 3, g.S = 3, g.P = HW, g.Q = HW, g.ph = 1, g.pw = 1;
  return g;
}

}  // namespace

TEST_CASE("conv autotuner: keeps the fastest, a tie the earlier, and times each key once") {
  ConvAutotuner tuner;
  const ConvTuneKey fwd = ConvTuneKey::of(ConvPass::forward, layer(64, 64, 256), 4, 0);
  std::vector<int> timed;
  const std::map<int, double> clock = {{0, 5.0}, {1, 9.0}, {2, 3.0}, {3, 4.0}};
  auto time = [&](int c) {
    timed.push_back(c);
    return clock.at(c);
  };
  CHECK(tuner.choose(fwd, {0, 1, 2, 3}, time) == 2);
  CHECK(timed == std::vector<int>{0, 1, 2, 3});
  CHECK(tuner.choose(fwd, {0, 1, 2, 3}, time) == 2);  // kept: nothing timed again
  CHECK(timed.size() == 4);
  // A tie: the earlier candidate (the reference path first) wins.
  const ConvTuneKey bwd = ConvTuneKey::of(ConvPass::backward_input, layer(64, 64, 256), 4, 0);
  CHECK(tuner.choose(bwd, {0, 2}, [](int) { return 1.0; }) == 0);
  // Other keys are timed afresh: another pass, geometry, element size or precision.
  for (const ConvTuneKey& k : {ConvTuneKey::of(ConvPass::backward_weight, layer(64, 64, 256), 4, 0),
                               ConvTuneKey::of(ConvPass::forward, layer(64, 128, 256), 4, 0),
                               ConvTuneKey::of(ConvPass::forward, layer(64, 64, 256), 8, 0),
                               ConvTuneKey::of(ConvPass::forward, layer(64, 64, 256), 4, 2)}) {
    CAPTURE(k.str());
    timed.clear();
    CHECK(tuner.choose(k, {0, 1}, time) == 0);
    CHECK(timed == std::vector<int>{0, 1});
  }
  const auto results = tuner.results();
  REQUIRE(results.size() == 6);
  CHECK(results.at(fwd).chosen == 2);
  CHECK(results.at(fwd).times_ms == std::vector<std::pair<int, double>>{{0, 5.0}, {1, 9.0}, {2, 3.0}, {3, 4.0}});
  // The report: a row per key, the chosen time starred, untimed candidates as "-".
  const std::string report = tuner.report([](int c) { return "alg" + std::to_string(c); });
  CHECK(report.find("| forward 64 -> 64, 3x3, pad 1x1, in [16, 64, 256, 256] | 5.000 | 9.000 | 3.000* | 4.000 | alg2 |") !=
        std::string::npos);
  CHECK(report.find("| backward-input 64 -> 64, 3x3, pad 1x1, in [16, 64, 256, 256] | 1.000* | - | 1.000 | - | alg0 |") !=
        std::string::npos);
  tuner.clear();
  CHECK(tuner.results().empty());
}

TEST_CASE("conv autotuner: no candidates is an error, and a failed timing keeps nothing") {
  ConvAutotuner tuner;
  const ConvTuneKey k = ConvTuneKey::of(ConvPass::forward, layer(3, 8, 33), 4, 0);
  check_throws_with<ValueError>([&] { tuner.choose(k, {}, [](int) { return 1.0; }); },
                                "ConvAutotuner::choose: no candidate algorithm for forward 3 -> 8, 3x3");
  CHECK_THROWS_AS(tuner.choose(k, {0, 1}, [](int c) -> double {
    if (c == 1) throw std::runtime_error("out of memory");
    return 1.0;
  }), std::runtime_error);
  CHECK(tuner.results().empty());
  // A crfseg::Error (a workspace that does not fit, say) makes a candidate infinitely slow.
  CHECK(tuner.choose(k, {0, 1}, [](int c) -> double {
    if (c == 0) throw OutOfMemoryError("no room for its workspace");
    return 2.0;
  }) == 1);
  CHECK(std::isinf(tuner.results().at(k).times_ms[0].second));
  // Every candidate failing: the first is kept (running it reports its error).
  const ConvTuneKey k2 = ConvTuneKey::of(ConvPass::backward_weight, layer(3, 8, 33), 4, 0);
  CHECK(tuner.choose(k2, {0, 1}, [](int) -> double { throw OutOfMemoryError("none fits"); }) == 0);
  // The device and the workspace limit are part of the key.
  ConvTuneKey flipped = ConvTuneKey::of(ConvPass::backward_input, layer(3, 8, 33), 4, 0);
  flipped.options = 1;  // the flipped backward-input: another key
  CHECK(flipped != ConvTuneKey::of(ConvPass::backward_input, layer(3, 8, 33), 4, 0));
  CHECK(ConvTuneKey::of(ConvPass::forward, layer(3, 8, 33), 4, 0, 1) != ConvTuneKey::of(ConvPass::forward, layer(3, 8, 33), 4, 0, 0));
  CHECK(ConvTuneKey::of(ConvPass::forward, layer(3, 8, 33), 4, 0, 0, 1 << 20) !=
        ConvTuneKey::of(ConvPass::forward, layer(3, 8, 33), 4, 0, 0, 1 << 26));
}
