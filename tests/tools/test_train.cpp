// The crfseg program end to end, in process, through the same functions the
// command line runs: training resumed mid-epoch ends with the same weights
// as an uninterrupted run; one epoch on tiny Oxford-IIIT Pet and micro-CT
// folders; eval and predict on the result; and bad inputs that fail with a
// clear error while the existing checkpoint stays byte-identical.
#include <filesystem>
#include <limits>
#include <fstream>
#include <sstream>

#include "datasets/image_io.h"
#include "datasets/tiff.h"
#include "tensor/cuda_memory.h"
#include "tensor/safetensors.h"
#include "tests/datasets/fixtures.h"
#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"
#include "tools/crfseg/args.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/model_spec.h"

using namespace crfseg;
using namespace crfseg::test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The checkpoint's model and optimizer tensors, by name.
std::vector<std::pair<std::string, std::vector<double>>> state_of(const std::string& path) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (const auto& [name, t] : load_safetensors(path).tensors) out.emplace_back(name, values(t));
  return out;
}

// Two runs' last checkpoints hold the same tensors, bit for bit.
void check_same_state(const std::string& run_a, const std::string& run_b) {
  const auto a = state_of(run_a + "/last.safetensors"), b = state_of(run_b + "/last.safetensors");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(a[i].second == b[i].second);
  }
}

// A tiny slice stack: 6 slices of 12x12, 16-bit PNG images, labels as one
// multi-page TIFF; class 1 is a bright disc whose radius grows with z.
void make_microct_folder(const fs::path& root) {
  fs::create_directories(root / "images");
  fs::create_directories(root / "labels");
  std::vector<data::Image> labels;
  for (int64_t z = 0; z < 6; ++z) {
    auto inside = [z](int64_t y, int64_t x) { return (y - 6) * (y - 6) + (x - 6) * (x - 6) <= (2 + z / 2) * (2 + z / 2); };
    data::save_png((root / "images" / ("slice_" + std::to_string(z) + ".png")).string(),
                   make_image(12, 12, 1, 16, [&](int64_t y, int64_t x, int64_t) { return inside(y, x) ? 40000 : 9000; }));
    labels.push_back(make_image(12, 12, 1, 8, [&](int64_t y, int64_t x, int64_t) { return inside(y, x) ? 1 : 0; }));
  }
  data::write_tiff((root / "labels" / "labels.tif").string(), labels);
}

const std::vector<std::string> kTiny = {"--size", "16", "--base", "4", "--depth", "2", "--batch", "4", "--quiet"};

}  // namespace

TEST_CASE("train: a run killed mid-epoch and resumed ends with the same weights") {
  TempDir dir;
  const std::vector<std::string> args = with(kTiny, {"--data", "synth:24", "--synth-size", "16", "--epochs", "2",
                                                     "--crf", "--workers", "2", "--seed", "3", "--checkpoint-every",
                                                     "2"});
  const std::string straight = dir.file("straight"), resumed = dir.file("resumed");
  REQUIRE(app::run_train(with(args, {"--out", straight})) == 0);
  // 24 images / batch 4 = 6 batches per epoch: stop in epoch 1 at step 3,
  // then in epoch 2 at step 8, then finish.
  REQUIRE(app::run_train(with(args, {"--out", resumed, "--stop-after", "3"})) == 0);
  REQUIRE(app::run_train(with(args, {"--out", resumed, "--resume", "--stop-after", "8"})) == 0);
  REQUIRE(app::run_train(with(args, {"--out", resumed, "--resume"})) == 0);
  check_same_state(straight, resumed);
  // Resuming with another seed (another data order) is refused.
  check_throws_with<app::UsageError>([&] { app::run_train(with(args, {"--out", resumed, "--resume", "--seed", "4"})); },
                                     "used --seed 3, not 4");
  // Starting afresh over an existing run is refused (nothing is lost).
  check_throws_with<app::UsageError>([&] { app::run_train(with(args, {"--out", resumed})); },
                                     "already holds a run");
}

