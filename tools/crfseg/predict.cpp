// `crfseg predict`: runs a trained checkpoint on image files or folders and
// writes, per image, <stem>_mask.png (class c stored as round(255 c / (L-1)),
// or the class index itself with --raw-mask) and <stem>_overlay.png (the
// image with each class tinted by its colour, background class 0 untinted).
#include <omp.h>

#include <cstdio>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "datasets/files.h"
#include "datasets/image_io.h"
#include "tensor/ops.h"
#include "tools/crfseg/checkpoint_model.h"
#include "tools/crfseg/commands.h"

namespace crfseg::app {

namespace fs = std::filesystem;

namespace {

// Class colours for overlays (class 0, the background, is left untinted).
constexpr uint8_t kPalette[][3] = {{0, 0, 0},     {230, 25, 75},  {60, 180, 75},  {255, 225, 25},
                                   {0, 130, 200}, {245, 130, 48}, {145, 30, 180}, {70, 240, 240}};

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

int run_predict(const std::vector<std::string>& args) {
  ArgParser p("crfseg predict", "Writes predicted masks and colour overlays for images or folders of images.");
  p.option("--checkpoint", "FILE", "", "a checkpoint written by crfseg train")
      .option("--out", "DIR", "predictions", "output folder")
      .option("--size", "S", "0", "resize inputs to S x S before predicting (0: native size, any size works)")
      .option("--threads", "N", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)")
      .flag("--raw-mask", "store class indices in the mask PNG instead of spreading them over 0-255")
      .positionals("INPUT...", "image files and/or folders of images");
  if (!p.parse(args)) {
    std::printf("%s", p.help().c_str());
    return 0;
  }
  const std::string path = p.get("--checkpoint");
  if (path.empty()) throw UsageError("--checkpoint FILE is required");
  if (p.positional().empty()) throw UsageError("no input images given");
  if (const int64_t t = p.get_int("--threads", 0, 1024); t > 0) omp_set_num_threads(static_cast<int>(t));
  const int64_t size = p.get_int("--size", 0, 8192);
  const TrainedModel m = load_trained_model(path);
  const int64_t L = m.spec.segmenter.num_classes, C = m.spec.segmenter.in_channels;
  const std::vector<std::string> files = expand_inputs(p.positional());
  const fs::path out = p.get("--out");
  fs::create_directories(out);
  NoGradGuard no_grad;
  for (const std::string& file : files) {
    const data::Image image = data::load_image(file, C);
    Tensor x = ops::unsqueeze(data::image_to_tensor(image), 0);  // [1, C, H, W] on [0, 1]
    if (size > 0) x = ops::upsample2d(x, size, size, ops::UpsampleMode::bilinear, false);
    const Tensor classes = ops::argmax((*m.net)(x), 1);  // [1, H', W']
    const int64_t H = classes.size(1), W = classes.size(2);
    const int64_t* cls = classes.data<int64_t>();
    data::Image mask = data::Image::zeros(H, W, 1);
    for (int64_t i = 0; i < H * W; ++i) {
      mask.pixels[i] = static_cast<uint16_t>(p.flag_set("--raw-mask") || L < 2 ? cls[i]
                                                                               : (cls[i] * 255 + (L - 1) / 2) / (L - 1));
    }
    // The overlay on the (possibly resized) input, as RGB.
    const Tensor shown = ops::contiguous(x.size(1) == 3 ? ops::squeeze(x, 0)
                                                        : ops::expand(ops::squeeze(x, 0), {3, H, W}));
    data::Image overlay = data::tensor_to_image(shown);
    for (int64_t i = 0; i < H * W; ++i) {
      const int64_t c = cls[i];
      if (c == 0) continue;
      const uint8_t* colour = kPalette[1 + (c - 1) % 7];
      for (int k = 0; k < 3; ++k) {
        uint16_t& v = overlay.pixels[i * 3 + k];
        v = static_cast<uint16_t>((v + colour[k]) / 2);
      }
    }
    const std::string stem = data::stem_of(file);
    data::save_png((out / (stem + "_mask.png")).string(), mask);
    data::save_png((out / (stem + "_overlay.png")).string(), overlay);
  }
  std::printf("crfseg predict: %zu image(s) -> %s (masks and overlays), model %s\n", files.size(), out.c_str(),
              describe(m.spec).c_str());
  return 0;
}

}  // namespace crfseg::app
