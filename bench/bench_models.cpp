// bench_models: end-to-end training-step and inference time of a Segmenter
// (encoder + U-Net decoder), the number users feel.
//
//   build/bench/bench_models [--quick] [--json] [--repeats R] [--warmup W] [--encoder unet|resnet50|vgg16|vgg16_bn]
//                            [--base W] [--depth D] [--size S] [--batch B] [--classes C]
//                            [--optimizer adamw|sgd] [--crf] [--encoder-forward] [--device cpu|cuda[:N]]
//                            [--precision fp32|tf32|bf16] [--input noise|shapes] [--profile STEPS]
//                            [--prefetch]
//
// A training step is forward + cross-entropy + backward + optimizer step
// (AdamW at lr 1e-3, or SGD at lr 1e-2 with momentum 0.9) on a fixed batch; inference is a
// no-grad eval-mode forward. --crf adds the CRF-RNN final layer (5
// iterations in training), and then also times R pairs of steps with the
// layer switched on and off in the same process, in alternating order
// (the layer's share of the step). --input picks the batch: uniform noise (the
// default; the convolutions do not care, but it is the CRF lattice's worst
// case, one lattice point per pixel vertex) or the synthetic shapes of
// datasets/synthetic.h with their masks as labels (a natural image's
// lattice, 10-30x smaller). --encoder-forward times only the encoder's eval forward
// (e.g. ResNet-50 to layer4, torchvision's resnet50 without avgpool/fc)
// and skips training. Reports the median and min ms over R runs after W
// warm-up runs (2), images/s, the process's peak resident memory and the
// machine's measured FMA peak (--json). With --device cuda the model and the
// batch live on the GPU, each timed run ends with a device synchronisation,
// and the JSON adds the device's peak allocated memory. Before timing it checks that the
// loss is finite and decreases over the warm-up steps (a model that does
// not train prints no number).
// --prefetch (with --crf on CUDA): right after each step's forward is
// queued, the next step's bilateral lattices (the same batch here) start
// building on a host thread from the host copy of the batch
// (CrfRnn::prefetch_lattices, as `crfseg train` does one batch ahead), so
// the build overlaps the rest of the step on the GPU.
// --profile STEPS runs that many more training steps (after the timed ones)
// under the op-level profiler (autograd/profiler.h) and prints where their
// time went: self time by kind (Conv2d forward, Conv2dBackward, ...), then
// by layer and shape. On a GPU the profiler synchronises at every scope
// edge, so those steps are slower than the timed ones; the shares are the
// point.
// bench/peers/torch_segmenter.py times the same network in PyTorch
// (module-for-module twin) with the same arguments; scripts/bench.sh runs both.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include <sys/resource.h>

#include "bench/support/peak.h"
#include "bench/support/timer.h"
#include "crf/bilateral_prefetch.h"
#include "crf/crf_rnn.h"
#include "datasets/synthetic.h"
#include "kernels/conv_autotune.h"
#include "layers/optim/adam.h"
#include "layers/optim/sgd.h"
#include "models/segmenter.h"
#include "tensor/cuda_memory.h"
#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/conv2d.h"
#endif
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace crfseg;

