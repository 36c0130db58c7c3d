// The crfseg program's parts: confusion-matrix metrics on a hand-worked
// case, the argument parser's errors, the metrics CSV round trip and the SVG
// plot, and duration formatting.
#include <array>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"
#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/gemm/gemm.h"
#endif
#include "tools/crfseg/args.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/data_spec.h"
#include "tools/crfseg/device_option.h"
#include "tools/crfseg/metrics.h"
#include "tools/crfseg/progress.h"
#include "tools/crfseg/report.h"

using namespace crfseg;
using namespace crfseg::test;
using namespace crfseg::app;

TEST_CASE("confusion matrix metrics on a hand-worked case") {
  ConfusionMatrix m(3, /*ignore_index=*/255);
  // truth:      0 0 0 1 1 2 | 255 (ignored)
  // prediction: 0 0 1 1 2 2 | 0
  m.add(from_vector<int64_t>({0, 0, 1, 1, 2, 2, 0}, {1, 7}), from_vector<int64_t>({0, 0, 0, 1, 1, 2, 255}, {1, 7}));
  CHECK(m.total() == 6);
  CHECK(m.count(0, 0) == 2);
  CHECK(m.count(0, 1) == 1);
  CHECK(m.count(1, 2) == 1);
  CHECK(m.pixel_accuracy() == doctest::Approx(4.0 / 6));
  // class 0: TP 2, FP 0, FN 1 -> IoU 2/3, Dice 4/5
  CHECK(m.iou(0) == doctest::Approx(2.0 / 3));
  CHECK(m.dice(0) == doctest::Approx(0.8));
  // class 1: TP 1, FP 1, FN 1 -> IoU 1/3; class 2: TP 1, FP 1, FN 0 -> IoU 1/2
  CHECK(m.iou(1) == doctest::Approx(1.0 / 3));
  CHECK(m.iou(2) == doctest::Approx(0.5));
  CHECK(m.mean_iou() == doctest::Approx((2.0 / 3 + 1.0 / 3 + 0.5) / 3));
  // Logits take the argmax over dim 1.
  ConfusionMatrix from_logits(2);
  from_logits.add_logits(from_vector<float>({0.9f, 0.1f, 0.2f, 0.8f}, {1, 2, 1, 2}),
                         from_vector<int64_t>({0, 0}, {1, 1, 2}));
  CHECK(from_logits.count(0, 0) == 1);
  CHECK(from_logits.count(0, 1) == 1);
  // A class absent from both sides has no IoU and stays out of the mean.
  CHECK(std::isnan(from_logits.iou(1)) == false);
  ConfusionMatrix absent(3);
  absent.add(from_vector<int64_t>({0, 1}, {2}), from_vector<int64_t>({0, 1}, {2}));
  CHECK(std::isnan(absent.iou(2)));
  CHECK(absent.mean_iou() == 1.0);
  CHECK(m.table({"pet", "background", "border"}).find("| border | 0.5000 |") != std::string::npos);
  CHECK(m.csv({"a", "b", "c"}) == "truth\\predicted,a,b,c\na,2,1,0\nb,0,1,1\nc,0,0,1\n");
  check_throws_with<ValueError>([&] { m.add(from_vector<int64_t>({3}, {1}), from_vector<int64_t>({0}, {1})); },
                                "class outside [0, 3) at flat index 0: target 0, prediction 3");
  check_throws_with<ShapeError>([&] { m.add(from_vector<int64_t>({0, 0}, {2}), from_vector<int64_t>({0}, {1})); },
                                "differ in shape");
}

// The band by its definition: every pixel's whole clipped square, searched.
static std::vector<int64_t> boundary_band_brute_force(const std::vector<int64_t>& t, int64_t planes, int64_t h,
                                                      int64_t w, int64_t width, int64_t ignore) {
  std::vector<int64_t> out = t;
  for (int64_t n = 0; n < planes; ++n) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t mine = t[(n * h + y) * w + x];
        bool differs = false;
        for (int64_t j = y - width; j <= y + width; ++j) {
          for (int64_t i = x - width; i <= x + width; ++i) {
            if (j < 0 || j >= h || i < 0 || i >= w) continue;
            const int64_t v = t[(n * h + j) * w + i];
            differs = differs || (v != ignore && v != mine);
          }
        }
        if (!differs) out[(n * h + y) * w + x] = ignore;
      }
    }
  }
  return out;
}