TEST_CASE("train: a resumed run keeps its loss; another --loss is refused") {
  TempDir dir;
  const std::vector<std::string> args = with(kTiny, {"--data", "synth:16", "--synth-size", "16", "--epochs", "1",
                                                     "--seed", "5"});
  const std::string straight = dir.file("straight"), resumed = dir.file("resumed");
  REQUIRE(app::run_train(with(args, {"--out", straight, "--loss", "dice"})) == 0);
  REQUIRE(app::run_train(with(args, {"--out", resumed, "--loss", "dice", "--stop-after", "2"})) == 0);
  check_throws_with<app::UsageError>(
      [&] { app::run_train(with(args, {"--out", resumed, "--resume", "--loss", "ce"})); },
      "used --loss dice, not ce");
  // Without --loss the run goes on with its own (the default, ce, would
  // give other weights).
  REQUIRE(app::run_train(with(args, {"--out", resumed, "--resume"})) == 0);
  check_same_state(straight, resumed);
}

TEST_CASE("train one epoch on Oxford-IIIT Pet and micro-CT folders, then eval and predict") {
  TempDir dir;
  make_pets_folder(dir.file("pets"));
  REQUIRE(app::run_train(with(kTiny, {"--data", "pets:" + dir.file("pets"), "--epochs", "1", "--val-fraction",
                                      "0.34", "--out", dir.file("pets_run")})) == 0);
  CHECK(fs::exists(dir.file("pets_run/best.safetensors")));
  CHECK(fs::exists(dir.file("pets_run/curves.svg")));
  REQUIRE(app::run_eval({"--checkpoint", dir.file("pets_run/best.safetensors"), "--workers", "0"}) == 0);
  const std::string confusion = read_bytes(dir.file("pets_run/eval_test_confusion.csv"));
  CHECK(confusion.rfind("truth\\predicted,pet,background,border\n", 0) == 0);

  make_microct_folder(dir.file("ct"));
  REQUIRE(app::run_train(with(kTiny, {"--data", "microct:" + dir.file("ct"), "--epochs", "1", "--size", "12",
                                      "--out", dir.file("ct_run")})) == 0);
  std::ifstream csv(dir.file("ct_run/metrics.csv"));
  std::string header, row, extra;
  std::getline(csv, header);
  std::getline(csv, row);
  CHECK(row.rfind("1,", 0) == 0);
  CHECK_FALSE(std::getline(csv, extra));
  REQUIRE(app::run_predict({"--checkpoint", dir.file("ct_run/last.safetensors"), "--out", dir.file("pred"),
                            dir.file("ct/images")}) == 0);
  const data::Image mask = data::load_image(dir.file("pred/slice_0_mask.png"));
  CHECK(mask.height == 12);
  CHECK(fs::exists(dir.file("pred/slice_5_overlay.png")));
}

