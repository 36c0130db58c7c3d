// batch_norm and dropout through autograd: finite-difference gradchecks
// (f64) with respect to x, weight and bias in train and eval mode, with and
// without affine parameters and fused ReLU, on contiguous and strided
// inputs; which tensors the batch-norm node keeps; the running statistics
// staying outside the graph; and dropout's mask (statistics, determinism,
// the eval identity, p == 1).
#include <algorithm>
#include <cmath>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

Tensor input(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return random_tensor(shape, seed, DType::f64, lo, hi);
}

void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opts = {}) {
  const GradcheckResult r = gradcheck(fn, inputs, opts);
  CHECK_MESSAGE(r.ok, r.message);
}

using V = const std::vector<Tensor>&;

// Smallest |value| of the batch norm output before its ReLU: finite
// differences of a fused ReLU are only meaningful away from the kink.
double min_abs_preactivation(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& rm, const Tensor& rv,
                             bool training) {
  const std::vector<double> y = values(ops::batch_norm(x, w, b, rm, rv, training, 0.1, 1e-5).y);
  double m = INFINITY;
  for (double v : y) m = std::min(m, std::abs(v));
  return m;
}

}  // namespace

TEST_CASE("gradcheck: batch_norm in training mode") {
  const Tensor x = input({3, 2, 2, 3}, 1, -1.0, 2.0), w = input({2}, 2, 0.5, 1.5), b = input({2}, 3);
  SUBCASE("affine, 4-D") {
    expect_gradcheck([](V t) { return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true); }, {x, w, b});
  }
  SUBCASE("no affine") {
    expect_gradcheck([](V t) { return batch_norm(t[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }, {x});
  }
  SUBCASE("weight only and bias only") {
    expect_gradcheck([](V t) { return batch_norm(t[0], t[1], Tensor(), Tensor(), Tensor(), true); }, {x, w});
    expect_gradcheck([](V t) { return batch_norm(t[0], Tensor(), t[1], Tensor(), Tensor(), true); }, {x, b});
  }
  SUBCASE("2-D [N, C] and 5-D inputs") {
    expect_gradcheck([](V t) { return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true); },
                     {input({5, 3}, 4), input({3}, 5, 0.5, 1.5), input({3}, 6)});
    expect_gradcheck([](V t) { return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true); },
                     {input({2, 2, 2, 1, 3}, 7), input({2}, 8, 0.5, 1.5), input({2}, 9)});
  }
  SUBCASE("N = 1 with spatial > 1, running statistics updated on every call") {
    const Tensor rm = zeros({2}, {DType::f64}), rv = ones({2}, {DType::f64});
    expect_gradcheck([&](V t) { return batch_norm(t[0], t[1], t[2], rm, rv, true, 0.1, 1e-5); },
                     {input({1, 2, 3, 2}, 10), w, b});
  }
  SUBCASE("non-contiguous views of the input") {
    // x [2, 3, 4] transposed to [3, 2, 4]: N = 3, C = 2, strided along both.
    expect_gradcheck([](V t) { return batch_norm(transpose(t[0], 0, 1), t[1], t[2], Tensor(), Tensor(), true); },
                     {input({2, 3, 4}, 11), input({2}, 12, 0.5, 1.5), input({2}, 13)});
    // Every other spatial column.
    expect_gradcheck([](V t) { return batch_norm(slice(t[0], 2, 0, 5, 2), t[1], t[2], Tensor(), Tensor(), true); },
                     {input({3, 2, 5}, 14), input({2}, 15, 0.5, 1.5), input({2}, 16)});
  }
}

TEST_CASE("gradcheck: batch_norm in eval mode uses the running statistics as constants") {
  const Tensor rm = from_vector<double>({0.3, -0.2}, {2}), rv = from_vector<double>({0.8, 1.7}, {2});
  const Tensor x = input({3, 2, 2, 3}, 20), w = input({2}, 21, 0.5, 1.5), b = input({2}, 22);
  expect_gradcheck([&](V t) { return batch_norm(t[0], t[1], t[2], rm, rv, false); }, {x, w, b});
  expect_gradcheck([&](V t) { return batch_norm(t[0], Tensor(), Tensor(), rm, rv, false); }, {x});
  expect_gradcheck([&](V t) { return batch_norm(permute(t[0], {1, 0, 2}), t[1], t[2], rm, rv, false); },
                   {input({2, 4, 3}, 23), w, b});
  // A frozen layer: constant affine parameters, gradient to x only.
  expect_gradcheck([&](V t) { return batch_norm(t[0], w, b, rm, rv, false); }, {input({4, 2}, 24)});
}

