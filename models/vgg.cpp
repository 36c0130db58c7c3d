#include "models/vgg.h"

#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/norm.h"
#include "layers/pooling.h"

namespace crfseg::models {

VGGEncoder::VGGEncoder(const VGGOptions& o, Generator& gen) : Encoder("VGGEncoder"), options(o) {
  CRFSEG_CHECK(o.in_channels >= 1, ValueError, "VGGEncoder: expected in_channels >= 1, got ", o.in_channels);
  features_ = register_module("features", std::make_shared<nn::Sequential>());
  // torchvision's configuration "D": channel counts, 0 = 2x2 max-pool.
  const std::vector<int64_t> cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  int64_t in = o.in_channels;
  for (int64_t c : cfg) {
    if (c == 0) {
      tap_after_.push_back(features_->size() - 1);  // the ReLU before this pool
      features_->push_back(std::make_shared<nn::MaxPool2d>(Pool2dArgs{}));
      continue;
    }
    features_->push_back(std::make_shared<nn::Conv2d>(
        nn::Conv2dOptions{.in_channels = in, .out_channels = c, .kernel_h = 3, .kernel_w = 3, .padding = 1,
                          .dtype = o.dtype},
        gen));
    if (o.batch_norm) {
      features_->push_back(std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions{.num_features = c, .dtype = o.dtype}));
    }
    features_->push_back(std::make_shared<nn::ReLU>());
    in = c;
  }
}

std::vector<Tensor> VGGEncoder::features(const Tensor& x) {
  std::vector<Tensor> taps;
  Tensor y = x;
  size_t next_tap = 0;
  // Stop after the fifth block's ReLU: the last pool feeds nothing.
  for (int64_t i = 0; i <= tap_after_.back(); ++i) {
    y = (*features_)[i](y);
    if (i == tap_after_[next_tap]) {
      taps.push_back(y);
      ++next_tap;
    }
  }
  return taps;
}

}  // namespace crfseg::models
