// Finite-difference gradient checks (f64) of max_pool2d, avg_pool2d,
// adaptive_avg_pool2d and upsample2d (nearest, bilinear with align_corners
// both ways) on padded / strided / dilated / ceil_mode geometries, up- and
// down-sampling, and non-contiguous input views made inside fn. Max pool
// inputs are a shuffled ramp: no ties, and gaps far wider than eps, so the
// argmax never flips under the finite-difference step.
// Run: build/tests/test_autograd -tc='*pool*,*upsample*'
#include <utility>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

Tensor input(const Shape& shape, uint64_t seed) { return random_tensor(shape, seed, DType::f64); }

// The values 0.05 k (k = 0..n-1, shifted to be centred on 0) in a random order.
Tensor distinct(const Shape& shape, uint64_t seed) {
  const int64_t n = numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) v[k] = 0.05 * static_cast<double>(k) - 0.025 * static_cast<double>(n);
  Generator gen(seed);
  for (int64_t k = n - 1; k > 0; --k) std::swap(v[k], v[gen.next_u32() % (k + 1)]);  // Fisher-Yates
  return from_vector(v, shape);
}

void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(fn, inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

using V = const std::vector<Tensor>&;

}  // namespace

TEST_CASE("gradcheck: max_pool2d") {
  SUBCASE("2x2 stride 2, odd width (last column dropped)") {
    expect_gradcheck([](V x) { return max_pool2d(x[0], {}); }, {distinct({2, 2, 4, 5}, 1)});
  }
  SUBCASE("3x3 stride 2 padding 1, ceil_mode") {
    const ops::Pool2dArgs a{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                            .ceil_mode = true};
    expect_gradcheck([a](V x) { return max_pool2d(x[0], a); }, {distinct({1, 2, 6, 7}, 2)});
  }
  SUBCASE("stride 1 (overlapping windows share argmaxes), dilation, padding") {
    const ops::Pool2dArgs a{.kernel_h = 2, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                            .dil_h = 2, .dil_w = 1};
    expect_gradcheck([a](V x) { return max_pool2d(x[0], a); }, {distinct({1, 1, 6, 7}, 3)});
  }
  SUBCASE("non-contiguous input view") {
    const ops::Pool2dArgs a{.kernel_h = 2, .kernel_w = 2, .stride_h = 1, .stride_w = 2};
    expect_gradcheck([a](V x) { return max_pool2d(transpose(x[0], 2, 3), a); }, {distinct({1, 2, 5, 4}, 4)});
  }
}

TEST_CASE("gradcheck: avg_pool2d") {
  for (bool include : {true, false}) {
    CAPTURE(include);
    const ops::Pool2dArgs a{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                            .ceil_mode = true, .count_include_pad = include};
    expect_gradcheck([a](V x) { return avg_pool2d(x[0], a); }, {input({1, 2, 6, 5}, 10)});
  }
  const ops::Pool2dArgs overlap{.kernel_h = 2, .kernel_w = 3, .stride_h = 1, .stride_w = 2, .pad_h = 1, .pad_w = 0};
  expect_gradcheck([overlap](V x) { return avg_pool2d(slice(x[0], 3, 0, 7, 2), overlap); }, {input({2, 1, 4, 7}, 11)});
}

TEST_CASE("gradcheck: adaptive_avg_pool2d") {
  expect_gradcheck([](V x) { return adaptive_avg_pool2d(x[0], 3, 2); }, {input({2, 2, 7, 5}, 20)});
  expect_gradcheck([](V x) { return adaptive_avg_pool2d(x[0], 1, 1); }, {input({1, 3, 4, 3}, 21)});
  expect_gradcheck([](V x) { return adaptive_avg_pool2d(x[0], 4, 7); }, {input({1, 1, 3, 5}, 22)});
  expect_gradcheck([](V x) { return adaptive_avg_pool2d(permute(x[0], {0, 3, 1, 2}), 2, 3); },
                   {input({1, 5, 4, 2}, 23)});
}

TEST_CASE("gradcheck: upsample2d nearest and bilinear") {
  using ops::UpsampleMode;
  SUBCASE("nearest, up by non-integer factors and down") {
    expect_gradcheck([](V x) { return upsample2d(x[0], 5, 7, UpsampleMode::nearest); }, {input({1, 2, 3, 4}, 30)});
    expect_gradcheck([](V x) { return upsample2d(x[0], 2, 3, UpsampleMode::nearest); }, {input({1, 2, 5, 4}, 31)});
  }
  for (bool align : {false, true}) {
    CAPTURE(align);
    expect_gradcheck([align](V x) { return upsample2d(x[0], 5, 7, UpsampleMode::bilinear, align); },
                     {input({1, 2, 3, 4}, 32)});
    expect_gradcheck([align](V x) { return upsample2d(x[0], 2, 3, UpsampleMode::bilinear, align); },
                     {input({2, 1, 5, 4}, 33)});
    expect_gradcheck([align](V x) { return upsample2d(x[0], 1, 4, UpsampleMode::bilinear, align); },
                     {input({1, 1, 3, 2}, 34)});
  }
  SUBCASE("non-contiguous input view") {
    expect_gradcheck([](V x) { return upsample2d(slice(x[0], 2, 0, 5, 2), 6, 5, UpsampleMode::bilinear); },
                     {input({1, 2, 5, 3}, 35)});
    expect_gradcheck([](V x) { return upsample2d(transpose(x[0], 2, 3), 4, 6, UpsampleMode::nearest); },
                     {input({1, 2, 3, 2}, 36)});
  }
}

TEST_CASE("pool and upsample record a backward node only when a gradient is needed") {
  const Tensor x = distinct({1, 1, 4, 4}, 40);
  CHECK(grad_fn(max_pool2d(x, {})) == nullptr);
  set_requires_grad(x);
  CHECK(std::string(grad_fn(max_pool2d(x, {}))->name()) == "MaxPool2dBackward");
  CHECK(std::string(grad_fn(avg_pool2d(x, {}))->name()) == "AvgPool2dBackward");
  CHECK(std::string(grad_fn(adaptive_avg_pool2d(x, 1, 1))->name()) == "AdaptiveAvgPool2dBackward");
  CHECK(std::string(grad_fn(upsample2d(x, 8, 8, ops::UpsampleMode::bilinear))->name()) ==
        "UpsampleBilinear2dBackward");
  {
    NoGradGuard no_grad;
    CHECK(grad_fn(upsample2d(x, 8, 8, ops::UpsampleMode::nearest)) == nullptr);
  }
  // End to end: the global average's gradient is 1 / (H W) everywhere.
  backward(sum(adaptive_avg_pool2d(x, 1, 1)));
  CHECK_CLOSE(grad(x), std::vector<double>(16, 1.0 / 16), 1e-15, 0.0);
}
