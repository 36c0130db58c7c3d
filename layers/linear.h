// Linear: y = x W^T + b, for x [..., in] and W [out, in] (torch.nn.Linear).
#pragma once

#include "layers/module.h"
#include "tensor/random.h"

namespace crfseg::nn {

struct LinearOptions {
  int64_t in_features = 0, out_features = 0;
  bool bias = true;
  DType dtype = DType::f32;
};

class Linear : public Module {
 public:
  // Initialised as torch does: W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
  explicit Linear(const LinearOptions& options, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  LinearOptions options;
  Tensor weight, bias;  // bias undefined when options.bias is false
};

}  // namespace crfseg::nn