TEST_CASE("eval and predict take --device: on a GPU the same masks as on the CPU, without one a clear error") {
  TempDir dir;
  make_microct_folder(dir.file("ct"));
  // 13 x 13: the depth-2 U-Net pads its input (on the input's device) to 16.
  REQUIRE(app::run_train(with(kTiny, {"--data", "microct:" + dir.file("ct"), "--epochs", "1", "--size", "13",
                                      "--crf", "--out", dir.file("run")})) == 0);
  const std::string ckpt = dir.file("run/last.safetensors");
  REQUIRE(app::run_eval({"--checkpoint", ckpt, "--workers", "0", "--device", "cpu", "--pictures", "1", "--out",
                         dir.file("eval_cpu")}) == 0);
  REQUIRE(app::run_predict({"--checkpoint", ckpt, "--device", "cpu", "--size", "13", "--out", dir.file("pred_cpu"),
                            dir.file("ct/images")}) == 0);
  // A reduced precision is for CUDA GEMMs only, and only three are known.
  check_throws_with<app::UsageError>(
      [&] { app::run_predict({"--checkpoint", ckpt, "--precision", "bf16", dir.file("ct/images")}); },
      "--precision bf16 applies to CUDA GEMMs; use it with --device cuda");
  check_throws_with<app::UsageError>([&] { app::run_eval({"--checkpoint", ckpt, "--precision", "fp16"}); },
                                     "--precision: matmul precision: expected fp32, tf32 or bf16, got 'fp16'");
  if (cuda::device_count() == 0) {
    // (crfseg built without CUDA, or no GPU visible: CI's case)
    check_throws_with<DeviceError>([&] { app::run_eval({"--checkpoint", ckpt, "--device", "cuda"}); },
                                   "--device cuda:0: ");
    check_throws_with<DeviceError>(
        [&] { app::run_predict({"--checkpoint", ckpt, "--device", "cuda", dir.file("ct/images")}); },
        "; use --device cpu");
    check_throws_with<app::UsageError>([&] { app::run_predict({"--checkpoint", ckpt, "--device", "gpu", "x"}); },
                                       "--device must be cpu, cuda or cuda:N, got 'gpu'");
    return;
  }
  REQUIRE(app::run_eval({"--checkpoint", ckpt, "--workers", "0", "--device", "cuda", "--pictures", "1", "--out",
                         dir.file("eval_gpu")}) == 0);
  REQUIRE(app::run_predict({"--checkpoint", ckpt, "--device", "cuda", "--size", "13", "--out", dir.file("pred_gpu"),
                            dir.file("ct/images")}) == 0);
  // The devices sum in different orders, so a pixel whose two classes tie
  // to rounding may flip; no more than 1% of them.
  int64_t differ = 0, total = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "slice_" + std::to_string(i) + "_mask.png";
    const data::Image a = data::load_image(dir.file("pred_cpu/" + name));
    const data::Image b = data::load_image(dir.file("pred_gpu/" + name));
    REQUIRE(a.pixels.size() == b.pixels.size());
    for (size_t k = 0; k < a.pixels.size(); ++k) differ += a.pixels[k] != b.pixels[k];
    total += static_cast<int64_t>(a.pixels.size());
  }
  MESSAGE(differ, " of ", total, " mask pixels differ between the CPU and the GPU");
  CHECK(differ * 100 <= total);
  // eval's confusion matrices: the same counts to 1% of the pixels.
  auto counts = [&](const std::string& folder) {
    std::ifstream in(dir.file(folder + "/eval_test_confusion.csv"));
    std::string line, cell;
    std::getline(in, line);  // the header
    std::vector<int64_t> c;
    while (std::getline(in, line)) {
      std::stringstream row(line);
      std::getline(row, cell, ',');  // the class name
      while (std::getline(row, cell, ',')) c.push_back(std::stoll(cell));
    }
    return c;
  };
  const std::vector<int64_t> on_cpu = counts("eval_cpu"), on_gpu = counts("eval_gpu");
  REQUIRE(on_cpu.size() == on_gpu.size());
  int64_t moved = 0, pixels = 0;
  for (size_t k = 0; k < on_cpu.size(); ++k) {
    moved += std::abs(on_cpu[k] - on_gpu[k]);
    pixels += on_cpu[k];
  }
  CHECK(pixels > 0);
  CHECK(moved * 100 <= 2 * pixels);  // each flipped pixel moves two counts
  // BF16 tensor-core inputs on the device run through (their masks may
  // differ more: this tiny model's margins are small).
  REQUIRE(app::run_predict({"--checkpoint", ckpt, "--device", "cuda", "--precision", "bf16", "--size", "13", "--out",
                            dir.file("pred_bf16"), dir.file("ct/images")}) == 0);
  CHECK(data::load_image(dir.file("pred_bf16/slice_0_mask.png")).height == 13);
}