TEST_CASE("confusion counts on the predictions' device, with targets from either" *
          doctest::skip(cuda::device_count() == 0)) {
  // evaluate() adds device predictions with boundary-band targets made on the host.
  ConfusionMatrix host(3), mixed(3);
  const Tensor p = from_vector<int64_t>({0, 1, 2, 2, 1, 0}, {2, 3});
  const Tensor t = from_vector<int64_t>({0, 2, 2, -100, 1, 1}, {2, 3});
  host.add(p, t);
  host.add(p, t);
  mixed.add(p.to(Device::cuda(0)), t);
  mixed.add(p.to(Device::cuda(0)), t.to(Device::cuda(0)));
  CHECK(mixed.counts() == host.counts());
  CHECK(mixed.counts() == std::vector<int64_t>{2, 0, 0, 2, 2, 0, 0, 2, 2});
  // The counts stay on the device until read; a copy made between adds
  // keeps its own (the device counts are replaced, never written in place).
  mixed.add(p.to(Device::cuda(0)), t);
  ConfusionMatrix copy = mixed;
  mixed.add(p.to(Device::cuda(0)), t);
  CHECK(copy.total() == 15);
  CHECK(mixed.total() == 20);
  // A bad class: raised at the read (at the add under CRFSEG_CUDA_SYNC=1),
  // and that batch adds nothing.
  const Tensor bad = from_vector<int64_t>({0, 1, 2, 3, 3, 0}, {2, 3});  // index 3's target is ignored
  check_throws_with<ValueError>([&] {
    mixed.add(bad.to(Device::cuda(0)), t);
    (void)mixed.counts();
  }, "class outside [0, 3) at flat index 4: target 1, prediction 3");
  CHECK(mixed.total() == 20);
  host.merge(copy);
  CHECK(host.total() == 25);
}

TEST_CASE("boundary band: a hand-worked case, then the brute-force definition on awkward shapes") {
  // 1 x 6 row: labels 0 0 0 1 1 1; width 1 keeps the two pixels at the change.
  const Tensor row = from_vector<int64_t>({0, 0, 0, 1, 1, 1}, {1, 6});
  CHECK(boundary_band_targets(row, 1, -1).to_vector<int64_t>() == std::vector<int64_t>{-1, -1, 0, 1, -1, -1});
  CHECK(boundary_band_targets(row, 2, -1).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 0, 1, 1, -1});
  // An ignored pixel is not a different label: 0 0 ign 0 0 has no band.
  CHECK(boundary_band_targets(from_vector<int64_t>({0, 0, 9, 0, 0}, {1, 5}), 3, 9).to_vector<int64_t>() ==
        std::vector<int64_t>(5, 9));
  // Confusion inside the band: a prediction wrong only at the edge pixel.
  ConfusionMatrix band(2, -1);
  band.add(from_vector<int64_t>({0, 0, 0, 0, 1, 1}, {1, 6}), boundary_band_targets(row, 1, -1));
  CHECK(band.total() == 2);
  CHECK(band.mean_iou() == doctest::Approx(0.25));  // class 0: 1/2, class 1: 0/1
  std::mt19937 rng(7);
  for (const std::array<int64_t, 3>& dims : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {2, 1, 13}, {3, 17, 1}, {2, 7, 11}, {1, 31, 29}}) {
    // Plain variables, not a structured binding: CAPTURE's lambda cannot name one in clang.
    const int64_t planes = dims[0], h = dims[1], w = dims[2];
    for (int64_t width : {0, 1, 2, 5}) {
      // Blocky labels (runs of 3) with a few ignored pixels, so bands are neither empty nor everything.
      std::vector<int64_t> t(static_cast<size_t>(planes * h * w));
      for (size_t i = 0; i < t.size(); ++i) t[i] = (i % 3 == 0) ? static_cast<int64_t>(rng() % 4) : t[i - 1];
      for (size_t i = 0; i < t.size(); i += 11) t[i] = 255;
      const Tensor got = boundary_band_targets(from_vector<int64_t>(t, {planes, h, w}), width, 255);
      CAPTURE(planes);
      CAPTURE(h);
      CAPTURE(w);
      CAPTURE(width);
      CHECK(got.to_vector<int64_t>() == boundary_band_brute_force(t, planes, h, w, width, 255));
    }
  }
  check_throws_with<ValueError>([&] { boundary_band_targets(row, -1); }, "band width >= 0, got -1");
  check_throws_with<ShapeError>([&] { boundary_band_targets(from_vector<int64_t>({0}, {1}), 1); }, "[..., H, W]");
  check_throws_with<DTypeError>([&] { boundary_band_targets(from_vector<float>({0}, {1, 1}), 1); }, "i64 targets");
}

