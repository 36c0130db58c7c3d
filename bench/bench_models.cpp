// bench_models: end-to-end training-step and inference time of a Segmenter
// (encoder + U-Net decoder), the number users feel.
//
//   build/bench/bench_models [--quick] [--json] [--repeats R] [--encoder unet|resnet50|vgg16|vgg16_bn]
//                            [--base W] [--depth D] [--size S] [--batch B] [--classes C]
//
// A training step is forward + cross-entropy + backward + AdamW step on a
// fixed random batch; inference is a no-grad eval-mode forward. Reports the
// median and min ms over R runs after 2 warm-up runs, and images/s. Before
// timing it checks that the loss is finite and decreases over the warm-up
// steps (a model that does not train prints no number).
// bench/peers/torch_segmenter.py times the same network in PyTorch
// (module-for-module twin) with the same arguments; scripts/bench.sh runs both.
#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "bench/support/timer.h"
#include "layers/optim/adam.h"
#include "models/segmenter.h"
#include "tensor/factory.h"
#include "tensor/random.h"

using namespace crfseg;

namespace {

constexpr const char* kUsage =
    "usage: bench_models [--quick] [--json] [--repeats R] [--encoder NAME] [--base W] [--depth D]\n"
    "                    [--size S] [--batch B] [--classes C]\n"
    "  times a Segmenter training step (forward, loss, backward, AdamW) and inference.\n";

bool parse_int(const char* s, int64_t& out) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v <= 0) return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int64_t repeats = 10, base = 16, depth = 4, size = 128, batch = 4, classes = 3;
  std::string encoder = "unet";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    int64_t* target = a == "--repeats" ? &repeats
                      : a == "--base"  ? &base
                      : a == "--depth" ? &depth
                      : a == "--size"  ? &size
                      : a == "--batch" ? &batch
                      : a == "--classes" ? &classes
                                         : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--quick") {
      repeats = 2, base = 4, depth = 2, size = 32, batch = 2;
    } else if (a == "--encoder" && has_value) {
      encoder = argv[++i];
    } else if (target != nullptr && has_value && parse_int(argv[i + 1], *target)) {
      ++i;
    } else {
      std::fprintf(stderr, "bench_models: bad argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  try {
    Generator gen(0);
    models::Segmenter net({.encoder = encoder, .in_channels = 3, .num_classes = classes, .base_width = base,
                           .depth = depth},
                          gen);
    optim::AdamW opt(net.parameters(), {.lr = 1e-3});
    const Tensor x = randn({batch, 3, size, size}, {}, gen);
    std::vector<int64_t> labels(static_cast<size_t>(batch * size * size));
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>((i / 7 + i / (7 * size)) % classes);
    const Tensor y = from_vector<int64_t>(labels, {batch, size, size});

    double first_loss = NAN, last_loss = NAN;
    auto train_step = [&] {
      opt.zero_grad();
      const Tensor loss = cross_entropy(net(x), y);
      last_loss = loss.item();
      if (std::isnan(first_loss)) first_loss = last_loss;
      backward(loss);
      opt.step();
    };
    net.train();
    const bench::Timing train = bench::time_it(train_step, 2, static_cast<int>(repeats));
    if (!std::isfinite(last_loss) || !(last_loss < first_loss)) {
      std::fprintf(stderr, "bench_models: the loss did not decrease (%g -> %g); no numbers printed\n", first_loss,
                   last_loss);
      return 1;
    }
    net.eval();
    const bench::Timing infer = bench::time_it(
        [&] {
          NoGradGuard no_grad;
          (void)net(x);
        },
        1, static_cast<int>(repeats));
    const double params = static_cast<double>(net.num_parameters());
    if (json) {
      std::printf("{\"machine\": \"%s\", \"encoder\": \"%s\", \"base\": %lld, \"depth\": %lld, \"size\": %lld, "
                  "\"batch\": %lld, \"classes\": %lld, \"parameters\": %.0f, \"train_median_ms\": %.3f, "
                  "\"train_min_ms\": %.3f, \"infer_median_ms\": %.3f, \"infer_min_ms\": %.3f}\n",
                  bench::machine_info().c_str(), encoder.c_str(), (long long)base, (long long)depth, (long long)size,
                  (long long)batch, (long long)classes, params, train.median_ms, train.min_ms, infer.median_ms,
                  infer.min_ms);
    } else {
      std::printf("# Segmenter %s (base %lld, depth %lld, %.2fM parameters), batch %lld x 3 x %lld^2, %lld classes, "
                  "%s, %lld repeats\n",
                  encoder.c_str(), (long long)base, (long long)depth, params / 1e6, (long long)batch, (long long)size,
                  (long long)classes, bench::machine_info().c_str(), (long long)repeats);
      std::printf("| impl | pass | median ms | min ms | images/s |\n|---|---|---|---|---|\n");
      std::printf("| crfseg | train step | %.1f | %.1f | %.1f |\n", train.median_ms, train.min_ms,
                  1000.0 * batch / train.median_ms);
      std::printf("| crfseg | inference | %.1f | %.1f | %.1f |\n", infer.median_ms, infer.min_ms,
                  1000.0 * batch / infer.median_ms);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_models: %s\n", e.what());
    return 1;
  }
  return 0;
}
