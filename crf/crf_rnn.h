// CrfRnn: the CRF-RNN layer (Zheng et al. 2015) as an nn::Module, mean-field
// inference over a dense CRF with spatial and bilateral Gaussian kernels
// (math, sign conventions and what is differentiated: crf/mean_field.h).
//
//   auto crf = std::make_shared<crf::CrfRnn>(crf::CrfRnnOptions{.num_classes = 3});
//   Tensor logits = crf->forward(unaries, image);   // [B, L, H, W], image [B, 3, H, W] on 0-255
//   segmenter.set_final_layer(crf, crf->as_final_layer());
//
// Parameters (all [L, L], trained): "spatial_weights" (init spatial_weight * I),
// "bilateral_weights" (init bilateral_weight * I), "compatibility" (init the
// Potts model 1 - I). Training runs train_iterations mean-field steps,
// eval() mode eval_iterations.
#pragma once

#include <functional>
#include <string>

#include "crf/mean_field.h"
#include "layers/module.h"

namespace crfseg::crf {

struct CrfRnnOptions {
  int64_t num_classes = 0;     // L >= 1
  int64_t image_channels = 3;  // C of the image forward() expects (3 RGB, 1 grayscale)
  int64_t train_iterations = 5;
  int64_t eval_iterations = 10;
  double theta_alpha = 160.0;  // bilateral spatial bandwidth (pixels)
  double theta_beta = 3.0;     // bilateral intensity bandwidth (0-255 units)
  double theta_gamma = 3.0;    // spatial kernel bandwidth (pixels)
  // The image is multiplied by this before the bilateral features are
  // formed: 1 for images on 0-255, 255 for images on [0, 1].
  double image_scale = 1.0;
  double spatial_weight = 3.0;    // initial W_s = spatial_weight * I
  double bilateral_weight = 5.0;  // initial W_b = bilateral_weight * I
  FilterMode mode = FilterMode::lattice;
  DType dtype = DType::f32;
};

class CrfRnn : public nn::Module {
 public:
  // Throws ValueError for num_classes or image_channels < 1, iterations < 1,
  // non-positive thetas or image_scale.
  explicit CrfRnn(const CrfRnnOptions& options);

  // unaries [B, L, H, W] (the parameters' dtype), image [B, image_channels, H, W]
  // -> refined logits [B, L, H, W]. Throws ShapeError / DTypeError naming
  // "CrfRnn" or "crf_mean_field" on mismatched inputs.
  Tensor forward(const Tensor& unaries, const Tensor& image);
  // The (logits, image) -> logits function Segmenter::set_final_layer takes.
  // It calls this module through a raw pointer: pass the module itself to
  // set_final_layer too, which registers it as the child "final" and so
  // keeps it alive as long as the function (and avoids a reference cycle).
  std::function<Tensor(const Tensor&, const Tensor&)> as_final_layer();
  std::string extra_repr() const override;
  // The mean-field options forward() uses in the current mode.
  MeanFieldOptions mean_field_options() const;

  CrfRnnOptions options;
  Tensor spatial_weights;    // [L, L]
  Tensor bilateral_weights;  // [L, L]
  Tensor compatibility;      // [L, L]
};

}  // namespace crfseg::crf