TEST_CASE("gradcheck: batch_norm with fused ReLU, inputs away from the kink") {
  const Tensor rm = from_vector<double>({0.1, -0.4}, {2}), rv = from_vector<double>({0.5, 1.5}, {2});
  const Tensor x = input({3, 2, 2, 2}, 30, -2.0, 2.0), w = input({2}, 31, 0.5, 1.5), b = input({2}, 32, -0.3, 0.3);
  // The seeds are chosen so that no output sits within 0.01 of the kink;
  // this guards the choice (an eps of 1e-6 moves outputs by ~1e-6).
  REQUIRE(min_abs_preactivation(x, w, b, Tensor(), Tensor(), true) > 0.01);
  REQUIRE(min_abs_preactivation(x, w, b, rm, rv, false) > 0.01);
  expect_gradcheck([](V t) { return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true, 0.1, 1e-5, true); },
                   {x, w, b});
  expect_gradcheck([&](V t) { return batch_norm(t[0], t[1], t[2], rm, rv, false, 0.1, 1e-5, true); }, {x, w, b});
  // ReLU really clips something here, so the mask is exercised.
  const std::vector<double> y = values(ops::batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1, 1e-5, true).y);
  CHECK(std::count(y.begin(), y.end(), 0.0) > 0);
  CHECK(std::count(y.begin(), y.end(), 0.0) < static_cast<long>(y.size()));
}

TEST_CASE("batch_norm: the node keeps x only when a gradient needs it") {
  const Tensor rm = zeros({2}, {DType::f64}), rv = ones({2}, {DType::f64});
  const Tensor w = input({2}, 41, 0.5, 1.5), b = input({2}, 42);
  for (bool training : {false, true}) {
    CAPTURE(training);
    const Tensor x = input({4, 2, 3}, 40);
    set_requires_grad(x);
    const Tensor y = batch_norm(x, w, b, rm, rv, training);
    // Modify x after the forward. In eval with constant w, dx = g w invstd
    // does not involve x, so x was not saved and backward works; in
    // training dx needs xhat, so the saved x must report the modification.
    ops::mul_(x, 2.0);
    if (training) {
      check_throws_with<AutogradError>([&] { backward(sum(y)); }, "BatchNormBackward: a tensor saved for backward "
                                                                  "was modified by an in-place operation");
    } else {
      backward(sum(y));
      // dx = w invstd per element, invstd = 1 / sqrt(1 + eps).
      std::vector<double> want;
      for (int64_t n = 0; n < 4; ++n)
        for (int64_t c = 0; c < 2; ++c)
          for (int64_t i = 0; i < 3; ++i) want.push_back(w.at({c}) / std::sqrt(1.0 + 1e-5));
      CHECK_CLOSE(grad(x), want, 1e-12, 1e-12);
    }
  }
}

TEST_CASE("batch_norm: running statistics are updated outside the graph") {
  const Tensor x = input({4, 3}, 50);
  set_requires_grad(x);
  const Tensor rm = zeros({3}, {DType::f64}), rv = ones({3}, {DType::f64});
  const uint64_t version = rm.version();
  const Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true);
  CHECK(rm.version() > version);
  CHECK_FALSE(requires_grad(rm));
  CHECK(grad_fn(rm) == nullptr);
  CHECK(std::string(grad_fn(y)->name()) == "BatchNormBackward");
  CHECK(grad_fn(y)->next_edges.size() == 3);  // x, weight, bias; no running statistics
  // Under no-grad the statistics still move (as in torch) but nothing is recorded.
  {
    NoGradGuard no_grad;
    const uint64_t before = rv.version();
    const Tensor y2 = batch_norm(x, Tensor(), Tensor(), rm, rv, true);
    CHECK(rv.version() > before);
    CHECK(grad_fn(y2) == nullptr);
  }
  const Tensor rm_grad = zeros({3}, {DType::f64});
  set_requires_grad(rm_grad);
  check_throws_with<AutogradError>([&] { batch_norm(x, Tensor(), Tensor(), rm_grad, rv, true); },
                                   "batch_norm: running_mean and running_var are buffers");
}

