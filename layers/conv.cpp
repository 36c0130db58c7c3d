#include "layers/conv.h"

#include <cmath>

#include "autograd/functions.h"

namespace crfseg::nn {

namespace {

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what torch's kaiming_uniform_(a = sqrt(5))
// gives for conv weights, and its bias init.
Tensor uniform_fan_in(const Shape& shape, int64_t fan_in, DType dtype, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  Tensor t = Tensor::empty(shape, {dtype});
  uniform_(t, -bound, bound, gen);
  return t;
}

std::string kernel_repr(int64_t kh, int64_t kw, int64_t stride, int64_t padding, int64_t dilation) {
  std::string s = ", kernel=" + std::to_string(kh) + "x" + std::to_string(kw);
  if (stride != 1) s += ", stride=" + std::to_string(stride);
  if (padding != 0) s += ", padding=" + std::to_string(padding);
  if (dilation != 1) s += ", dilation=" + std::to_string(dilation);
  return s;
}

}  // namespace

Conv2d::Conv2d(const Conv2dOptions& o, Generator& gen) : Module("Conv2d"), options(o) {
  CRFSEG_CHECK(o.in_channels >= 1 && o.out_channels >= 1 && o.kernel_h >= 1 && o.kernel_w >= 1, ValueError,
               "Conv2d: expected positive channels and kernel size, got in ", o.in_channels, ", out ",
               o.out_channels, ", kernel ", o.kernel_h, "x", o.kernel_w);
  const int64_t fan_in = o.in_channels * o.kernel_h * o.kernel_w;
  weight = register_parameter("weight",
                              uniform_fan_in({o.out_channels, o.in_channels, o.kernel_h, o.kernel_w}, fan_in, o.dtype, gen));
  if (o.bias) bias = register_parameter("bias", uniform_fan_in({o.out_channels}, fan_in, o.dtype, gen));
}

Conv2dArgs Conv2d::args() const {
  Conv2dArgs a;
  a.stride_h = a.stride_w = options.stride;
  a.pad_h = a.pad_w = options.padding;
  a.dil_h = a.dil_w = options.dilation;
  return a;
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, args()); }

std::string Conv2d::extra_repr() const {
  return std::to_string(options.in_channels) + " -> " + std::to_string(options.out_channels) +
         kernel_repr(options.kernel_h, options.kernel_w, options.stride, options.padding, options.dilation) +
         (options.bias ? "" : ", no bias");
}

ConvTranspose2d::ConvTranspose2d(const ConvTranspose2dOptions& o, Generator& gen)
    : Module("ConvTranspose2d"), options(o) {
  CRFSEG_CHECK(o.in_channels >= 1 && o.out_channels >= 1 && o.kernel_h >= 1 && o.kernel_w >= 1, ValueError,
               "ConvTranspose2d: expected positive channels and kernel size, got in ", o.in_channels, ", out ",
               o.out_channels, ", kernel ", o.kernel_h, "x", o.kernel_w);
  const int64_t fan_in = o.out_channels * o.kernel_h * o.kernel_w;
  weight = register_parameter(
      "weight", uniform_fan_in({o.in_channels, o.out_channels, o.kernel_h, o.kernel_w}, fan_in, o.dtype, gen));
  if (o.bias) bias = register_parameter("bias", uniform_fan_in({o.out_channels}, fan_in, o.dtype, gen));
}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  Conv2dArgs a;
  a.stride_h = a.stride_w = options.stride;
  a.pad_h = a.pad_w = options.padding;
  a.dil_h = a.dil_w = options.dilation;
  return conv_transpose2d(x, weight, bias, a, options.output_padding, options.output_padding);
}

std::string ConvTranspose2d::extra_repr() const {
  return std::to_string(options.in_channels) + " -> " + std::to_string(options.out_channels) +
         kernel_repr(options.kernel_h, options.kernel_w, options.stride, options.padding, options.dilation) +
         (options.output_padding ? ", output_padding=" + std::to_string(options.output_padding) : "");
}

}  // namespace crfseg::nn
