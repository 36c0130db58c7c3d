// upsample2d, nearest and bilinear (raw op: tensor/ops_upsample.cpp).
//
// Derivative: for a fixed output size the op is linear in x. Per (n, c)
// plane it is y = A_h x A_w^T, where row oh of A_h [P, H] holds the taps of
// output row oh (nearest: a single 1 at the source row; bilinear: weights
// 1 - lambda and lambda at rows i0 and i1, see kernels/ref/upsample.h) and
// A_w [Q, W] likewise for columns. Hence
//   dx = A_h^T g A_w,
// i.e. every output gradient is scattered back to the input positions it
// was read from, with the same weights; positions read by several outputs
// (upsampling) sum their contributions, positions never read (nearest
// downsampling) get 0. The weights depend only on the sizes, so nothing but
// x's shape is saved. Double backward is not supported.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class Upsample2dBackward : public Node {
 public:
  Upsample2dBackward(Shape x_shape, ops::UpsampleMode mode, bool align_corners)
      : x_shape_(std::move(x_shape)), mode_(mode), align_corners_(align_corners) {}
  const char* name() const override {
    return mode_ == ops::UpsampleMode::nearest ? "UpsampleNearest2dBackward" : "UpsampleBilinear2dBackward";
  }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::upsample2d_backward(g, x_shape_, mode_, align_corners_)};
  }

 private:
  Shape x_shape_;
  ops::UpsampleMode mode_;
  bool align_corners_;
};

}  // namespace

Tensor upsample2d(const Tensor& x, int64_t out_h, int64_t out_w, ops::UpsampleMode mode, bool align_corners) {
  Tensor y = ops::upsample2d(x, out_h, out_w, mode, align_corners);
  if (needs_grad({&x})) attach(y, std::make_shared<Upsample2dBackward>(x.shape(), mode, align_corners), {&x});
  return y;
}

}  // namespace crfseg
