// Training checkpoints: a run resumed from a checkpoint takes bit-identical
// steps (model, AdamW moments, cosine schedule and data RNG all restored);
// loads that fail leave every part as it was; weights-only loading.
#include <fstream>
#include <iterator>

#include "models/checkpoint.h"
#include "models/segmenter.h"
#include "layers/optim/adam.h"
#include "layers/optim/sgd.h"
#include "tensor/safetensors.h"
#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

models::SegmenterConfig tiny_config() {
  return {.encoder = "unet", .in_channels = 2, .num_classes = 3, .base_width = 4, .depth = 2};
}

// One optimizer step on a batch drawn from `data` (so the RNG matters).
void train_step(models::Segmenter& net, optim::Optimizer& opt, optim::LRScheduler& sched, Generator& data) {
  const Tensor x = randn({2, 2, 12, 10}, {}, data);
  std::vector<int64_t> labels(2 * 12 * 10);
  for (auto& l : labels) l = static_cast<int64_t>(data.next_u32() % 3);
  const Tensor y = from_vector<int64_t>(labels, {2, 12, 10});
  opt.zero_grad();
  backward(cross_entropy(net(x), y));
  opt.step();
  sched.step();
}

std::vector<std::vector<double>> weights_of(const nn::Module& m) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, t] : m.state_dict()) out.push_back(values(t));
  return out;
}

struct Run {
  Generator init;
  models::Segmenter net;
  optim::AdamW opt;
  optim::CosineAnnealingLR sched;
  Generator data;
  explicit Run(uint64_t seed)
      : init(seed), net(tiny_config(), init), opt(net.parameters(), {.lr = 0.01, .weight_decay = 0.01}),
        sched(opt, {.T_max = 6, .warmup = {.steps = 2}}), data(seed + 100) {}
  models::TrainingParts parts() { return {&net, &opt, &sched, &data}; }
};

}  // namespace

TEST_CASE("a resumed run takes bit-identical steps") {
  TempDir dir;
  Run straight(1);
  for (int i = 0; i < 6; ++i) train_step(straight.net, straight.opt, straight.sched, straight.data);

  {
    Run first(1);
    for (int i = 0; i < 3; ++i) train_step(first.net, first.opt, first.sched, first.data);
    models::save_training_checkpoint(dir.file("ckpt.safetensors"), first.parts(),
                                     {.epoch = 1, .step = 3, .best_metric = 0.25}, {{"encoder", "unet"}});
  }
  Run resumed(7);  // different initial weights and data stream: all must come from the file
  const models::LoadedCheckpoint loaded = models::load_training_checkpoint(dir.file("ckpt.safetensors"),
                                                                            resumed.parts());
  CHECK(loaded.progress.epoch == 1);
  CHECK(loaded.progress.step == 3);
  CHECK(loaded.progress.best_metric == 0.25);
  CHECK(loaded.user_metadata.at("encoder") == "unet");
  CHECK(resumed.opt.step_count() == 3);
  CHECK(resumed.sched.last_epoch() == 3);
  for (int i = 0; i < 3; ++i) train_step(resumed.net, resumed.opt, resumed.sched, resumed.data);
  CHECK(weights_of(resumed.net) == weights_of(straight.net));
  CHECK(resumed.opt.lr() == straight.opt.lr());
}

