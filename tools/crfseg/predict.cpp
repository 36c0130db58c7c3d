// `crfseg predict`: runs a trained checkpoint on image files or folders and
// writes, per image, <stem>_mask.png and <stem>_overlay.png (pictures.h).
#include <omp.h>

#include <cstdio>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "datasets/files.h"
#include "datasets/image_io.h"
#include "tensor/ops.h"
#include "tools/crfseg/checkpoint_model.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/device_option.h"
#include "tools/crfseg/pictures.h"
#include "tools/crfseg/report.h"

namespace crfseg::app {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  static const std::vector<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm",
                                                      ".tif", ".tiff"};
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    if (fs::is_directory(in)) {
      const auto listed = data::list_files(in, kExtensions);
      files.insert(files.end(), listed.begin(), listed.end());
    } else if (fs::is_regular_file(in)) {
      files.push_back(in);
    } else {
      throw IOError("input '" + in + "' is neither a file nor a folder");
    }
  }
  if (files.empty()) throw IOError("no images found in the inputs");
  return files;
}

}  // namespace

ArgParser predict_parser() {
  ArgParser p("crfseg predict", "Writes predicted masks and colour overlays for images or folders of images.");
  p.option("--checkpoint", "FILE", "", "a checkpoint written by crfseg train")
      .option("--out", "DIR", "predictions", "output folder")
      .option("--size", "S", "0", "resize inputs to S x S before predicting (0: native size, any size works)")
      .option("--threads", "N", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)")
      .option("--device", "NAME", "cpu", "cpu, cuda or cuda:N")
      .option("--precision", "P", "fp32", "CUDA GEMMs and convolutions: fp32, or tf32 / bf16 tensor-core inputs")
      .flag("--raw-mask", "store class indices in the mask PNG instead of spreading them over 0-255")
      .positionals("INPUT...", "image files and/or folders of images");
  return p;
}

int run_predict(const std::vector<std::string>& args) {
  ArgParser p = predict_parser();
  if (!p.parse(args)) {
    std::printf("%s", p.help().c_str());
    return 0;
  }
  const std::string path = p.get("--checkpoint");
  if (path.empty()) throw UsageError("--checkpoint FILE is required");
  if (p.positional().empty()) throw UsageError("no input images given");
  if (const int64_t t = p.get_int("--threads", 0, 1024); t > 0) omp_set_num_threads(static_cast<int>(t));
  const int64_t size = p.get_int("--size", 0, 8192);
  const Device device = parse_device_option(p.get("--device"));
  check_device_usable(device);
  const cuda::MatmulPrecisionGuard precision(parse_precision_option(p.get("--precision"), device));
  const TrainedModel m = load_trained_model(path);
  m.net->to(device);
  const int64_t L = m.spec.segmenter.num_classes, C = m.spec.segmenter.in_channels;
  const std::vector<std::string> files = expand_inputs(p.positional());
  const fs::path out = p.get("--out");
  create_output_dir(out, "crfseg predict");
  NoGradGuard no_grad;
  for (const std::string& file : files) {
    const data::Image image = data::load_image(file, C);
    Tensor x = ops::unsqueeze(data::image_to_tensor(image), 0);  // [1, C, H, W] on [0, 1]
    if (size > 0) x = ops::upsample2d(x, size, size, ops::UpsampleMode::bilinear, false);
    const Tensor logits = (*m.net)(x.to(device));
    const Tensor classes = ops::squeeze(ops::argmax(logits, 1), 0).to(Device::cpu());  // [H', W']
    const data::Image mask = mask_image(classes, L, p.flag_set("--raw-mask"));
    const data::Image overlay = overlay_image(ops::squeeze(x, 0), classes);
    const std::string stem = data::stem_of(file);
    data::save_png((out / (stem + "_mask.png")).string(), mask);
    data::save_png((out / (stem + "_overlay.png")).string(), overlay);
  }
  std::printf("crfseg predict: %zu image(s) -> %s (masks and overlays), model %s, %s\n", files.size(), out.c_str(),
              describe(m.spec).c_str(), device.str().c_str());
  return 0;
}

}  // namespace crfseg::app
