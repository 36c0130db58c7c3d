// Reductions over any set of dims.
//   sum:  y = sum_{j in block} x_j         dx_j = g            (g broadcast back over the block)
//   mean: y = (1/n) sum_{j in block} x_j   dx_j = g / n
//   max:  y = x_{j*} (first maximum)       dx_j = g if j == j* else 0
// Ties in max send the whole gradient to the first maximum (a subgradient);
// keep test inputs away from ties.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"
#include "tensor/factory.h"

namespace crfseg {

namespace {

// g has the reduced shape; view it with the reduced dims kept as 1 and
// broadcast it to the input shape.
Tensor expand_reduced(const Tensor& g, const Shape& in_shape, const std::vector<int64_t>& dims) {
  Shape kept = in_shape;
  for (int64_t d : dims) kept[d] = 1;
  return ops::expand(ops::reshape(g, kept), in_shape);
}

class SumBackward : public Node {
 public:
  SumBackward(Shape in_shape, std::vector<int64_t> dims, double scale, const char* name)
      : in_shape_(std::move(in_shape)), dims_(std::move(dims)), scale_(scale), name_(name) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor gx = expand_reduced(g, in_shape_, dims_);
    return {scale_ == 1.0 ? gx : ops::scalar_op(ops::ScalarOp::mul, gx, scale_)};
  }

 private:
  Shape in_shape_;
  std::vector<int64_t> dims_;
  double scale_;
  const char* name_;
};

class MaxBackward : public Node {
 public:
  MaxBackward(Shape in_shape, std::vector<int64_t> dims, bool keepdim, const Tensor& index)
      : in_shape_(std::move(in_shape)), dims_(std::move(dims)), keepdim_(keepdim), index_(index) {}
  const char* name() const override { return "MaxBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::max_backward(g, index_.unpack(name()), in_shape_, dims_, keepdim_)};
  }
  void release_saved() override { index_.release(); }

 private:
  Shape in_shape_;
  std::vector<int64_t> dims_;
  bool keepdim_;
  SavedTensor index_;
};

Tensor sum_or_mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim, bool average) {
  Tensor y = average ? ops::mean(x, dims, keepdim) : ops::sum(x, dims, keepdim);
  if (needs_grad({&x})) {
    dims = ops::normalize_dims(dims, x.dim(), average ? "mean" : "sum");
    const double n = static_cast<double>(x.numel()) / static_cast<double>(std::max<int64_t>(y.numel(), 1));
    attach(y,
           std::make_shared<SumBackward>(x.shape(), dims, average ? 1.0 / n : 1.0,
                                         average ? "MeanBackward" : "SumBackward"),
           {&x});
  }
  return y;
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return sum_or_mean(x, std::move(dims), keepdim, false);
}

Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return sum_or_mean(x, std::move(dims), keepdim, true);
}

Tensor max(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  auto [values, index] = ops::max_with_index(x, dims, keepdim);
  if (needs_grad({&x})) {
    dims = ops::normalize_dims(dims, x.dim(), "max");
    attach(values, std::make_shared<MaxBackward>(x.shape(), dims, keepdim, index), {&x});
  }
  return values;
}

}  // namespace crfseg
