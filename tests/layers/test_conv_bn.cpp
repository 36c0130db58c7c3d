// The inference-time conv-BN(-ReLU) fold (layers/conv_bn.h): equal to
// bn(conv(x)) up to rounding wherever it fuses, off wherever a gradient,
// training mode or a module observer needs the two modules, and refolded
// when a source tensor changes.
#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "kernels/cpu/conv2d.h"
#include "layers/conv_bn.h"
#include "layers/sequential.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

// A conv-BN pair with non-trivial statistics and affine parameters.
struct Pair {
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
};
Pair make_pair(int64_t C, int64_t K, int64_t kernel, int64_t stride, bool conv_bias, bool affine, bool relu,
               DType dtype, uint64_t seed) {
  Generator gen(seed);
  Pair p;
  p.conv = std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = C, .out_channels = K, .kernel_h = kernel,
                                                          .kernel_w = kernel, .stride = stride,
                                                          .padding = kernel / 2, .bias = conv_bias, .dtype = dtype},
                                        gen);
  p.bn = std::make_shared<nn::BatchNorm2d>(
      nn::BatchNorm2dOptions{.num_features = K, .affine = affine, .fuse_relu = relu, .dtype = dtype});
  NoGradGuard no_grad;
  ops::copy_(p.bn->running_mean, random_tensor({K}, seed + 1, dtype, -0.5, 0.5));
  ops::copy_(p.bn->running_var, random_tensor({K}, seed + 2, dtype, 0.2, 2.0));
  if (affine) {
    ops::copy_(p.bn->weight, random_tensor({K}, seed + 3, dtype, -1.5, 1.5));
    ops::copy_(p.bn->bias, random_tensor({K}, seed + 4, dtype, -0.5, 0.5));
  }
  p.bn->eval();
  return p;
}

}  // namespace

TEST_CASE("conv_bn: the fold equals bn(conv(x)) for every kind of pair and every convolution path") {
  struct Case {
    int64_t N, C, H, K, kernel, stride;
    bool conv_bias, affine, relu;
  };
  // Shapes for the GEMM path (per image and batch-folded), the direct and
  // Winograd kernels, pointwise and strided convolutions.
  const std::vector<Case> cases = {
      {2, 3, 9, 5, 3, 1, false, true, true},    // few taps: direct kernel
      {2, 8, 7, 70, 3, 1, true, true, false},   // 49 pixels, batch folded
      {1, 17, 20, 40, 1, 1, false, false, true},  // pointwise, no affine
      {2, 64, 24, 64, 3, 1, false, true, true},  // Winograd (2^25 multiply-adds and more)
      {1, 9, 17, 70, 3, 1, true, false, true},   // one image, 289 pixels: per-image GEMM
      {2, 6, 15, 33, 3, 2, false, true, true},   // stride 2
  };
  for (const DType dtype : {DType::f32, DType::f64}) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      INFO("case " << i << (dtype == DType::f32 ? " f32" : " f64"));
      Pair p = make_pair(c.C, c.K, c.kernel, c.stride, c.conv_bias, c.affine, c.relu, dtype, 10 + i);
      const Tensor x = random_tensor({c.N, c.C, c.H, c.H}, 50 + i, dtype);
      if (i == 3) {
        kernels::ConvGeometry g{.N = c.N, .C = c.C, .H = c.H, .W = c.H, .K = c.K, .R = 3, .S = 3, .P = c.H, .Q = c.H};
        g.ph = g.pw = 1;
        CHECK(kernels::cpu::conv2d_forward_takes_winograd(g));
      }
      NoGradGuard no_grad;
      REQUIRE(nn::conv_bn_fuses(*p.conv, *p.bn, x));
      const Tensor want = (*p.bn)((*p.conv)(x));
      const Tensor got = nn::conv_bn(*p.conv, *p.bn, x);
      CHECK(p.bn->folded.weight.defined());
      const double tol = dtype == DType::f32 ? 1e-4 : 1e-11;
      CHECK_CLOSE(got, values(want), tol, tol);
      if (c.relu) CHECK(ops::max(ops::scalar_op(ops::ScalarOp::mul, got, -1.0)).item() <= 0.0);  // min >= 0
    }
  }
}

