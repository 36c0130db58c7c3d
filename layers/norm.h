// BatchNorm2d (torch.nn.BatchNorm2d): per-channel normalisation over N, H, W
// with an affine weight/bias, running statistics as buffers, and the
// num_batches_tracked counter torch keeps (so torchvision state dicts load
// strictly). Training mode normalises with the batch statistics and updates
// the running ones; eval mode uses the running ones.
#pragma once

#include "layers/module.h"

namespace crfseg::nn {

struct BatchNorm2dOptions {
  int64_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;
  bool fuse_relu = false;  // y = relu(bn(x)) in one pass (the conv-BN-ReLU blocks)
  DType dtype = DType::f32;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNorm2dOptions& options);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  BatchNorm2dOptions options;
  Tensor weight, bias;                 // [C] (undefined unless affine)
  Tensor running_mean, running_var;    // [C] buffers
  Tensor num_batches_tracked;          // i64 0-d buffer
};

}  // namespace crfseg::nn
