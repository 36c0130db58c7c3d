// ResNet-50 encoder (He et al. 2016, torchvision's "v1.5": the stride of a
// down-sampling bottleneck sits on its 3x3 conv). Parameter and buffer
// names are torchvision's (conv1, bn1, layer1.0.conv1.weight,
// layer1.0.downsample.0.weight, ...), so torchvision's state dict, exported
// by tools/export_torchvision.py, loads strictly. There is no fc layer: the
// encoder ends at layer4.
//
// Feature taps (stride): relu after the stem (2, 64 ch), layer1 (4, 256),
// layer2 (8, 512), layer3 (16, 1024), layer4 (32, 2048).
#pragma once

#include "layers/conv.h"
#include "layers/norm.h"
#include "layers/pooling.h"
#include "layers/sequential.h"
#include "models/encoder.h"

namespace crfseg::models {

class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in_channels, int64_t width, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shapes already match
};

struct ResNetOptions {
  int64_t in_channels = 3;
  std::vector<int64_t> blocks = {3, 4, 6, 3};  // ResNet-50
  DType dtype = DType::f32;
};

class ResNetEncoder : public Encoder {
 public:
  explicit ResNetEncoder(const ResNetOptions& options = {}, Generator& gen = default_generator());
  std::vector<Tensor> features(const Tensor& x) override;
  std::vector<int64_t> feature_channels() const override { return {64, 256, 512, 1024, 2048}; }
  std::vector<int64_t> feature_strides() const override { return {2, 4, 8, 16, 32}; }
  int64_t in_channels() const override { return options.in_channels; }

  ResNetOptions options;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
};

}  // namespace crfseg::models
