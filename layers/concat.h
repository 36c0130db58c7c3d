// Concat: joins tensors along one dimension (channels by default), the skip
// connection of a U-Net decoder as a layer. Parameter-free; gradients flow
// back to every input as slices of the output gradient (autograd/ops/join.cpp).
#pragma once

#include <vector>

#include "autograd/functions.h"
#include "layers/module.h"

namespace crfseg::nn {

class Concat : public Module {
 public:
  explicit Concat(int64_t dim = 1) : Module("Concat"), dim_(dim) {}
  // All inputs must agree in every dimension except `dim` (ShapeError otherwise).
  Tensor forward(const std::vector<Tensor>& xs) { return concat(xs, dim_); }
  Tensor operator()(const std::vector<Tensor>& xs) { return forward(xs); }
  using Module::operator();
  // One input: returned unchanged (a concatenation of one tensor).
  Tensor forward(const Tensor& x) override { return x; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

}  // namespace crfseg::nn