TEST_CASE("argument parser") {
  auto make = [] {
    ArgParser p("crfseg train", "Trains a model.");
    p.option("--epochs", "N", "10", "epochs").option("--lr", "X", "0.001", "learning rate").flag("--crf", "add a CRF");
    return p;
  };
  ArgParser p = make();
  SUBCASE("values, defaults, both syntaxes") {
    REQUIRE(p.parse({"--epochs", "3", "--lr=0.5", "--crf"}));
    CHECK(p.get_int("--epochs") == 3);
    CHECK(p.get_double("--lr") == 0.5);
    CHECK(p.flag_set("--crf"));
    ArgParser q = make();
    REQUIRE(q.parse({}));
    CHECK(q.get_int("--epochs") == 10);
    CHECK_FALSE(q.given("--epochs"));
  }
  SUBCASE("help") {
    CHECK_FALSE(p.parse({"--help"}));
    CHECK(p.help().find("--epochs N") != std::string::npos);
    CHECK(p.help().find("(default: 10)") != std::string::npos);
  }
  SUBCASE("errors") {
    check_throws_with<UsageError>([&] { p.parse({"--epoch", "3"}); }, "unknown option '--epoch'");
    check_throws_with<UsageError>([&] { make().parse({"--epochs"}); }, "option '--epochs' needs a value (N)");
    check_throws_with<UsageError>([&] { make().parse({"stray"}); }, "unexpected argument 'stray'");
    check_throws_with<UsageError>([&] { make().parse({"--crf=1"}); }, "option '--crf' takes no value");
    ArgParser bad = make();
    REQUIRE(bad.parse({"--epochs", "three", "--lr", "-1"}));
    check_throws_with<UsageError>([&] { bad.get_int("--epochs"); }, "--epochs expects an integer, got 'three'");
    check_throws_with<UsageError>([&] { bad.get_double("--lr", 0.0); }, "--lr must be in [0, ");
  }
}

TEST_CASE("subcommand parsers and --data parsing without opening anything") {
  for (ArgParser p : {info_parser(), train_parser(), eval_parser(), predict_parser()}) {
    CHECK_FALSE(p.names().empty());
    CHECK_FALSE(p.parse({"--help"}));
  }
  auto spec = [](const std::vector<std::string>& args) {
    ArgParser p = train_parser();
    REQUIRE(p.parse(args));
    return parse_data_spec(p);
  };
  const DataSpec synth = spec({"--data", "synth:16", "--synth-size", "32"});
  CHECK(synth.kind == "synth");
  CHECK(synth.synth_count == 16);
  CHECK(synth.synth_size == 32);
  CHECK(synth.dir.empty());
  CHECK(synth.synth_noise == 0.06);
  const DataSpec noisy = spec({"--data", "synth", "--synth-noise", "0.2", "--synth-blur", "0"});
  CHECK(noisy.synth_noise == 0.2);
  CHECK(noisy.synth_blur == 0);
  // Parsing names the folder but does not look at it.
  const DataSpec pets = spec({"--data", "pets:/no/such/folder", "--pets-border", "ignore", "--val-fraction", "0.5"});
  CHECK(pets.dir == "/no/such/folder");
  CHECK(pets.pets_border == data::TrimapBorder::ignore);
  CHECK(pets.val_fraction == 0.5);
  check_throws_with<UsageError>([&] { spec({"--data", "synth:99999999999999999999"}); }, "needs a positive count");
  check_throws_with<UsageError>([&] { spec({"--data", "synth:0"}); }, "needs a positive count");
  check_throws_with<UsageError>([&] { spec({"--data", "synth", "--synth-noise", "-0.1"}); }, "--synth-noise");
  check_throws_with<UsageError>([&] { spec({"--data", "nope"}); }, "unknown --data kind 'nope'");
  check_throws_with<UsageError>([&] { spec({"--data", "folder:"}); }, "--data folder:DIR needs a directory");
  check_throws_with<UsageError>([&] { spec({"--data", "folder:/d", "--channels", "2"}); }, "--channels must be 1 or 3");
}

