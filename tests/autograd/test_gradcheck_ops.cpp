// Finite-difference gradient checks (f64) for every differentiable op, on
// awkward shapes, broadcasting and non-contiguous views. Each case feeds the
// op through views made inside fn, so the op sees strided inputs.
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

Tensor input(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return random_tensor(shape, seed, DType::f64, lo, hi);
}

// Values in +-[0.3, 1.3): away from the kinks of abs and relu at 0.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  const Tensor mag = input(shape, seed, 0.3, 1.3);
  const Tensor sign = ops::scalar_op(ops::ScalarOp::add,
                                     ops::scalar_op(ops::ScalarOp::mul,
                                                    ops::to_dtype(ops::compare(ops::CompareOp::gt, input(shape, seed + 1),
                                                                               zeros({}, {DType::f64})),
                                                                  DType::f64),
                                                    2.0),
                                     -1.0);
  return ops::mul(mag, sign);
}

void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opts = {}) {
  const GradcheckResult r = gradcheck(fn, inputs, opts);
  CHECK_MESSAGE(r.ok, r.message);
}

using V = const std::vector<Tensor>&;

}  // namespace

TEST_CASE("gradcheck: broadcasting binary ops, contiguous and strided") {
  SUBCASE("add") { expect_gradcheck([](V x) { return add(x[0], x[1]); }, {input({3, 1, 4}, 1), input({5, 1}, 2)}); }
  SUBCASE("sub") { expect_gradcheck([](V x) { return sub(x[0], x[1]); }, {input({2, 3}, 3), input({3}, 4)}); }
  SUBCASE("mul, transposed lhs") {
    expect_gradcheck([](V x) { return mul(transpose(x[0], 0, 1), x[1]); }, {input({4, 3}, 5), input({3, 1}, 6)});
  }
  SUBCASE("div, sliced operands") {
    expect_gradcheck([](V x) { return div(slice(x[0], 1, 0, 5, 2), x[1]); },
                     {input({2, 5}, 7), input({1, 3}, 8, 0.5, 2.0)});
  }
  SUBCASE("same tensor on both sides") { expect_gradcheck([](V x) { return mul(x[0], x[0]); }, {input({7}, 9)}); }
  SUBCASE("add_relu, broadcast and transposed") {
    // a in +-[0.3, 1.3), b in [-0.1, 0.1): a + b stays 0.2 away from relu's kink,
    // and both signs occur, so both the passed and the zeroed gradients are checked.
    expect_gradcheck([](V x) { return add_relu(transpose(x[0], 0, 2), x[1]); },
                     {away_from_zero({4, 1, 3}, 16), input({5, 1}, 17, -0.1, 0.1)});
  }
}

TEST_CASE("gradcheck: scalar ops") {
  const Tensor pos = input({2, 3}, 11, 0.5, 2.0);
  expect_gradcheck([](V x) { return add_scalar(x[0], 1.5); }, {input({5}, 10)});
  expect_gradcheck([](V x) { return mul_scalar(permute(x[0], {1, 0}), -2.0); }, {input({2, 3}, 12)});
  expect_gradcheck([](V x) { return pow(x[0], 2.7); }, {pos});
  expect_gradcheck([](V x) { return rsub_scalar(x[0], 3.0); }, {input({4}, 13)});
  expect_gradcheck([](V x) { return rdiv_scalar(x[0], 2.0); }, {input({3, 2}, 14, 0.5, 2.0)});
  expect_gradcheck([](V x) { return 1.0 - x[0] / 4.0 + 2.0 * x[0] - 3.0; }, {input({3}, 15)});
}

TEST_CASE("gradcheck: unary ops") {
  const Tensor pos = input({3, 5}, 20, 0.2, 2.0);
  const Tensor any = input({3, 5}, 21, -2.0, 2.0);
  expect_gradcheck([](V x) { return neg(x[0]); }, {any});
  expect_gradcheck([](V x) { return exp(slice(x[0], 0, 1, 3)); }, {any});
  expect_gradcheck([](V x) { return log(x[0]); }, {pos});
  expect_gradcheck([](V x) { return sqrt(transpose(x[0], 0, 1)); }, {pos});
  expect_gradcheck([](V x) { return abs(x[0]); }, {away_from_zero({4, 3}, 22)});
  expect_gradcheck([](V x) { return relu(x[0]); }, {away_from_zero({13}, 23)});
  expect_gradcheck([](V x) { return sigmoid(x[0]); }, {any});
  expect_gradcheck([](V x) { return tanh(x[0]); }, {any});
  expect_gradcheck([](V x) { return square(x[0]); }, {any});
  expect_gradcheck([](V x) { return reciprocal(x[0]); }, {pos});
}

TEST_CASE("gradcheck: reductions over any dims") {
  const Tensor t = input({2, 3, 4}, 30);
  expect_gradcheck([](V x) { return sum(x[0]); }, {t});
  expect_gradcheck([](V x) { return sum(x[0], {0, 2}); }, {t});
  expect_gradcheck([](V x) { return sum(permute(x[0], {2, 0, 1}), {-1}, true); }, {t});
  expect_gradcheck([](V x) { return mean(x[0], {1}); }, {t});
  expect_gradcheck([](V x) { return mean(x[0]); }, {t});
  expect_gradcheck([](V x) { return max(x[0], {2}); }, {t});
  expect_gradcheck([](V x) { return max(x[0], {0, 1}, true); }, {t});
  expect_gradcheck([](V x) { return max(transpose(x[0], 0, 2)); }, {t});
}

