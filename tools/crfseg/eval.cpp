// `crfseg eval`: a trained checkpoint on one split of a dataset; prints the
// metrics table and writes the confusion matrix (CSV) and the table (markdown).
#include <omp.h>

#include <cstdio>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "crf/crf_rnn.h"
#include "datasets/augment.h"
#include "tensor/ops.h"
#include "tools/crfseg/checkpoint_model.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/data_spec.h"
#include "tools/crfseg/device_option.h"
#include "tools/crfseg/evaluate.h"
#include "tools/crfseg/pictures.h"
#include "tools/crfseg/report.h"

namespace crfseg::app {

ArgParser eval_parser() {
  ArgParser p("crfseg eval", "Evaluates a checkpoint: pixel accuracy, per-class IoU and Dice, confusion matrix.");
  p.option("--checkpoint", "FILE", "", "a checkpoint written by crfseg train (best.safetensors, last.safetensors)");
  add_data_options(p);
  p.option("--split", "NAME", "test", "which split: train, val or test (see --data)")
      .option("--size", "S", "", "evaluate at S x S (default: the training size; 0 = native size)")
      .option("--batch", "B", "8", "batch size")
      .option("--workers", "N", "2", "data-loading threads")
      .option("--threads", "N", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)")
      .option("--device", "NAME", "cpu", "cpu, cuda or cuda:N")
      .option("--precision", "P", "fp32", "CUDA GEMMs and convolutions: fp32, or tf32 / bf16 tensor-core inputs")
      .option("--seed", "N", "", "data seed (default: the training seed, so splits match)")
      .option("--out", "DIR", "", "write confusion.csv and metrics.md here (default: next to the checkpoint)")
      .option("--boundary-width", "W", "3",
              "also report the metrics within W pixels of a change of the true label (boundary accuracy)")
      .option("--crf-eval-iters", "T", "", "override the checkpoint's CRF mean-field iterations at evaluation")
      .option("--pictures", "N", "0", "also write image, truth, prediction and overlay PNGs of the first N samples");
  return p;
}

int run_eval(const std::vector<std::string>& args) {
  ArgParser p = eval_parser();
  if (!p.parse(args)) {
    std::printf("%s", p.help().c_str());
    return 0;
  }
  const std::string path = p.get("--checkpoint");
  if (path.empty()) throw UsageError("--checkpoint FILE is required");
  if (const int64_t t = p.get_int("--threads", 0, 1024); t > 0) omp_set_num_threads(static_cast<int>(t));
  const Device device = parse_device_option(p.get("--device"));
  check_device_usable(device);
  const cuda::MatmulPrecisionGuard precision(parse_precision_option(p.get("--precision"), device));
  TrainedModel m = load_trained_model(path);
  m.net->to(device);  // evaluate() runs on the model's device
  if (p.given("--crf-eval-iters")) {
    if (!m.spec.crf) throw UsageError("--crf-eval-iters: the checkpoint's model has no CRF layer");
    m.spec.crf_options.eval_iterations = p.get_int("--crf-eval-iters", 1, 100);
    dynamic_cast<crf::CrfRnn&>(m.net->child("final")).options.eval_iterations = m.spec.crf_options.eval_iterations;
  }
  // The data spec, size and seed default to the training run's, so the
  // validation and test splits are the same images.
  ArgParser data_args = p;
  std::vector<std::string> overrides;
  if (!p.given("--data") && m.metadata.count("data")) overrides = {"--data", m.metadata.at("data")};
  for (const std::string& key : data_option_names()) {
    const std::string meta_key = "arg" + key;
    if (!p.given(key) && m.metadata.count(meta_key)) {
      overrides.push_back(key);
      overrides.push_back(m.metadata.at(meta_key));
    }
  }
  data_args.parse(overrides);
  const uint64_t seed = p.given("--seed") ? static_cast<uint64_t>(p.get_int("--seed", 0))
                                          : std::strtoull(m.metadata.count("seed") ? m.metadata.at("seed").c_str() : "0",
                                                          nullptr, 10);
  const DataSplits data = open_data(data_args, seed);
  const std::string split = p.get("--split");
  std::shared_ptr<const data::Dataset> set = split == "train" ? data.train
                                             : split == "val" ? data.val
                                             : split == "test" ? data.test
                                                               : nullptr;
  if (!set) throw UsageError("--split must be train, val or test, got '" + split + "'");
  if (set->num_classes() != m.spec.segmenter.num_classes || set->in_channels() != m.spec.segmenter.in_channels) {
    throw ValueError("the checkpoint's model takes " + std::to_string(m.spec.segmenter.in_channels) +
                     " channels and " + std::to_string(m.spec.segmenter.num_classes) + " classes, the data has " +
                     std::to_string(set->in_channels()) + " and " + std::to_string(set->num_classes()));
  }
  int64_t size = 0;
  if (p.given("--size")) size = p.get_int("--size", 0, 8192);
  else if (m.metadata.count("size")) size = std::strtoll(m.metadata.at("size").c_str(), nullptr, 10);
  data::LoaderOptions lo{.batch_size = p.get_int("--batch", 1, 4096), .shuffle = false, .drop_last = false,
                         .seed = seed, .num_workers = p.get_int("--workers", 0, 64), .height = size, .width = size,
                         .augment = std::nullopt};
  data::DataLoader loader(set, lo);
  const LossSpec loss = parse_loss(m.metadata.count("loss") ? m.metadata.at("loss") : "ce", set->ignore_index());
  const EvalResult r = evaluate(*m.net, loader, loss, p.get_int("--boundary-width", 0, 1024));
  std::printf("crfseg eval: %s on %s (%s split, %lld images, %.1f s, %s)\n  model: %s\n\n", path.c_str(),
              set->description().c_str(), split.c_str(), static_cast<long long>(r.images), r.seconds,
              device.str().c_str(), describe(m.spec).c_str());
  const std::string table = r.confusion.table(m.class_names) + "\nwithin " + std::to_string(r.boundary_width) +
                            " px of a label boundary:\n\n" + r.boundary.table(m.class_names);
  std::printf("%s\nloss %.4f\n", table.c_str(), r.loss);
  const std::filesystem::path out =
      p.get("--out").empty() ? std::filesystem::path(path).parent_path() : std::filesystem::path(p.get("--out"));
  if (!out.empty()) create_output_dir(out, "crfseg eval");
  const std::string stem = "eval_" + split;
  write_file_atomically((out / (stem + "_confusion.csv")).string(), r.confusion.csv(m.class_names));
  write_file_atomically((out / (stem + "_metrics.md")).string(), table);
  std::printf("wrote %s and %s\n", (out / (stem + "_confusion.csv")).c_str(), (out / (stem + "_metrics.md")).c_str());
  if (const int64_t pictures = std::min(p.get_int("--pictures", 0), set->size()); pictures > 0) {
    const std::string dir = (out / (stem + "_pictures")).string();
    NoGradGuard no_grad;
    for (int64_t i = 0; i < pictures; ++i) {
      data::Sample s = set->get(i);
      if (size > 0) s = data::resize(s, size, size);
      const Tensor logits = (*m.net)(ops::unsqueeze(s.image, 0).to(device));
      const Tensor predicted = ops::squeeze(ops::argmax(logits, 1), 0).to(Device::cpu());
      write_sample_pictures(dir, s.name, s.image, s.mask, predicted, m.spec.segmenter.num_classes);
    }
    std::printf("wrote pictures of %lld samples to %s\n", static_cast<long long>(pictures), dir.c_str());
  }
  return 0;
}

}  // namespace crfseg::app