TEST_CASE("bad inputs fail with a clear error and leave the checkpoint untouched") {
  TempDir dir;
  make_pets_folder(dir.file("pets"));
  const std::string out = dir.file("run");
  const std::vector<std::string> base = with(kTiny, {"--data", "pets:" + dir.file("pets"), "--out", out,
                                                     "--val-fraction", "0.34", "--workers", "2"});
  REQUIRE(app::run_train(with(base, {"--epochs", "1"})) == 0);
  const std::string before = read_bytes(out + "/last.safetensors");
  REQUIRE(!before.empty());
  auto unchanged = [&] { CHECK(read_bytes(out + "/last.safetensors") == before); };
  const std::vector<std::string> resume = with(base, {"--epochs", "2", "--resume"});

  SUBCASE("a corrupt JPEG") {
    write_text(dir.file("pets/images/pet_a.jpg"), "\xFF\xD8\xFF this is not a JPEG");
    check_throws_with<IOError>([&] { app::run_train(resume); }, "pet_a.jpg");
    unchanged();
  }
  SUBCASE("a mask of the wrong size") {
    data::save_png(dir.file("pets/annotations/trimaps/pet_a.png"), pet_trimap(5, 7));
    check_throws_with<ShapeError>([&] { app::run_train(resume); }, "pet_a");
    unchanged();
  }
  SUBCASE("a missing split file") {
    fs::remove(dir.file("pets/annotations/test.txt"));
    check_throws_with<IOError>([&] { app::run_train(resume); }, "test.txt");
    unchanged();
  }
  SUBCASE("an empty folder") {
    fs::create_directories(dir.file("empty/images"));
    fs::create_directories(dir.file("empty/masks"));
    check_throws_with<IOError>([&] { app::run_train(with(kTiny, {"--data", "folder:" + dir.file("empty"), "--out", out,
                                                                 "--resume"})); },
                               "image folder '" + dir.file("empty/images") + "' holds no images");
    unchanged();
  }
  SUBCASE("an unknown encoder name") {
    check_throws_with<app::UsageError>([&] { app::run_train(with(base, {"--encoder", "alexnet", "--overwrite"})); },
                                       "unknown encoder 'alexnet'");
    unchanged();
  }
}

TEST_CASE("a diverging run stops at the first non-finite loss, keeping the last good checkpoint") {
  TempDir dir;
  const std::string out = dir.file("run");
  const std::vector<std::string> args = with(kTiny, {"--data", "synth:16", "--synth-size", "16", "--epochs", "3",
                                                     "--optimizer", "sgd", "--momentum", "0", "--lr", "1e6",
                                                     "--schedule", "none", "--checkpoint-every", "1",
                                                     "--out", out});
  // Either guard may fire first: a non-finite loss or gradient (the step is
  // not applied), or non-finite state found when checkpointing (not saved).
  std::string message;
  try {
    app::run_train(args);
  } catch (const ValueError& e) {
    message = e.what();
  }
  INFO(message);
  const bool named = message.find("non-finite") != std::string::npos ||
                     message.find("the loss is") != std::string::npos ||
                     message.find("the gradient norm is") != std::string::npos;
  CHECK(named);
  CHECK(message.find("last good checkpoint") != std::string::npos);
  CHECK(message.find(out + "/last.safetensors") != std::string::npos);
  // The checkpoint on disk holds finite weights: the diverging step was never saved.
  for (const auto& named : state_of(out + "/last.safetensors")) {
    INFO(named.first);
    for (double x : named.second) REQUIRE(std::isfinite(x));
  }
}

TEST_CASE("a non-finite weight is traced to the layer whose output it poisons") {
  TempDir dir;
  const std::vector<std::string> base = with(kTiny, {"--data", "synth:8", "--synth-size", "16", "--epochs", "1"});
  app::run_train(with(base, {"--out", dir.file("good")}));
  // Poison one convolution's weight in the middle of the network.
  SafetensorsFile f = load_safetensors(dir.file("good/last.safetensors"));
  std::string poisoned;
  int64_t convs = 0;
  for (auto& [name, t] : f.tensors) {
    if (name.rfind("model.", 0) != 0 || t.dim() != 4 || ++convs != 3) continue;
    poisoned = name.substr(6, name.size() - 6 - 7);  // "model." ... ".weight"
    REQUIRE(name.substr(name.size() - 7) == ".weight");
    t.data<float>()[t.numel() / 2] = std::numeric_limits<float>::infinity();
  }
  REQUIRE(!poisoned.empty());
  std::map<std::string, std::string> meta = f.metadata;
  save_safetensors(dir.file("poisoned.safetensors"), f.tensors, meta);
  std::string message;
  try {
    app::run_train(with(base, {"--init", dir.file("poisoned.safetensors"), "--out", dir.file("bad")}));
  } catch (const ValueError& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("the loss is NaN at epoch 1, batch 1 (step 1)") != std::string::npos);
  CHECK(message.find("the first non-finite activation is the output of " + poisoned + " (Conv2d)") !=
        std::string::npos);
  CHECK(message.find("non-finite weights in " + poisoned + ".weight") != std::string::npos);
  CHECK(message.find("no checkpoint was written yet") != std::string::npos);
}

