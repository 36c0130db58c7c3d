// VGG-16 encoder (Simonyan & Zisserman 2015), the convolutional part only,
// registered as torchvision's `features` Sequential so the names match
// ("features.0.weight", ..., "features.28.bias"; with batch norm the
// indices shift as in torchvision's vgg16_bn). The classifier is not built.
//
// Feature taps: the ReLU output of each block just before its max-pool,
// strides 1, 2, 4, 8, 16 with 64, 128, 256, 512, 512 channels. The fifth
// pool (stride 32) is not used by the decoder.
#pragma once

#include "layers/sequential.h"
#include "models/encoder.h"
#include "tensor/random.h"

namespace crfseg::models {

struct VGGOptions {
  int64_t in_channels = 3;
  bool batch_norm = false;
  DType dtype = DType::f32;
};

class VGGEncoder : public Encoder {
 public:
  explicit VGGEncoder(const VGGOptions& options = {}, Generator& gen = default_generator());
  std::vector<Tensor> features(const Tensor& x) override;
  std::vector<int64_t> feature_channels() const override { return {64, 128, 256, 512, 512}; }
  std::vector<int64_t> feature_strides() const override { return {1, 2, 4, 8, 16}; }
  int64_t in_channels() const override { return options.in_channels; }

  VGGOptions options;
  std::shared_ptr<nn::Sequential> features_;  // registered as "features"
  std::vector<int64_t> tap_after_;            // index in features_ of each tap's last module
};

}  // namespace crfseg::models
