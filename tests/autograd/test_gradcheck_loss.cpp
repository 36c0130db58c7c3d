// Binary cross-entropy with logits and the soft Dice loss: values against
// PyTorch (computed once in f64 with torch 1.13; Dice has no torch builtin,
// so the reference is an independent torch implementation of the formula in
// autograd/ops/loss.cpp), f64 gradchecks, thread independence and errors.
#include <cmath>
#include <omp.h>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

using V = const std::vector<Tensor>&;

void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(fn, inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

// The fixed inputs the torch values below were computed on.
Tensor logits_2x3x2x2() {
  std::vector<double> v(24);
  for (int i = 0; i < 24; ++i) v[i] = 2 * std::sin(1.3 * i + 0.2);
  return from_vector<double>(v, {2, 3, 2, 2});
}
Tensor bce_targets() {
  std::vector<double> v(24);
  for (int i = 0; i < 24; ++i) v[i] = ((i * 7) % 5) / 4.0;
  return from_vector<double>(v, {2, 3, 2, 2});
}
Tensor class_targets() { return from_vector<int64_t>({0, 2, 1, 1, 2, -100, 0, 1}, {2, 2, 2}); }

}  // namespace

TEST_CASE("binary_cross_entropy_with_logits matches torch") {
  const Tensor x = logits_2x3x2x2(), t = bce_targets();
  CHECK(binary_cross_entropy_with_logits(x, t).item() == doctest::Approx(0.9991225385582956).epsilon(1e-12));
  CHECK(binary_cross_entropy_with_logits(x, t, 2.5).item() == doctest::Approx(1.6934325746968162).epsilon(1e-12));
  // No overflow for large logits: l(1000, 0) = 1000, l(-1000, 0) = 0.
  const Tensor big = from_vector<double>({1000.0, -1000.0}, {2});
  CHECK(binary_cross_entropy_with_logits(big, zeros({2}, {DType::f64})).item() == doctest::Approx(500.0));
  // f32 agrees with f64.
  CHECK(binary_cross_entropy_with_logits(ops::to_dtype(x, DType::f32), ops::to_dtype(t, DType::f32)).item() ==
        doctest::Approx(0.9991225385582956).epsilon(1e-6));
}

TEST_CASE("gradcheck: binary_cross_entropy_with_logits") {
  const Tensor t = bce_targets();
  expect_gradcheck([&](V x) { return binary_cross_entropy_with_logits(x[0], t); }, {logits_2x3x2x2()});
  expect_gradcheck([&](V x) { return binary_cross_entropy_with_logits(x[0], t, 0.3); }, {logits_2x3x2x2()});
  // A strided (transposed) input.
  const Tensor tt = ops::contiguous(ops::transpose(t, 1, 3));
  expect_gradcheck([&](V x) { return binary_cross_entropy_with_logits(transpose(x[0], 1, 3), tt); },
                   {logits_2x3x2x2()});
}

TEST_CASE("binary_cross_entropy_with_logits sums the same for any thread count") {
  const Tensor x = random_tensor({3, 70001}, 7, DType::f32, -5, 5), t = random_tensor({3, 70001}, 8, DType::f32, 0, 1);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = binary_cross_entropy_with_logits(x, t).item();
  omp_set_num_threads(3);
  const double three = binary_cross_entropy_with_logits(x, t).item();
  omp_set_num_threads(threads);
  CHECK(one == three);
}

TEST_CASE("dice_loss matches the torch formula") {
  const Tensor x = logits_2x3x2x2(), t = class_targets();
  CHECK(dice_loss(x, t).item() == doctest::Approx(0.5192967034300109).epsilon(1e-12));
  CHECK(dice_loss(x, t, {.smooth = 0.5, .include_background = false}).item() ==
        doctest::Approx(0.6243759679534353).epsilon(1e-12));
  const Tensor t1 = from_vector<int64_t>({0, 1, 1, 0, 1, -100, 0, 1}, {2, 2, 2});
  CHECK(dice_loss(ops::contiguous(ops::slice(x, 1, 0, 1)), t1).item() ==
        doctest::Approx(0.25279917004835717).epsilon(1e-12));
  // A perfect, confident prediction has loss ~0.
  const Tensor perfect = ops::scalar_op(ops::ScalarOp::mul, ops::one_hot(t, 3, DType::f64), 60.0);
  CHECK(dice_loss(perfect, t).item() == doctest::Approx(0.0).epsilon(1e-12));
}

TEST_CASE("gradcheck: dice_loss") {
  const Tensor t = class_targets();
  expect_gradcheck([&](V x) { return dice_loss(x[0], t); }, {logits_2x3x2x2()});
  expect_gradcheck([&](V x) { return dice_loss(x[0], t, {.smooth = 0.1, .include_background = false}); },
                   {logits_2x3x2x2()});
  const Tensor t1 = from_vector<int64_t>({0, 1, 1, 0, 1, -100, 0, 1}, {2, 2, 2});
  expect_gradcheck([&](V x) { return dice_loss(x[0], t1); },
                   {ops::contiguous(ops::slice(logits_2x3x2x2(), 1, 0, 1))});
}

TEST_CASE("loss errors name the op, the expectation and what came") {
  const Tensor x = logits_2x3x2x2();
  check_throws_with<ShapeError>([&] { binary_cross_entropy_with_logits(x, zeros({2, 3}, {DType::f64})); },
                                "binary_cross_entropy_with_logits: expected target of shape [2, 3, 2, 2]");
  check_throws_with<DTypeError>([&] { binary_cross_entropy_with_logits(x, ops::to_dtype(x, DType::f32)); },
                                "expected target of dtype f64");
  check_throws_with<ValueError>([&] { binary_cross_entropy_with_logits(x, bce_targets(), -1.0); },
                                "invalid pos_weight -1");
  check_throws_with<ShapeError>([&] { dice_loss(x, zeros({2, 2}, {DType::i64})); },
                                "dice_loss: expected target of shape [2, 2, 2]");
  check_throws_with<ValueError>([&] { dice_loss(x, full({2, 2, 2}, 3, {DType::i64})); },
                                "one_hot: target 3 at flat index 0 is outside [0, 3)");
  check_throws_with<DTypeError>([&] { dice_loss(x, ops::to_dtype(class_targets(), DType::f64)); },
                                "one_hot: expected i64 class indices, got f64");
  check_throws_with<DTypeError>([&] { ops::one_hot(class_targets(), 3, DType::i64); },
                                "one_hot: expected dtype f32 or f64, got i64");
}