TEST_CASE("gradcheck: dropout with a fixed seed") {
  // A fresh Generator with the same seed inside fn: every call draws the same mask.
  expect_gradcheck([](V t) {
    Generator gen(1234);
    return dropout(t[0], 0.4, true, gen);
  }, {input({4, 5}, 60)});
  expect_gradcheck([](V t) {
    Generator gen(99);
    return dropout(transpose(t[0], 0, 1), 0.25, true, gen);
  }, {input({3, 6}, 61)});
}

TEST_CASE("dropout: the mask keeps 1 - p of the elements and scales them by 1 / (1 - p)") {
  const int64_t n = 1 << 18;
  for (DType dt : {DType::f32, DType::f64}) {
    for (double p : {0.1, 0.5, 0.8}) {
      CAPTURE(p);
      Generator gen(7);
      const std::vector<double> m = values(ops::dropout_mask(zeros({n}, {dt}), p, gen));
      const double scale = dt == DType::f32 ? static_cast<double>(static_cast<float>(1.0 / (1.0 - p))) : 1.0 / (1.0 - p);
      int64_t kept = 0;
      bool only_two_values = true;
      for (double v : m) {
        kept += v != 0.0;
        only_two_values = only_two_values && (v == 0.0 || v == scale);
      }
      CHECK(only_two_values);
      // The kept fraction has std sqrt(p (1 - p) / n) <= 0.001; allow 5 of them.
      const double fraction = static_cast<double>(kept) / static_cast<double>(n);
      CAPTURE(fraction);
      CHECK(std::abs(fraction - (1.0 - p)) < 0.005);
    }
  }
  // p == 1 drops everything, without dividing by zero.
  Generator gen(7);
  const Tensor x = input({3, 4}, 62);
  set_requires_grad(x);
  const Tensor y = dropout(x, 1.0, true, gen);
  CHECK_CLOSE(y, std::vector<double>(12, 0.0), 0, 0);
  backward(sum(y));
  CHECK_CLOSE(grad(x), std::vector<double>(12, 0.0), 0, 0);
}

TEST_CASE("dropout: the same seed gives the same mask, another seed another") {
  const Tensor like = zeros({64, 33});
  Generator a(2024), b(2024), c(2025);
  const std::vector<double> ma = values(ops::dropout_mask(like, 0.5, a));
  const std::vector<double> mb = values(ops::dropout_mask(like, 0.5, b));
  const std::vector<double> mc = values(ops::dropout_mask(like, 0.5, c));
  CHECK(ma == mb);
  CHECK(ma != mc);
  // Exactly one draw per element: both generators are still in step.
  CHECK(a.next_u32() == b.next_u32());
  // Later masks from one generator differ from the first.
  CHECK(values(ops::dropout_mask(like, 0.5, a)) != ma);
  // Through autograd: y = x * mask elementwise, dx = mask.
  Generator d(2024);
  const Tensor x = input({64, 33}, 63, 0.5, 1.5);
  set_requires_grad(x);
  const Tensor y = dropout(x, 0.5, true, d);
  const std::vector<double> xv = values(x), yv = values(y);
  std::vector<double> want(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) want[i] = xv[i] * ma[i];
  CHECK_CLOSE(yv, want, 0, 0);
  backward(sum(y));
  CHECK_CLOSE(grad(x), ma, 0, 0);
}

TEST_CASE("dropout: identity in eval mode and for p == 0; p outside [0, 1] is an error") {
  Generator gen(5);
  const Tensor x = input({3, 4}, 70);
  set_requires_grad(x);
  const std::string before = gen.state();
  CHECK(dropout(x, 0.5, false, gen).is_same(x));
  CHECK(dropout(x, 0.0, true, gen).is_same(x));
  CHECK(gen.state() == before);  // no draws
  check_throws_with<ValueError>([&] { dropout(x, 1.5, false, gen); },
                                "dropout: expected a drop probability p in [0, 1], got 1.5");
  check_throws_with<ValueError>([&] { dropout(x, -0.5, true, gen); }, "got -0.5");
}
