// Finite-difference gradient checks (f64) of conv2d and conv_transpose2d
// with respect to input, weight and bias, on strided/padded/dilated
// geometries and a non-contiguous input view; plus which inputs get grads.
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

Tensor input(const Shape& shape, uint64_t seed) { return random_tensor(shape, seed, DType::f64); }

void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(fn, inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

using V = const std::vector<Tensor>&;

ops::Conv2dArgs args(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh = 1, int64_t dw = 1) {
  ops::Conv2dArgs a;
  a.stride_h = sh, a.stride_w = sw, a.pad_h = ph, a.pad_w = pw, a.dil_h = dh, a.dil_w = dw;
  return a;
}

}  // namespace

TEST_CASE("gradcheck: conv2d") {
  SUBCASE("3x3, padding 1, with bias") {
    expect_gradcheck([](V x) { return conv2d(x[0], x[1], x[2], args(1, 1, 1, 1)); },
                     {input({2, 2, 5, 4}, 1), input({3, 2, 3, 3}, 2), input({3}, 3)});
  }
  SUBCASE("stride 2, dilation 2, uneven padding, no bias") {
    expect_gradcheck([](V x) { return conv2d(x[0], x[1], Tensor(), args(2, 1, 2, 0, 2, 1)); },
                     {input({1, 3, 7, 5}, 4), input({2, 3, 3, 2}, 5)});
  }
  SUBCASE("1x1 (pure GEMM path)") {
    expect_gradcheck([](V x) { return conv2d(x[0], x[1], x[2], {}); },
                     {input({2, 3, 3, 2}, 6), input({4, 3, 1, 1}, 7), input({4}, 8)});
  }
  SUBCASE("non-contiguous input view") {
    expect_gradcheck([](V x) { return conv2d(transpose(x[0], 2, 3), x[1], Tensor(), args(1, 1, 1, 0)); },
                     {input({1, 2, 4, 5}, 9), input({2, 2, 2, 3}, 10)});
  }
}

TEST_CASE("gradcheck: conv_transpose2d") {
  SUBCASE("stride 2, padding 1, output padding 1, with bias") {
    expect_gradcheck([](V x) { return conv_transpose2d(x[0], x[1], x[2], args(2, 2, 1, 1), 1, 1); },
                     {input({1, 3, 3, 2}, 11), input({3, 2, 3, 3}, 12), input({2}, 13)});
  }
  SUBCASE("2x2 stride 2 (the U-Net up-sampling block)") {
    expect_gradcheck([](V x) { return conv_transpose2d(x[0], x[1], x[2], args(2, 2, 0, 0)); },
                     {input({2, 2, 2, 3}, 14), input({2, 3, 2, 2}, 15), input({3}, 16)});
  }
  SUBCASE("dilation 2, no bias") {
    expect_gradcheck([](V x) { return conv_transpose2d(x[0], x[1], Tensor(), args(1, 1, 1, 0, 2, 1)); },
                     {input({1, 2, 3, 3}, 17), input({2, 2, 2, 2}, 18)});
  }
  SUBCASE("output padding >= stride (stride 1, dilation 2, output padding 1), with bias") {
    // The adjoint conv2d's output is then larger than x (torch allows
    // output padding < max(stride, dilation)); the last row and column of y
    // get the bias only.
    expect_gradcheck([](V x) { return conv_transpose2d(x[0], x[1], x[2], args(1, 1, 0, 0, 2, 2), 1, 1); },
                     {input({1, 2, 4, 3}, 19), input({2, 3, 3, 3}, 23), input({3}, 24)});
    const Tensor y = conv_transpose2d(input({1, 2, 4, 3}, 19), input({2, 3, 3, 3}, 23), input({3}, 24),
                                      args(1, 1, 0, 0, 2, 2), 1, 1);
    CHECK(y.shape() == Shape{1, 3, 4 + 4 + 1, 3 + 4 + 1});
  }
}

TEST_CASE("conv2d backward fills only the gradients that are needed") {
  const Tensor x = input({1, 2, 4, 4}, 20), w = input({3, 2, 3, 3}, 21), b = input({3}, 22);
  set_requires_grad(w);
  set_requires_grad(b);
  backward(sum(conv2d(x, w, b, args(1, 1, 1, 1))));
  CHECK(grad(w).defined());
  CHECK(grad(b).defined());
  CHECK_FALSE(grad(x).defined());
  // d sum(y) / d b[k] = number of output pixels of one channel, times N.
  CHECK_CLOSE(grad(b), std::vector<double>(3, 16.0), 1e-12, 0);
}