TEST_CASE("conv_bn: the fold is kept while its sources are unchanged and redone when one changes") {
  Pair p = make_pair(4, 6, 3, 1, true, true, true, DType::f32, 3);
  const Tensor x = random_tensor({2, 4, 8, 8}, 4);
  NoGradGuard no_grad;
  nn::conv_bn(*p.conv, *p.bn, x);
  const Storage* first = &p.bn->folded.weight.storage();
  nn::conv_bn(*p.conv, *p.bn, x);
  CHECK(&p.bn->folded.weight.storage() == first);  // reused
  // Each source, changed in place (its version bumps), gives a fold that matches the two modules again.
  for (Tensor t : {p.conv->weight, p.conv->bias, p.bn->weight, p.bn->bias, p.bn->running_mean, p.bn->running_var}) {
    ops::copy_(t, ops::scalar_op(ops::ScalarOp::add, ops::scalar_op(ops::ScalarOp::mul, t, 0.5), 0.75));
    const Tensor got = nn::conv_bn(*p.conv, *p.bn, x);
    CHECK_CLOSE(got, values((*p.bn)((*p.conv)(x))), 1e-4, 1e-4);
  }
  // A parameter replaced by another tensor of the same version (a checkpoint
  // loaded by assignment): the fold follows the tensor, not its version alone.
  Pair q = make_pair(4, 6, 3, 1, true, true, true, DType::f32, 5);
  nn::conv_bn(*q.conv, *q.bn, x);
  const Tensor replacement = random_tensor(q.conv->weight.shape(), 6);
  REQUIRE(replacement.version() == q.conv->weight.version());
  q.conv->weight = replacement;
  CHECK_CLOSE(nn::conv_bn(*q.conv, *q.bn, x), values((*q.bn)((*q.conv)(x))), 1e-4, 1e-4);
  // The same handle pointed at new storage of the same version, as
  // Module::to moves a parameter to another device (a CUDA -> CPU move
  // left the fold's weights on the GPU): the fold follows the storage.
  nn::conv_bn(*q.conv, *q.bn, x);
  const Tensor moved = random_tensor(q.bn->running_var.shape(), 7, DType::f32, 0.5, 2.0);
  while (moved.version() < q.bn->running_var.version()) moved.bump_version();
  REQUIRE(moved.version() == q.bn->running_var.version());
  q.bn->running_var.impl_ptr()->storage = moved.storage_ptr();
  CHECK_CLOSE(nn::conv_bn(*q.conv, *q.bn, x), values((*q.bn)((*q.conv)(x))), 1e-4, 1e-4);
}

TEST_CASE("conv_bn: training mode, gradients and module observers keep the two modules") {
  Pair p = make_pair(3, 5, 3, 1, false, true, true, DType::f32, 7);
  const Tensor x = random_tensor({2, 3, 6, 6}, 8);
  // Eval mode with grad mode on: the parameters require gradients, so no fold, and they get them.
  CHECK_FALSE(nn::conv_bn_fuses(*p.conv, *p.bn, x));
  backward(sum(nn::conv_bn(*p.conv, *p.bn, x)));
  REQUIRE(grad(p.conv->weight).defined());
  CHECK(ops::max(ops::unary(ops::UnaryOp::abs, grad(p.conv->weight))).item() > 0.0);
  CHECK_FALSE(p.bn->folded.weight.defined());
  {
    NoGradGuard no_grad;
    CHECK(nn::conv_bn_fuses(*p.conv, *p.bn, x));
    p.bn->train();
    CHECK_FALSE(nn::conv_bn_fuses(*p.conv, *p.bn, x));
    p.bn->eval();
    nn::Sequential seq;
    seq.push_back(p.conv);
    seq.push_back(p.bn);
    {
      int calls = 0;
      nn::ForwardObserverGuard observe([&](const nn::Module&, const Tensor&) { ++calls; });
      CHECK_FALSE(nn::conv_bn_fuses(*p.conv, *p.bn, x));
      seq(x);
      CHECK(calls == 3);  // the Sequential, the conv and the batch norm
    }
    CHECK_FALSE(p.bn->folded.weight.defined());
    // Unobserved, the Sequential folds its conv-BN pair.
    CHECK_CLOSE(seq(x), values((*p.bn)((*p.conv)(x))), 1e-4, 1e-4);
    CHECK(p.bn->folded.weight.defined());
  }
}
