// conv2d and conv_transpose2d.
//   conv2d:  y = conv(x, W) + b
//     dx = conv2d_backward_input(g, W)     (the transposed convolution of g)
//     dW = conv2d_backward_weight(g, x)    (correlation of g with x)
//     db = sum of g over N, P, Q
//   conv_transpose2d: y = convT(x, W) + b is the adjoint of conv(., W), so
//     dx = conv(g, W)                      (a plain convolution)
//     dW = conv2d_backward_weight(x, g)    (roles of "grad" and "input" swap)
//     db = sum of g over N, Ho, Wo
// Each Node saves x only when W needs a gradient and W only when x does.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class Conv2dBackward : public Node {
 public:
  Conv2dBackward(const Tensor& x, const Tensor& w, bool has_bias, const ops::Conv2dArgs& args, bool transposed)
      : x_shape_(x.shape()), w_shape_(w.shape()), has_bias_(has_bias), args_(args), transposed_(transposed) {
    if (requires_grad(w)) x_ = SavedTensor(x);
    if (requires_grad(x)) w_ = SavedTensor(w);
  }
  const char* name() const override { return transposed_ ? "ConvTranspose2dBackward" : "Conv2dBackward"; }

  // Gradients for (x, weight, bias); undefined where not needed.
  std::vector<Tensor> apply(const Tensor& g) override {
    std::vector<Tensor> grads(has_bias_ ? 3 : 2);
    if (next_edges[0].node) {
      const Tensor w = w_.unpack(name());
      grads[0] = transposed_ ? ops::conv_transpose2d_backward_input(g, w, x_shape_, args_)
                             : ops::conv2d_backward_input(g, w, x_shape_, args_);
    }
    const bool bias_grad = has_bias_ && next_edges[2].node;
    if (next_edges[1].node) {
      const Tensor x = x_.unpack(name());
      // A conv2d's bias gradient comes from the weight gradient's pass over g.
      grads[1] = transposed_ ? ops::conv_transpose2d_backward_weight(g, x, w_shape_, args_)
                             : ops::conv2d_backward_weight(g, x, w_shape_, args_, bias_grad ? &grads[2] : nullptr);
    }
    if (bias_grad && !grads[2].defined()) grads[2] = ops::conv2d_backward_bias(g);
    return grads;
  }
  void release_saved() override {
    x_.release();
    w_.release();
  }

 private:
  SavedTensor x_, w_;
  Shape x_shape_, w_shape_;
  bool has_bias_;
  ops::Conv2dArgs args_;
  bool transposed_;
};

Tensor record(Tensor y, const Tensor& x, const Tensor& w, const Tensor& bias, const ops::Conv2dArgs& args,
              bool transposed) {
  std::vector<Tensor> inputs{x, w};
  if (bias.defined()) inputs.push_back(bias);
  if (needs_grad({&x, &w, &bias})) {
    attach(y, std::make_shared<Conv2dBackward>(x, w, bias.defined(), args, transposed), inputs);
  }
  return y;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::Conv2dArgs& args) {
  return record(ops::conv2d(x, weight, bias, args), x, weight, bias, args, false);
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::Conv2dArgs& args,
                        int64_t output_pad_h, int64_t output_pad_w) {
  return record(ops::conv_transpose2d(x, weight, bias, args, output_pad_h, output_pad_w), x, weight, bias, args,
                true);
}

}  // namespace crfseg