TEST_CASE("a checkpoint that does not fit changes nothing") {
  TempDir dir;
  Run source(1);
  train_step(source.net, source.opt, source.sched, source.data);
  const std::string path = dir.file("ckpt.safetensors");
  models::save_training_checkpoint(path, source.parts(), {.epoch = 1, .step = 1});

  Run target(2);
  train_step(target.net, target.opt, target.sched, target.data);
  const auto weights_before = weights_of(target.net);
  const auto moments_before = target.opt.state_tensors();
  std::vector<std::vector<double>> moment_values;
  for (const auto& [n, t] : moments_before) moment_values.push_back(values(t));
  const std::string rng_before = target.data.state();
  auto unchanged = [&] {
    CHECK(weights_of(target.net) == weights_before);
    std::vector<std::vector<double>> now;
    for (const auto& [n, t] : target.opt.state_tensors()) now.push_back(values(t));
    CHECK(now == moment_values);
    CHECK(target.data.state() == rng_before);
    CHECK(target.sched.last_epoch() == 1);
  };

  SUBCASE("optimizer state that does not match: the model is rolled back") {
    // Same model, but the file's AdamW state lacks amsgrad's buffer.
    Generator g(2);
    models::Segmenter net(tiny_config(), g);
    optim::AdamW opt(net.parameters(), {.lr = 0.01, .amsgrad = true});
    optim::CosineAnnealingLR sched(opt, {.T_max = 6});
    Generator data(5);
    const auto before = weights_of(net);
    check_throws_with<ValueError>(
        [&] { models::load_training_checkpoint(path, {&net, &opt, &sched, &data}); },
        "load_training_checkpoint(" + path + "): AdamW: load_state: entry 'param.0.max_exp_avg_sq' is missing");
    CHECK(weights_of(net) == before);
  }
  SUBCASE("another optimizer kind") {
    optim::SGD sgd(target.net.parameters(), {.lr = 0.1});
    check_throws_with<ValueError>([&] { models::load_training_checkpoint(path, {&target.net, &sgd, &target.sched,
                                                                                &target.data}); },
                                  "the file holds AdamW state but the optimizer is SGD");
    unchanged();
  }
  SUBCASE("another model shape") {
    Generator g(3);
    models::SegmenterConfig wide = tiny_config();
    wide.base_width = 6;
    models::Segmenter net(wide, g);
    optim::AdamW opt(net.parameters(), {});
    optim::CosineAnnealingLR sched(opt, {.T_max = 6});
    Generator data(5);
    const auto before = weights_of(net);
    check_throws_with<ShapeError>([&] { models::load_training_checkpoint(path, {&net, &opt, &sched, &data}); },
                                  "load_training_checkpoint(" + path + "): ");
    CHECK(weights_of(net) == before);
  }
  SUBCASE("missing parts") {
    check_throws_with<ValueError>([&] { models::load_training_checkpoint(path, {&target.net, &target.opt}); },
                                  "the file holds scheduler state but the caller passed none");
    unchanged();
  }
  SUBCASE("a file that is not a checkpoint, or no file") {
    save_safetensors(dir.file("weights.safetensors"), target.net.state_dict());
    check_throws_with<IOError>([&] { models::load_training_checkpoint(dir.file("weights.safetensors"),
                                                                      target.parts()); },
                               "not a crfseg training checkpoint");
    check_throws_with<IOError>([&] { models::load_training_checkpoint(dir.file("absent"), target.parts()); },
                               "absent");
    unchanged();
  }
  SUBCASE("a corrupted or truncated checkpoint") {
    std::ifstream in(path, std::ios::binary);
    const std::string good{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto write = [&](const std::string& bytes) {
      std::ofstream out(dir.file("bad.safetensors"), std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    };
    std::string flipped = good;
    flipped[good.size() - 100] ^= 0x10;  // one bit of the last tensor
    write(flipped);
    check_throws_with<IOError>([&] { models::load_training_checkpoint(dir.file("bad.safetensors"), target.parts()); },
                               "checksum mismatch");
    write(good.substr(0, good.size() / 2));
    check_throws_with<IOError>([&] { models::load_training_checkpoint(dir.file("bad.safetensors"), target.parts()); },
                               "truncated?");
    // A damaged checksum key turns the safetensors check off; checkpoint
    // readers notice that it is missing.
    std::string rekeyed = good;
    rekeyed.replace(rekeyed.find(kSafetensorsChecksumKey), 6, "crfsef");
    write(rekeyed);
    check_throws_with<IOError>([&] { models::load_training_checkpoint(dir.file("bad.safetensors"), target.parts()); },
                               "has no 'crfseg.crc32c' checksum entry");
    check_throws_with<IOError>([&] { models::load_weights(dir.file("bad.safetensors"), target.net); },
                               "load_weights(" + dir.file("bad.safetensors") + "): the checkpoint has no");
    unchanged();
  }
}

TEST_CASE("load_weights reads checkpoints and plain weight files") {
  TempDir dir;
  Run source(1);
  train_step(source.net, source.opt, source.sched, source.data);
  models::save_training_checkpoint(dir.file("ckpt.safetensors"), source.parts(), {});
  save_safetensors(dir.file("plain.safetensors"), source.net.state_dict());
  for (const char* file : {"ckpt.safetensors", "plain.safetensors"}) {
    Generator g(9);
    models::Segmenter net(tiny_config(), g);
    models::load_weights(dir.file(file), net);
    CHECK(weights_of(net) == weights_of(source.net));
  }
  Generator g(9);
  models::SegmenterConfig other = tiny_config();
  other.num_classes = 4;
  models::Segmenter net(other, g);
  check_throws_with<ShapeError>([&] { models::load_weights(dir.file("plain.safetensors"), net); },
                                "load_weights(" + dir.file("plain.safetensors") + "): ");
}
