// Unary elementwise ops. With y = f(x) and incoming gradient g, dx = g * f'(x):
//   neg: -g               exp: g * y              log: g / x
//   sqrt: g / (2 y)       abs: g * sign(x)        relu: g * [x > 0]
//   sigmoid: g y (1 - y)  tanh: g (1 - y^2)       square: 2 g x
//   reciprocal: -g y^2
// The fused kernel ops::unary_backward evaluates each in one pass; each op
// saves x or y, whichever its derivative is written in.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class UnaryBackward : public Node {
 public:
  UnaryBackward(const char* name, ops::UnaryGradOp op, const Tensor& x, const Tensor& y)
      : name_(name), op_(op), x_(x), y_(y) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::unary_backward(op_, g, x_.unpack(name_), y_.unpack(name_))};
  }
  void release_saved() override {
    x_.release();
    y_.release();
  }

 private:
  const char* name_;
  ops::UnaryGradOp op_;
  SavedTensor x_, y_;
};

class NegBackward : public Node {
 public:
  const char* name() const override { return "NegBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::unary(ops::UnaryOp::neg, g)}; }
};

Tensor unary_with_grad(const char* node_name, ops::UnaryOp op, ops::UnaryGradOp grad_op, const Tensor& x) {
  Tensor y = ops::unary(op, x);
  if (needs_grad({&x})) attach(y, std::make_shared<UnaryBackward>(node_name, grad_op, x, y), {&x});
  return y;
}

}  // namespace

Tensor neg(const Tensor& x) {
  Tensor y = ops::unary(ops::UnaryOp::neg, x);
  if (needs_grad({&x})) attach(y, std::make_shared<NegBackward>(), {&x});
  return y;
}

using ops::UnaryGradOp;
using ops::UnaryOp;
Tensor exp(const Tensor& x) { return unary_with_grad("ExpBackward", UnaryOp::exp, UnaryGradOp::exp, x); }
Tensor log(const Tensor& x) { return unary_with_grad("LogBackward", UnaryOp::log, UnaryGradOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary_with_grad("SqrtBackward", UnaryOp::sqrt, UnaryGradOp::sqrt, x); }
Tensor abs(const Tensor& x) { return unary_with_grad("AbsBackward", UnaryOp::abs, UnaryGradOp::abs, x); }
Tensor relu(const Tensor& x) { return unary_with_grad("ReluBackward", UnaryOp::relu, UnaryGradOp::relu, x); }
Tensor sigmoid(const Tensor& x) {
  return unary_with_grad("SigmoidBackward", UnaryOp::sigmoid, UnaryGradOp::sigmoid, x);
}
Tensor tanh(const Tensor& x) { return unary_with_grad("TanhBackward", UnaryOp::tanh, UnaryGradOp::tanh, x); }
Tensor square(const Tensor& x) {
  return unary_with_grad("SquareBackward", UnaryOp::square, UnaryGradOp::square, x);
}
Tensor reciprocal(const Tensor& x) {
  return unary_with_grad("ReciprocalBackward", UnaryOp::reciprocal, UnaryGradOp::reciprocal, x);
}

}  // namespace crfseg
