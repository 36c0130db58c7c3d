// Tensor-scalar ops (the scalar is a constant, not differentiated):
//   x + s: dx = g        x * s: dx = g s        s - x: dx = -g
//   s / x: dx = -g s / x^2 = -g y / x           x^p:   dx = g p x^(p-1)
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class ScalarBackward : public Node {
 public:
  ScalarBackward(ops::ScalarOp op, double s, const Tensor& x, const Tensor& y) : op_(op), s_(s) {
    if (op == ops::ScalarOp::pow) x_ = SavedTensor(x);
    if (op == ops::ScalarOp::rdiv) {
      x_ = SavedTensor(x);
      y_ = SavedTensor(y);
    }
  }
  const char* name() const override {
    switch (op_) {
      case ops::ScalarOp::add: return "AddScalarBackward";
      case ops::ScalarOp::mul: return "MulScalarBackward";
      case ops::ScalarOp::pow: return "PowBackward";
      case ops::ScalarOp::rsub: return "RsubScalarBackward";
      case ops::ScalarOp::rdiv: return "RdivScalarBackward";
    }
    return "ScalarBackward";
  }
  std::vector<Tensor> apply(const Tensor& g) override {
    switch (op_) {
      case ops::ScalarOp::add: return {g};
      case ops::ScalarOp::mul: return {ops::scalar_op(ops::ScalarOp::mul, g, s_)};
      case ops::ScalarOp::rsub: return {ops::unary(ops::UnaryOp::neg, g)};
      case ops::ScalarOp::pow: return {ops::pow_scalar_backward(g, x_.unpack(name()), s_)};
      case ops::ScalarOp::rdiv: {
        const Tensor gy_over_x = ops::div(ops::mul(g, y_.unpack(name())), x_.unpack(name()));
        return {ops::unary(ops::UnaryOp::neg, gy_over_x)};
      }
    }
    return {Tensor()};
  }
  void release_saved() override {
    x_.release();
    y_.release();
  }

 private:
  ops::ScalarOp op_;
  double s_;
  SavedTensor x_, y_;
};

Tensor scalar_with_grad(ops::ScalarOp op, const Tensor& x, double s) {
  Tensor y = ops::scalar_op(op, x, s);
  if (needs_grad({&x})) attach(y, std::make_shared<ScalarBackward>(op, s, x, y), {&x});
  return y;
}

}  // namespace

Tensor add_scalar(const Tensor& x, double s) { return scalar_with_grad(ops::ScalarOp::add, x, s); }
Tensor mul_scalar(const Tensor& x, double s) { return scalar_with_grad(ops::ScalarOp::mul, x, s); }
Tensor pow(const Tensor& x, double exponent) { return scalar_with_grad(ops::ScalarOp::pow, x, exponent); }
Tensor rsub_scalar(const Tensor& x, double s) { return scalar_with_grad(ops::ScalarOp::rsub, x, s); }
Tensor rdiv_scalar(const Tensor& x, double s) { return scalar_with_grad(ops::ScalarOp::rdiv, x, s); }

}  // namespace crfseg
