// Encoder: the interface every backbone offers the U-Net decoder.
//
// features(x) returns feature maps from fine to coarse; the last one is the
// bottleneck, the others are the decoder's skip connections. Each comes
// with its channel count and its stride (input size / feature size), so
// the decoder is built from these lists alone and any encoder plugs in.
#pragma once

#include <vector>

#include "layers/module.h"

namespace crfseg::models {

class Encoder : public nn::Module {
 public:
  using nn::Module::Module;
  virtual std::vector<Tensor> features(const Tensor& x) = 0;
  virtual std::vector<int64_t> feature_channels() const = 0;
  virtual std::vector<int64_t> feature_strides() const = 0;
  virtual int64_t in_channels() const = 0;
  // Input sizes must be multiples of this (the segmenter pads to it).
  int64_t size_multiple() const { return feature_strides().back(); }
};

}  // namespace crfseg::models
