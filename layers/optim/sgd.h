// SGD with momentum, dampening, weight decay and Nesterov momentum, with the
// exact update of torch.optim.SGD. For each parameter p with gradient g:
//
//   d = g (or -g when maximize)
//   d = d + weight_decay * p                      (L2 penalty, when weight_decay != 0)
//   if momentum != 0:
//     b = d                                       on the parameter's first step
//     b = momentum * b + (1 - dampening) * d      afterwards
//     d = d + momentum * b   (nesterov)   or   d = b
//   p = p - lr * d
//
// The momentum buffer b is created lazily on a parameter's first step with a
// gradient, so its state entry "param.<i>.momentum_buffer" exists only after.
// Reference: https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
#pragma once

#include "layers/optim/optimizer.h"

namespace crfseg::optim {

struct SGDOptions {
  double lr = 1e-3;  // torch's default
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

class SGD : public Optimizer {
 public:
  // Throws ValueError for lr/momentum/weight_decay < 0, and for nesterov
  // without momentum or with non-zero dampening (torch's rules).
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});

  // The options given at construction; options().lr is the initial learning
  // rate, lr() the current one.
  const SGDOptions& options() const { return options_; }

 protected:
  void update(size_t index, const Tensor& param, const Tensor& grad) override;
  void export_param_state(size_t index, NamedTensors& out) const override;
  void import_param_states(const std::vector<std::map<std::string, Tensor>>& per_param) override;

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_buffers_;  // undefined until the parameter's first step
};

}  // namespace crfseg::optim
