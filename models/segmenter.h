// Segmenter: encoder + U-Net decoder (+ an optional final layer, e.g. the
// CRF-RNN of crf/), built from a small config.
//
// Any input size works: the input is zero-padded on the bottom/right to a
// multiple of the encoder's coarsest stride, and the logits are cropped
// back, so odd sizes are never rejected.
#pragma once

#include <string>

#include "models/encoder.h"
#include "models/unet.h"

namespace crfseg::models {

struct SegmenterConfig {
  std::string encoder = "unet";  // "unet", "resnet50", "vgg16", "vgg16_bn"
  int64_t in_channels = 3;       // 1 for grayscale micro-CT
  int64_t num_classes = 3;
  int64_t base_width = 64;       // unet encoder only
  int64_t depth = 4;             // unet encoder only
  bool batch_norm = true;        // unet encoder and the decoder
  UpMode up_mode = UpMode::transposed;
  std::vector<int64_t> decoder_widths;  // empty = the skip channels
  DType dtype = DType::f32;
  // Per-channel input normalisation applied inside forward(), before the
  // encoder: (x - mean) / std. Empty = none. The final layer (the CRF) still
  // sees the input as given, so images can be passed on their natural scale
  // (e.g. [0, 1]) and ImageNet statistics used for a pretrained encoder:
  // mean {0.485, 0.456, 0.406}, std {0.229, 0.224, 0.225}. When set, they are
  // buffers "input_mean" / "input_std" [1, C, 1, 1] in the state dict.
  std::vector<double> input_mean, input_std;
};

// ImageNet's channel statistics (torchvision's pretrained models).
inline const std::vector<double> kImageNetMean = {0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd = {0.229, 0.224, 0.225};

// Parses "unet" / "resnet50" / ... ; throws ValueError listing the choices.
std::shared_ptr<Encoder> make_encoder(const SegmenterConfig& config, Generator& gen = default_generator());

class Segmenter : public nn::Module {
 public:
  explicit Segmenter(const SegmenterConfig& config, Generator& gen = default_generator());
  // Logits [N, classes, H, W] for x [N, in_channels, H, W]; then the final
  // layer, if set, which receives the logits and the (unpadded) input image.
  Tensor forward(const Tensor& x) override;
  // Installs the final layer once: `module` (registered as "final", may be
  // null for a parameter-free layer) and the function that applies it.
  using FinalLayer = std::function<Tensor(const Tensor& logits, const Tensor& image)>;
  void set_final_layer(std::shared_ptr<nn::Module> module, FinalLayer fn);
  // Bypasses (false) or applies (true, the default) the installed final
  // layer, e.g. to train the network alone for a few epochs before the CRF
  // joins (its parameters then get no gradient and stay as they are).
  void enable_final_layer(bool on) { final_enabled_ = on; }
  bool final_layer_enabled() const { return final_fn_ && final_enabled_; }

  SegmenterConfig config;
  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<UNetDecoder> decoder;

 private:
  Tensor input_mean_, input_std_;  // [1, C, 1, 1] or undefined
  std::shared_ptr<nn::Module> final_module_;
  FinalLayer final_fn_;
  bool final_enabled_ = true;
};

}  // namespace crfseg::models
