// Conv2d and ConvTranspose2d layers (torch.nn.Conv2d / ConvTranspose2d),
// NCHW, with the kernels of autograd/ops/conv.cpp.
#pragma once

#include "layers/module.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace crfseg::nn {

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 3, kernel_w = 3;
  int64_t stride = 1, padding = 0, dilation = 1;  // same for H and W
  bool bias = true;
  DType dtype = DType::f32;
};

class Conv2d : public Module {
 public:
  // torch's init: W ~ kaiming_uniform(a = sqrt(5)), i.e. U(+-1/sqrt(fan_in)),
  // and b ~ U(+-1/sqrt(fan_in)), fan_in = in_channels * kernel_h * kernel_w.
  explicit Conv2d(const Conv2dOptions& options, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  Conv2dArgs args() const;

  Conv2dOptions options;
  Tensor weight;  // [out, in, kh, kw]
  Tensor bias;    // [out], undefined without bias
};

struct ConvTranspose2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride = 2, padding = 0, output_padding = 0, dilation = 1;
  bool bias = true;
  DType dtype = DType::f32;
};

class ConvTranspose2d : public Module {
 public:
  // torch's init, whose fan_in for the [in, out, kh, kw] weight is out * kh * kw.
  explicit ConvTranspose2d(const ConvTranspose2dOptions& options, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  ConvTranspose2dOptions options;
  Tensor weight;  // [in, out, kh, kw]
  Tensor bias;    // [out]
};

}  // namespace crfseg::nn
