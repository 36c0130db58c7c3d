// Pictures of predictions: class masks as PNG images and colour overlays.
//   mask_image:    class c stored as round(255 c / (L - 1)) (or c itself when
//                  raw), 8-bit gray, so masks are visible in any viewer
//   overlay_image: the input (gray inputs shown as gray RGB) averaged with a
//                  fixed colour per class; class 0 (background) is untinted
#pragma once

#include <string>

#include "datasets/image_io.h"
#include "tensor/tensor.h"

namespace crfseg::app {

// classes: [H, W] i64 (any contiguous layout of H * W values).
data::Image mask_image(const Tensor& classes, int64_t num_classes, bool raw = false);
// image: [C, H, W] on [0, 1] (C = 1 or 3); classes: [H, W] i64.
data::Image overlay_image(const Tensor& image, const Tensor& classes);

// Writes <dir>/<name>_{image,truth,pred,overlay}.png for one sample (truth
// skipped when undefined). Ignored truth pixels show as class 0.
void write_sample_pictures(const std::string& dir, const std::string& name, const Tensor& image,
                           const Tensor& truth, const Tensor& predicted, int64_t num_classes);

}  // namespace crfseg::app