TEST_CASE("gradcheck: matmul, 2-D, batched with broadcasting, transposed") {
  expect_gradcheck([](V x) { return matmul(x[0], x[1]); }, {input({3, 5}, 40), input({5, 2}, 41)});
  expect_gradcheck([](V x) { return matmul(x[0], x[1]); }, {input({2, 1, 3, 4}, 42), input({3, 4, 2}, 43)});
  expect_gradcheck([](V x) { return matmul(transpose(x[0], 0, 1), transpose(x[1], 0, 1)); },
                   {input({4, 3}, 44), input({2, 4}, 45)});
  expect_gradcheck([](V x) { return matmul(x[0], x[0]); }, {input({3, 3}, 46)});
}

TEST_CASE("gradcheck: views, copies and casts") {
  const Tensor t = input({2, 3, 4}, 50);
  expect_gradcheck([](V x) { return reshape(x[0], {4, -1}); }, {t});
  expect_gradcheck([](V x) { return reshape(transpose(x[0], 0, 2), {6, 4}); }, {t});
  expect_gradcheck([](V x) { return permute(x[0], {1, 2, 0}); }, {t});
  expect_gradcheck([](V x) { return slice(x[0], 2, 1, 4, 2); }, {t});
  expect_gradcheck([](V x) { return slice(slice(x[0], 0, 1, 2), 1, -2, 3); }, {t});
  expect_gradcheck([](V x) { return unsqueeze(x[0], 1); }, {t});
  expect_gradcheck([](V x) { return squeeze(slice(x[0], 1, 1, 2), 1); }, {t});
  expect_gradcheck([](V x) { return expand(x[0], {3, 2, 5}); }, {input({2, 1}, 51)});
  expect_gradcheck([](V x) { return flatten(x[0], 1); }, {t});
  expect_gradcheck([](V x) { return contiguous(permute(x[0], {2, 1, 0})); }, {t});
  // Through f32 and back: the cast is linear, so a large eps is exact up to f32 rounding.
  expect_gradcheck([](V x) { return to_dtype(to_dtype(x[0], DType::f32), DType::f64); }, {input({5}, 52)},
                   {.eps = 1e-2, .atol = 1e-4, .rtol = 1e-3});
}

TEST_CASE("gradcheck: concat and stack") {
  expect_gradcheck([](V x) { return concat({x[0], transpose(x[1], 0, 1), x[0]}, 1); },
                   {input({2, 3}, 60), input({1, 2}, 61)});
  expect_gradcheck([](V x) { return stack({x[0], x[1]}, 1); }, {input({3, 2}, 62), input({3, 2}, 63)});
}

TEST_CASE("gradcheck: a composite, two-layer network with a softmax loss") {
  expect_gradcheck(
      [](V x) {
        const Tensor h = relu(add(matmul(x[0], x[1]), x[2]));
        const Tensor logits = matmul(h, x[3]);
        const Tensor shifted = sub(logits, max(logits, {1}, true));
        return mean(sub(log(sum(exp(shifted), {1}, true)), slice(shifted, 1, 0, 1)));
      },
      {input({5, 3}, 70), input({3, 4}, 71), input({4}, 72), input({4, 3}, 73)});
}

namespace {

// An exp whose backward is wrong on purpose (2 e^x instead of e^x).
class WrongExpBackward : public Node {
 public:
  explicit WrongExpBackward(const Tensor& y) : y_(y) {}
  const char* name() const override { return "WrongExpBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::scalar_op(ops::ScalarOp::mul, ops::mul(g, y_.unpack(name())), 2.0)};
  }

 private:
  SavedTensor y_;
};

Tensor wrong_exp(const Tensor& x) {
  Tensor y = ops::unary(ops::UnaryOp::exp, x);
  if (needs_grad({&x})) attach(y, std::make_shared<WrongExpBackward>(y), {&x});
  return y;
}

}  // namespace

TEST_CASE("gradcheck catches a deliberately wrong backward") {
  const GradcheckResult r = gradcheck([](V x) { return wrong_exp(x[0]); }, {input({4}, 80)});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("mismatch for input 0") != std::string::npos);
}

TEST_CASE("gradcheck: softmax, log_softmax and cross_entropy") {
  expect_gradcheck([](V x) { return softmax(x[0], 1); }, {input({2, 3, 4}, 90)});
  expect_gradcheck([](V x) { return log_softmax(x[0], 0); }, {input({3, 5}, 91)});
  expect_gradcheck([](V x) { return log_softmax(transpose(x[0], 0, 1), -1); }, {input({4, 3}, 92)});
  const Tensor target = from_vector<int64_t>({0, 2, -100, 1, 1, 0}, {2, 3});
  const Tensor weight = from_vector<double>({0.5, 2.0, 1.5}, {3});
  expect_gradcheck([&](V x) { return cross_entropy(x[0], target); }, {input({2, 3, 3}, 93)});
  expect_gradcheck([&](V x) { return cross_entropy(x[0], target, {.weight = weight}); }, {input({2, 3, 3}, 94)});
  const Tensor flat_target = from_vector<int64_t>({0, 2, 1, 1, 0, 2}, {6});
  expect_gradcheck([&](V x) { return cross_entropy(x[0], flat_target, {.weight = Tensor(), .ignore_index = 0}); },
                   {input({6, 3}, 95)});
}
