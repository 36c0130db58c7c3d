// max_pool2d, avg_pool2d and adaptive_avg_pool2d (raw ops: tensor/ops_pool.cpp).
//
// Derivatives, per (n, c) plane, with y[o] the output at position o and
// W(o) its window (the valid input positions it reads):
//   max:  y[o] = x[m(o)] where m(o) = argmax over W(o) (first maximum; NaN
//         wins). The map is piecewise the selection x -> x[m(o)], so
//         dx[i] = sum over o with m(o) = i of g[o]: the gradient goes to the
//         argmax only, and several windows that share an argmax (stride <
//         kernel) add up. The argmax indices saved by the forward are all
//         the backward needs; x itself is not kept. Not differentiable at
//         ties (the first maximum gets everything, as in torch).
//   avg:  y[o] = (1 / D(o)) sum_{i in W(o)} x[i], linear, so
//         dx[i] = sum over o with i in W(o) of g[o] / D(o), D(o) being the
//         torch divisor (count_include_pad, ceil_mode clipping). Saves nothing.
//   adaptive avg: the same with torch's adaptive windows and D(o) = |W(o)|.
// Double backward is not supported (the backward ops are not differentiable).
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class MaxPool2dBackward : public Node {
 public:
  MaxPool2dBackward(const Tensor& indices, Shape x_shape, const ops::Pool2dArgs& args)
      : indices_(indices), x_shape_(std::move(x_shape)), args_(args) {}
  const char* name() const override { return "MaxPool2dBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    // The indices are the forward's (unpack checks their version): no check.
    return {ops::max_pool2d_backward(g, indices_.unpack(name()), x_shape_, args_, false)};
  }
  void release_saved() override { indices_.release(); }

 private:
  SavedTensor indices_;
  Shape x_shape_;
  ops::Pool2dArgs args_;
};

class AvgPool2dBackward : public Node {
 public:
  AvgPool2dBackward(Shape x_shape, const ops::Pool2dArgs& args) : x_shape_(std::move(x_shape)), args_(args) {}
  const char* name() const override { return "AvgPool2dBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::avg_pool2d_backward(g, x_shape_, args_)}; }

 private:
  Shape x_shape_;
  ops::Pool2dArgs args_;
};

class AdaptiveAvgPool2dBackward : public Node {
 public:
  explicit AdaptiveAvgPool2dBackward(Shape x_shape) : x_shape_(std::move(x_shape)) {}
  const char* name() const override { return "AdaptiveAvgPool2dBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::adaptive_avg_pool2d_backward(g, x_shape_)}; }

 private:
  Shape x_shape_;
};

}  // namespace

Tensor max_pool2d(const Tensor& x, const ops::Pool2dArgs& args) {
  ops::MaxPool2dForward fwd = ops::max_pool2d(x, args);
  if (needs_grad({&x})) attach(fwd.y, std::make_shared<MaxPool2dBackward>(fwd.indices, x.shape(), args), {&x});
  return fwd.y;
}

Tensor avg_pool2d(const Tensor& x, const ops::Pool2dArgs& args) {
  Tensor y = ops::avg_pool2d(x, args);
  if (needs_grad({&x})) attach(y, std::make_shared<AvgPool2dBackward>(x.shape(), args), {&x});
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::adaptive_avg_pool2d(x, out_h, out_w);
  if (needs_grad({&x})) attach(y, std::make_shared<AdaptiveAvgPool2dBackward>(x.shape()), {&x});
  return y;
}

}  // namespace crfseg
