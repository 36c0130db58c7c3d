// Broadcasting binary ops: add, sub, mul, div.
//
// With out = f(a, b) broadcast to shape S, the gradient w.r.t. each input is
// the elementwise derivative times g, summed back over the broadcast dims
// (sum_to), because a broadcast input element feeds every output it was
// copied to:
//   add: da = sum_to(g)            db = sum_to(g)
//   sub: da = sum_to(g)            db = -sum_to(g)
//   mul: da = sum_to(g * b)        db = sum_to(g * a)
//   div: da = sum_to(g / b)        db = -sum_to(g * a / b^2) = -sum_to(g * out / b)
//   add_relu (out = max(a + b, 0)): with m = g * [out > 0] ([a + b > 0]),
//        da = sum_to(m)            db = sum_to(m)
// Only what the needed gradients use is saved: mul keeps b only if a needs a
// gradient, and a only if b does.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class BinaryBackward : public Node {
 public:
  BinaryBackward(ops::BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out)
      : op_(op), a_shape_(a.shape()), b_shape_(b.shape()) {
    const bool need_a = requires_grad(a), need_b = requires_grad(b);
    if (op == ops::BinaryOp::mul) {
      if (need_a) b_ = SavedTensor(b);
      if (need_b) a_ = SavedTensor(a);
    } else if (op == ops::BinaryOp::div) {
      b_ = SavedTensor(b);
      if (need_b) out_ = SavedTensor(out);
    } else if (op == ops::BinaryOp::add_relu) {
      out_ = SavedTensor(out);
    }
  }
  const char* name() const override {
    switch (op_) {
      case ops::BinaryOp::add: return "AddBackward";
      case ops::BinaryOp::sub: return "SubBackward";
      case ops::BinaryOp::mul: return "MulBackward";
      case ops::BinaryOp::div: return "DivBackward";
      case ops::BinaryOp::add_relu: return "AddReluBackward";
      default: return "BinaryBackward";
    }
  }
  std::vector<Tensor> apply(const Tensor& g) override {
    const bool need_a = next_edges[0].node != nullptr, need_b = next_edges[1].node != nullptr;
    Tensor ga, gb;
    switch (op_) {
      case ops::BinaryOp::add:
        if (need_a) ga = ops::sum_to(g, a_shape_);
        if (need_b) gb = ops::sum_to(g, b_shape_);
        break;
      case ops::BinaryOp::sub:
        if (need_a) ga = ops::sum_to(g, a_shape_);
        if (need_b) gb = ops::unary(ops::UnaryOp::neg, ops::sum_to(g, b_shape_));
        break;
      case ops::BinaryOp::mul:
        if (need_a) ga = ops::sum_to(ops::mul(g, b_.unpack(name())), a_shape_);
        if (need_b) gb = ops::sum_to(ops::mul(g, a_.unpack(name())), b_shape_);
        break;
      case ops::BinaryOp::div: {
        const Tensor b = b_.unpack(name());
        if (need_a) ga = ops::sum_to(ops::div(g, b), a_shape_);
        if (need_b) {
          gb = ops::unary(ops::UnaryOp::neg,
                          ops::sum_to(ops::div(ops::mul(g, out_.unpack(name())), b), b_shape_));
        }
        break;
      }
      case ops::BinaryOp::add_relu: {
        const Tensor out = out_.unpack(name());
        const Tensor m = ops::unary_backward(ops::UnaryGradOp::relu, g, out, out);  // [out > 0] = [a + b > 0]
        if (need_a) ga = ops::sum_to(m, a_shape_);
        if (need_b) gb = ops::sum_to(m, b_shape_);
        break;
      }
      default:
        CRFSEG_CHECK(false, NotImplementedError, name(), ": no backward for this op");
    }
    return {ga, gb};
  }
  void release_saved() override {
    a_.release();
    b_.release();
    out_.release();
  }

 private:
  ops::BinaryOp op_;
  Shape a_shape_, b_shape_;
  SavedTensor a_, b_, out_;
};

Tensor binary_with_grad(ops::BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = ops::binary(op, a, b);
  if (needs_grad({&a, &b})) attach(out, std::make_shared<BinaryBackward>(op, a, b, out), {&a, &b});
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_with_grad(ops::BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_with_grad(ops::BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_with_grad(ops::BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_with_grad(ops::BinaryOp::div, a, b); }
Tensor add_relu(const Tensor& a, const Tensor& b) { return binary_with_grad(ops::BinaryOp::add_relu, a, b); }

}  // namespace crfseg
