// Pooling and resampling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
// and Upsample (nearest or bilinear, to a size or by a scale factor).
#pragma once

#include <cmath>

#include "autograd/functions.h"
#include "layers/module.h"

namespace crfseg::nn {

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dArgs& args) : Module("MaxPool2d"), args(args) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, args); }
  std::string extra_repr() const override {
    return "kernel=" + std::to_string(args.kernel_h) + "x" + std::to_string(args.kernel_w) +
           ", stride=" + std::to_string(args.stride_h) + (args.pad_h ? ", padding=" + std::to_string(args.pad_h) : "");
  }
  Pool2dArgs args;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dArgs& args) : Module("AvgPool2d"), args(args) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, args); }
  Pool2dArgs args;
};

// Output [N, C, out_h, out_w] whatever the input size; (1, 1) is global average pooling.
class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : Module("AdaptiveAvgPool2d"), out_h(out_h), out_w(out_w) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, out_h, out_w); }
  std::string extra_repr() const override { return std::to_string(out_h) + "x" + std::to_string(out_w); }
  int64_t out_h, out_w;
};

struct UpsampleOptions {
  int64_t out_h = 0, out_w = 0;  // a fixed size, or 0 to use the scale factor
  double scale = 2.0;            // out = floor(in * scale), as torch
  UpsampleMode mode = UpsampleMode::bilinear;
  bool align_corners = false;
};

class Upsample : public Module {
 public:
  explicit Upsample(const UpsampleOptions& options) : Module("Upsample"), options(options) {
    CRFSEG_CHECK((options.out_h > 0 && options.out_w > 0) || options.scale > 0, ValueError,
                 "Upsample: expected a positive output size or scale, got ", options.out_h, "x", options.out_w,
                 ", scale ", options.scale);
  }
  Tensor forward(const Tensor& x) override {
    CRFSEG_CHECK(x.dim() == 4, ShapeError, "Upsample: expected input [N, C, H, W], got ", shape_str(x.shape()));
    const bool sized = options.out_h > 0 && options.out_w > 0;
    const int64_t oh = sized ? options.out_h : static_cast<int64_t>(std::floor(x.size(2) * options.scale));
    const int64_t ow = sized ? options.out_w : static_cast<int64_t>(std::floor(x.size(3) * options.scale));
    return upsample2d(x, oh, ow, options.mode, options.align_corners);
  }
  UpsampleOptions options;
};

}  // namespace crfseg::nn