namespace {

constexpr const char* kUsage =
    "usage: bench_models [--quick] [--json] [--repeats R] [--warmup W] [--encoder NAME] [--base W] [--depth D]\n"
    "                    [--size S] [--batch B] [--classes C] [--optimizer adamw|sgd] [--crf] [--encoder-forward]\n"
    "                    [--device cpu|cuda[:N]] [--precision fp32|tf32|bf16] [--input noise|shapes]\n"
    "                    [--profile STEPS] [--prefetch]\n"
    "  times a Segmenter training step (forward, loss, backward, optimizer) and inference.\n";

// Peak resident set size of this process so far, in MiB (Linux: ru_maxrss is in KiB).
double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

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
  int64_t repeats = 10, warmup = 2, base = 16, depth = 4, size = 128, batch = 4, classes = 3, profile_steps = 0;
  std::string encoder = "unet", optimizer = "adamw";
  bool with_crf = false, encoder_forward = false, prefetch = false;
  std::string device_name = "cpu", precision_name = "fp32", input = "noise";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    int64_t* target = a == "--repeats" ? &repeats
                      : a == "--warmup"  ? &warmup
                      : a == "--base"  ? &base
                      : a == "--depth" ? &depth
                      : a == "--size"  ? &size
                      : a == "--batch" ? &batch
                      : a == "--classes" ? &classes
                      : a == "--profile" ? &profile_steps
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
    } else if (a == "--optimizer" && has_value && (std::string(argv[i + 1]) == "adamw" || std::string(argv[i + 1]) == "sgd")) {
      optimizer = argv[++i];
    } else if (a == "--device" && has_value) {
      device_name = argv[++i];
    } else if (a == "--precision" && has_value) {
      precision_name = argv[++i];
    } else if (a == "--input" && has_value && (std::string(argv[i + 1]) == "noise" || std::string(argv[i + 1]) == "shapes")) {
      input = argv[++i];
    } else if (a == "--crf") {
      with_crf = true;
    } else if (a == "--prefetch") {
      prefetch = true;
    } else if (a == "--encoder-forward") {
      encoder_forward = true;
    } else if (target != nullptr && has_value && parse_int(argv[i + 1], *target)) {
      ++i;
    } else {
      std::fprintf(stderr, "bench_models: bad argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  if (profile_steps > 0 && (json || encoder_forward)) {
    std::fprintf(stderr,
                 "bench_models: --profile prints a table of training steps; not with --json or --encoder-forward\n");
    return 2;
  }
  // The FMA probe (cached) before any step: run after them, it would share
  // the cores with worker threads still spinning from the last step.
  bench::measured_peak_gflops();
  try {
    const Device device = Device::parse(device_name);
#ifdef CRFSEG_WITH_CUDA
    const char* conv_path = kernels::cuda::conv_algorithm_name(kernels::cuda::conv_algorithm());
#else
    const char* conv_path = "";
#endif
    // (The JSON records this precision: the check against a hand-written
    // production SGEMM's own keeps that true.)
    const cuda::MatmulPrecision precision_value =
        cuda::parse_matmul_precision_for("--precision", precision_name, device.is_cuda());
    const cuda::MatmulPrecisionGuard precision(precision_value);
    // Device work is asynchronous: every timed run ends by waiting for it.
    auto sync = [&] {
      if (device.is_cuda()) cuda::synchronize(device.index);
    };
    Generator gen(0);
    models::Segmenter net({.encoder = encoder, .in_channels = 3, .num_classes = classes, .base_width = base,
                           .depth = depth},
                          gen);
    std::shared_ptr<crf::CrfRnn> crf_layer;
    if (with_crf) {
      crf_layer = std::make_shared<crf::CrfRnn>(crf::CrfRnnOptions{
          .num_classes = classes, .image_scale = 255.0, .parametrization = crf::CrfParametrization::convergent});
      net.set_final_layer(crf_layer, crf_layer->as_final_layer());
    }
    // Images on [0, 1]: the CRF sees them on 0-255 (image_scale).
    Tensor x, y;
    if (input == "noise") {
      x = rand({batch, 3, size, size}, {}, gen);
      std::vector<int64_t> labels(static_cast<size_t>(batch * size * size));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>((i / 7 + i / (7 * size)) % classes);
      y = from_vector<int64_t>(labels, {batch, size, size});
    } else {
      const data::SyntheticDataset shapes({.size = batch, .height = size, .width = size, .channels = 3,
                                           .num_classes = std::clamp<int64_t>(classes, 2, 4)});
      std::vector<Tensor> images, masks;
      for (int64_t i = 0; i < batch; ++i) {
        data::Sample s = shapes.get(i);
        images.push_back(s.image);
        masks.push_back(s.mask);
      }
      x = ops::stack(images, 0);
      y = ops::stack(masks, 0);
    }
    y = y.to(device);
    net.to(device);
    const Tensor x_dev = x.to(device);

    bench::Timing train{NAN, NAN}, infer{NAN, NAN};
    std::vector<double> with_layer, without_layer;  // --crf: paired steps (below)
    std::string profile_table;                       // --profile
    if (encoder_forward) {
      net.eval();
      infer = bench::time_it(
          [&] {
            NoGradGuard no_grad;
            (void)net.encoder->features(x_dev);
            sync();
          },
          static_cast<int>(warmup), static_cast<int>(repeats));
    } else {
      std::unique_ptr<optim::Optimizer> opt;
      if (optimizer == "sgd") opt = std::make_unique<optim::SGD>(net.parameters(), optim::SGDOptions{.lr = 1e-2, .momentum = 0.9});
      else opt = std::make_unique<optim::AdamW>(net.parameters(), optim::AdamWOptions{.lr = 1e-3});
      // The sanity check: every loss finite, and some later loss below the first.
      double first_loss = NAN, best_later = INFINITY;
      bool all_finite = true;
      // Its parts are profiler scopes, which record only under --profile.
      // --prefetch: whether the next step runs the CRF layer (and so takes the prefetch).
      bool next_runs_crf = true;
      auto train_step = [&] {
        {
          const profiler::Scope scope("zero_grad");
          opt->zero_grad();
        }
        const Tensor logits = net(x_dev);
        // The next step's lattices (the same batch here), as crfseg train reads one batch ahead.
        if (prefetch && crf_layer && net.final_layer_enabled() && next_runs_crf) {
          crf_layer->prefetch_lattices(x, x_dev);
        }
        const Tensor loss = [&] {
          const profiler::Scope scope("loss");
          return cross_entropy(logits, y);
        }();
        {
          const profiler::Scope scope("backward");
          backward(loss);
        }
        {
          const profiler::Scope scope("optimizer");
          opt->step();
        }
        // Read once the step is queued, as PyTorch's peer step reads
        // nothing: on a GPU a read before the backward would drain the
        // queue mid-step.
        const double v = loss.item();
        all_finite = all_finite && std::isfinite(v);
        if (std::isnan(first_loss)) first_loss = v;
        else best_later = std::min(best_later, v);
        sync();
      };
      net.train();
      train = bench::time_it(train_step, static_cast<int>(warmup), static_cast<int>(repeats));
      if (with_crf) {
        // The CRF-RNN's share of the step, measured in this process: steps
        // with the layer and without it (the same network, its final layer
        // switched off), in pairs whose order alternates, so that the
        // machine's drift falls on both sides. Separate processes differ by
        // more than the layer costs on a shared VM.
        // (--prefetch: only a step with the layer prefetches, and only for a
        // next step with it, so a step without it never shares the host
        // with a build; a step with it after one without builds inline.)
        for (int64_t r = 0; r < repeats; ++r) {
          for (int k = 0; k < 2; ++k) {
            const bool on = (r + k) % 2 == 0;
            next_runs_crf = (r + 1) % 2 == 0;  // step 2r + k + 1's "on", for k = 0 and 1 alike
            net.enable_final_layer(on);
            (on ? with_layer : without_layer).push_back(bench::time_it(train_step, 0, 1).median_ms);
          }
        }
        net.enable_final_layer(true);
        next_runs_crf = true;
      }
      if (!all_finite || !(best_later < first_loss)) {
        std::fprintf(stderr, "bench_models: the loss did not decrease (first %g, best later %g); no numbers printed\n",
                     first_loss, best_later);
        return 1;
      }
      if (profile_steps > 0) {
        // After the timed steps (and their check), so that their numbers are the unprofiled ones.
        profiler::Session session(device);
        for (int64_t s = 0; s < profile_steps; ++s) train_step();
        profile_table = session.table(30);
      }
      net.eval();
      infer = bench::time_it(
          [&] {
            NoGradGuard no_grad;
            (void)net(x_dev);
            sync();
          },
          1, static_cast<int>(repeats));
    }
    const double params = static_cast<double>(net.num_parameters());
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v.empty() ? NAN : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    const double paired_with = median(with_layer), paired_without = median(without_layer);
    auto json_ms = [](double ms) {  // null for a pass not run
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", ms);
      return std::isfinite(ms) ? std::string(b) : std::string("null");
    };
    if (json) {
      std::printf("{\"machine\": \"%s\", \"encoder\": \"%s\", \"base\": %lld, \"depth\": %lld, \"size\": %lld, "
                  "\"batch\": %lld, \"classes\": %lld, \"crf\": %s, \"optimizer\": \"%s\", \"encoder_forward\": %s, "
                  "\"parameters\": %.0f, \"train_median_ms\": %s, \"train_min_ms\": %s, \"infer_median_ms\": %.3f, "
                  "\"infer_min_ms\": %.3f, \"peak_rss_mib\": %.1f, \"peak_gflops\": %.1f, \"device\": \"%s\", "
                  "\"device_peak_mib\": %.1f, \"precision\": \"%s\", \"input\": \"%s\", "
                  "\"paired_with_crf_ms\": %s, \"paired_without_crf_ms\": %s}\n",
                  bench::machine_info().c_str(), encoder.c_str(), (long long)base, (long long)depth, (long long)size,
                  (long long)batch, (long long)classes, with_crf ? "true" : "false", optimizer.c_str(),
                  encoder_forward ? "true" : "false", params, json_ms(train.median_ms).c_str(),
                  json_ms(train.min_ms).c_str(), infer.median_ms,
                  infer.min_ms, peak_rss_mib(), bench::measured_peak_gflops(), device.str().c_str(),
                  device.is_cuda() ? cuda::memory_stats(device.index).peak_allocated_bytes / 1048576.0 : 0.0,
                  precision_name.c_str(), input.c_str(), json_ms(paired_with).c_str(), json_ms(paired_without).c_str());
    } else {
      std::printf("# Segmenter %s%s (base %lld, depth %lld, %.2fM parameters), batch %lld x 3 x %lld^2, %lld classes, "
                  "%s, %s, %lld repeats, %s %s%s%s%s\n",
                  encoder.c_str(), with_crf ? " + CRF-RNN" : "", (long long)base, (long long)depth, params / 1e6,
                  (long long)batch, (long long)size, (long long)classes, optimizer.c_str(), bench::machine_info().c_str(),
                  (long long)repeats, device.str().c_str(), precision_name.c_str(),
                  device.is_cuda() ? ", convolutions: " : "", device.is_cuda() ? conv_path : "",
                  prefetch && with_crf ? ", lattices prefetched" : "");
      std::printf("| impl | pass | median ms | min ms | images/s |\n|---|---|---|---|---|\n");
      if (!encoder_forward) {
        std::printf("| crfseg | train step | %.1f | %.1f | %.1f |\n", train.median_ms, train.min_ms,
                    1000.0 * batch / train.median_ms);
      }
      std::printf("| crfseg | %s | %.1f | %.1f | %.1f |\n", encoder_forward ? "encoder forward" : "inference",
                  infer.median_ms, infer.min_ms, 1000.0 * batch / infer.median_ms);
      if (with_crf && !encoder_forward) {
        std::printf("CRF-RNN share, paired steps in this process: %.1f ms with the layer, %.1f without (%+.1f%%)\n",
                    paired_with, paired_without, 100.0 * (paired_with - paired_without) / paired_without);
      }
      if (prefetch && with_crf) {
        std::printf("bilateral lattices: %lld forwards took a prefetch\n",
                    static_cast<long long>(crf::prefetched_bilateral_hits()));
      }
      std::printf("peak resident memory %.0f MiB\n", peak_rss_mib());
      if (device.is_cuda()) std::printf("%s", cuda::memory_summary(device.index).c_str());
#ifdef CRFSEG_WITH_CUDA
      if (!kernels::conv_autotuner().results().empty()) {
        // CRFSEG_CUDA_CONV=auto: each layer's passes with every algorithm's time (ms, the kept one starred).
        std::printf("\n## Convolution algorithms, timed per pass and layer (CRFSEG_CUDA_CONV=auto)\n%s",
                    kernels::conv_autotuner()
                        .report([](int c) {
                          return std::string(kernels::cuda::conv_algorithm_name(
                              static_cast<kernels::cuda::ConvAlgorithm>(c)));
                        })
                        .c_str());
      }
#endif
      if (!profile_table.empty()) {
        std::printf("\n## Profile of %lld training steps (autograd/profiler.h)\n%s", (long long)profile_steps,
                    profile_table.c_str());
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_models: %s\n", e.what());
    return 1;
  }
  return 0;
}