TEST_CASE("metrics CSV round trip and SVG curves") {
  TempDir dir;
  const std::string csv = dir.file("metrics.csv");
  {
    MetricsLog log(csv, {"fg", "bg"});
    log.load(0);  // no file yet: empty
    for (int e = 1; e <= 3; ++e) {
      log.append({.epoch = e, .lr = 0.1 / e, .seconds = 2.0, .train_loss = 1.0 / e, .train_acc = 0.5,
                  .train_miou = 0.3 * e, .train_dice = 0.4, .val_loss = 1.2 / e, .val_acc = 0.6,
                  .val_miou = 0.25 * e, .val_dice = 0.5, .val_boundary_miou = 0.1 * e, .val_iou = {0.2 * e, 0.3 * e}});
    }
    log.write_svg(dir.file("curves.svg"), "synthetic <unet>");
  }
  MetricsLog resumed(csv, {"fg", "bg"});
  resumed.load(2);  // a run resumed after epoch 2 drops epoch 3's row
  REQUIRE(resumed.rows().size() == 2);
  CHECK(resumed.rows()[1].val_miou == doctest::Approx(0.5));
  CHECK(resumed.rows()[1].val_boundary_miou == doctest::Approx(0.2));
  CHECK(resumed.rows()[1].val_iou[1] == doctest::Approx(0.6));
  std::ifstream svg(dir.file("curves.svg"));
  std::stringstream text;
  text << svg.rdbuf();
  CHECK(text.str().rfind("<svg", 0) == 0);
  CHECK(text.str().find("synthetic &lt;unet&gt;") != std::string::npos);
  CHECK(text.str().find("<polyline") != std::string::npos);
  CHECK(dir.entries() == 2);  // no temporary files left behind
  MetricsLog other(csv, {"a", "b", "c"});
  check_throws_with<IOError>([&] { other.load(5); }, "does not start with the expected header");
  // A file from before val_boundary_miou resumes (the column NaN) and is rewritten in the new form.
  const std::string old_csv = dir.file("old_metrics.csv");
  {
    std::ofstream f(old_csv);
    f << "epoch,lr,seconds,train_loss,train_acc,train_miou,train_dice,val_loss,val_acc,val_miou,val_dice,"
         "val_iou_fg,val_iou_bg\n1,0.1,2,1,0.5,0.3,0.4,1.2,0.6,0.25,0.5,0.2,0.3\n";
  }
  MetricsLog old_log(old_csv, {"fg", "bg"});
  old_log.load(1);
  REQUIRE(old_log.rows().size() == 1);
  CHECK(old_log.rows()[0].val_miou == doctest::Approx(0.25));
  CHECK(std::isnan(old_log.rows()[0].val_boundary_miou));
  CHECK(old_log.rows()[0].val_iou[1] == doctest::Approx(0.3));
  old_log.append({.epoch = 2, .val_miou = 0.5, .val_boundary_miou = 0.4, .val_iou = {0.1, 0.2}});
  std::ifstream rewritten(old_csv);
  std::string header_line;
  std::getline(rewritten, header_line);
  CHECK(header_line.find(",val_dice,val_boundary_miou,val_iou_fg,") != std::string::npos);
  check_throws_with<IOError>(
      [&] {
        std::ofstream(old_csv) << "epoch,lr,seconds,train_loss,train_acc,train_miou,train_dice,val_loss,val_acc,"
                                  "val_miou,val_dice,val_iou_fg,val_iou_bg\n1,0.1,2\n";
        MetricsLog(old_csv, {"fg", "bg"}).load(1);
      },
      "line 2 has 3 fields; expected 13");
}

TEST_CASE("durations") {
  CHECK(format_duration(0) == "00:00");
  CHECK(format_duration(125.4) == "02:05");
  CHECK(format_duration(3723) == "1:02:03");
  CHECK(format_duration(NAN) == "--:--");
}

TEST_CASE("--precision: values, devices, and a hand-written production SGEMM's own precision") {
  CHECK(parse_precision_option("fp32", Device::cpu()) == cuda::MatmulPrecision::fp32);
  check_throws_with<UsageError>([] { parse_precision_option("fp16", Device::cpu()); }, "--precision:");
  check_throws_with<UsageError>([] { parse_precision_option("bf16", Device::cpu()); }, "use it with --device cuda");
#ifdef CRFSEG_WITH_CUDA
  // No device is needed to parse: the option is checked against the
  // production SGEMM's precision (cuBLAS takes any). Whatever
  // CRFSEG_CUDA_SGEMM says, the guard starts from cuBLAS and restores it.
  struct ProductionGuard {
    std::string previous = kernels::cuda::set_sgemm_production("cublas");
    ~ProductionGuard() { kernels::cuda::set_sgemm_production(previous); }
  } guard;
  CHECK(parse_precision_option("bf16", Device::cuda(0)) == cuda::MatmulPrecision::bf16);
  kernels::cuda::set_sgemm_production("v4_float4_dbuf");  // FP32
  CHECK(parse_precision_option("fp32", Device::cuda(0)) == cuda::MatmulPrecision::fp32);
  check_throws_with<UsageError>([] { parse_precision_option("bf16", Device::cuda(0)); },
                                "--precision bf16: the production SGEMM v4_float4_dbuf (CRFSEG_CUDA_SGEMM) multiplies "
                                "at fp32; ask for fp32 or leave CRFSEG_CUDA_SGEMM unset");
  kernels::cuda::set_sgemm_production("v9_bf16_wgmma");
  check_throws_with<UsageError>([] { parse_precision_option("fp32", Device::cuda(0)); }, "multiplies at bf16");
  CHECK(parse_precision_option("bf16", Device::cuda(0)) == cuda::MatmulPrecision::bf16);
#endif
}