TEST_CASE("--crf-lr-mult needs a CRF") {
  TempDir dir;
  check_throws_with<app::UsageError>(
      [&] {
        app::run_train(with(kTiny, {"--data", "synth:8", "--synth-size", "16", "--crf-lr-mult", "10", "--out",
                                    dir.file("run")}));
      },
      "--crf-lr-mult needs a model with --crf");
}

TEST_CASE("--crf-param: convergent by default, free on request, recorded in the checkpoint; old checkpoints are free") {
  TempDir dir;
  const std::vector<std::string> run = with(kTiny, {"--data", "synth:8", "--synth-size", "16", "--epochs", "1", "--crf",
                                                    "--crf-iters", "2", "--crf-eval-iters", "2"});
  app::run_train(with(run, {"--out", dir.file("conv")}));
  app::run_train(with(run, {"--crf-param", "free", "--out", dir.file("free")}));
  const SafetensorsFile conv = load_safetensors(dir.file("conv") + "/last.safetensors");
  const SafetensorsFile free_file = load_safetensors(dir.file("free") + "/last.safetensors");
  CHECK(conv.metadata.at("user.model.crf_parametrization") == "convergent");
  CHECK(free_file.metadata.at("user.model.crf_parametrization") == "free");
  auto has = [](const SafetensorsFile& f, const std::string& name) {
    for (const auto& [n, t] : f.tensors) {
      if (n == name) return true;
    }
    return false;
  };
  CHECK(has(conv, "model.final.spatial_factor"));
  CHECK(has(conv, "model.final.compatibility"));  // the fixed Potts buffer
  CHECK(!has(conv, "model.final.spatial_weights"));
  CHECK(has(free_file, "model.final.spatial_weights"));
  // Metadata without the key (written before the option existed) reads as free.
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : free_file.metadata) {
    if (k.rfind("user.", 0) == 0 && k != "user.model.crf_parametrization") meta[k.substr(5)] = v;
  }
  CHECK(app::model_spec_from_metadata(meta).crf_options.parametrization == crf::CrfParametrization::free);
  meta["model.crf_parametrization"] = "psd";
  check_throws_with<IOError>([&] { app::model_spec_from_metadata(meta); },
                             "checkpoint metadata 'model.crf_parametrization': expected free or convergent, got 'psd'");
  check_throws_with<app::UsageError>(
      [&] { app::run_train(with(run, {"--crf-param", "psd", "--out", dir.file("bad")})); },
      "--crf-param: expected free or convergent, got 'psd'");
  // Both evaluate.
  CHECK(app::run_eval({"--checkpoint", dir.file("conv") + "/last.safetensors", "--data", "synth:8", "--synth-size", "16",
                       "--out", dir.file("conv")}) == 0);
}

TEST_CASE("train --profile writes where N steps' time went, and stops at the epoch's end") {
  TempDir dir;
  const std::vector<std::string> args = with(kTiny, {"--data", "synth:24", "--synth-size", "16", "--epochs", "2",
                                                     "--crf", "--workers", "0"});
  // 6 batches per epoch: steps 2 to 4.
  REQUIRE(app::run_train(with(args, {"--out", dir.file("a"), "--profile", "3"})) == 0);
  const std::string a = read_bytes(dir.file("a") + "/profile.md");
  CHECK(a.find("3 training steps (2 to 4)") != std::string::npos);
  for (const char* row : {"| Conv2dBackward | Conv2d (", "| CrfRnn", "| CRF bilateral lattices |",
                          "| CRF mean-field iterations |", "| optimizer |", "| backward |", "| loss |", "| data |"}) {
    INFO(std::string(row));
    CHECK(a.find(row) != std::string::npos);
  }
  // More steps than the epoch has left: the profile ends with the epoch (2 to 6).
  REQUIRE(app::run_train(with(args, {"--out", dir.file("b"), "--profile", "50"})) == 0);
  CHECK(read_bytes(dir.file("b") + "/profile.md").find("5 training steps (2 to 6)") != std::string::npos);
}
