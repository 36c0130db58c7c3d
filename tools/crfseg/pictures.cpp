// Prediction pictures; see pictures.h.
#include "tools/crfseg/pictures.h"
#include "tools/crfseg/report.h"

#include <filesystem>

#include "tensor/ops.h"

namespace crfseg::app {

namespace {

// Distinct colours (Sasha Trubetskoy's palette); class 0 is not tinted.
constexpr uint8_t kPalette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                   {245, 130, 48}, {145, 30, 180}, {70, 240, 240}};

}  // namespace

data::Image mask_image(const Tensor& classes_in, int64_t num_classes, bool raw) {
  const Tensor classes = ops::contiguous(classes_in.to(Device::cpu()));  // read here, through a host pointer
  CRFSEG_CHECK(classes.dim() == 2 && classes.dtype() == DType::i64, ShapeError,
               "mask_image: expected i64 classes [H, W], got ", classes.str());
  const int64_t H = classes.size(0), W = classes.size(1), L = num_classes;
  const int64_t* c = classes.data<int64_t>();
  data::Image mask = data::Image::zeros(H, W, 1);
  for (int64_t i = 0; i < H * W; ++i) {
    const int64_t k = std::max<int64_t>(c[i], 0);
    mask.pixels[i] = static_cast<uint16_t>(raw || L < 2 ? k : (k * 255 + (L - 1) / 2) / (L - 1));
  }
  return mask;
}

data::Image overlay_image(const Tensor& image, const Tensor& classes_in) {
  const Tensor classes = ops::contiguous(classes_in.to(Device::cpu()));  // read here, through a host pointer
  CRFSEG_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) && classes.dim() == 2 &&
                   image.size(1) == classes.size(0) && image.size(2) == classes.size(1),
               ShapeError, "overlay_image: expected image [1 or 3, H, W] and classes [H, W], got ", image.str(),
               " and ", classes.str());
  const int64_t H = classes.size(0), W = classes.size(1);
  const Tensor rgb = ops::contiguous(image.size(0) == 3 ? image : ops::expand(image, {3, H, W}));
  data::Image overlay = data::tensor_to_image(rgb);
  const int64_t* c = classes.data<int64_t>();
  for (int64_t i = 0; i < H * W; ++i) {
    if (c[i] <= 0) continue;
    const uint8_t* colour = kPalette[(c[i] - 1) % 7];
    for (int k = 0; k < 3; ++k) {
      uint16_t& v = overlay.pixels[i * 3 + k];
      v = static_cast<uint16_t>((v + colour[k]) / 2);
    }
  }
  return overlay;
}

void write_sample_pictures(const std::string& dir, const std::string& name, const Tensor& image, const Tensor& truth,
                           const Tensor& predicted, int64_t num_classes) {
  create_output_dir(dir, "pictures");
  const std::string stem = (std::filesystem::path(dir) / name).string();
  data::save_png(stem + "_image.png", data::tensor_to_image(ops::contiguous(image)));
  if (truth.defined()) data::save_png(stem + "_truth.png", mask_image(truth, num_classes));
  data::save_png(stem + "_pred.png", mask_image(predicted, num_classes));
  data::save_png(stem + "_overlay.png", overlay_image(image, predicted));
}

}  // namespace crfseg::app
