// Elementwise ops against plain reference loops, with broadcasting and
// non-contiguous operands, in f32 and f64.
#include <cmath>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

using BinaryRef = double (*)(double, double);

// Reference broadcasting binary op computed with multi-index arithmetic.
std::vector<double> reference_binary(const Tensor& a, const Tensor& b, BinaryRef f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "ref");
  std::vector<double> out;
  for_each_index(shape, [&](const std::vector<int64_t>& i) {
    out.push_back(f(a.at(broadcast_index(i, a.shape())), b.at(broadcast_index(i, b.shape()))));
  });
  return out;
}

struct ShapePair {
  Shape a, b;
};

}  // namespace

TEST_CASE("binary ops broadcast like numpy, on awkward and strided shapes") {
  const std::vector<ShapePair> cases = {
      {{1}, {1}},           {{7}, {7}},          {{3, 1}, {1, 5}},        {{2, 3, 4}, {4}},
      {{2, 1, 4}, {3, 1}},  {{}, {5, 3}},        {{13, 17}, {13, 1}},     {{1, 1, 1}, {2, 3, 1}},
      {{5, 3, 33}, {5, 1, 33}}, {{300, 129}, {129}},  // large enough to go multi-threaded
  };
  const std::vector<std::pair<ops::BinaryOp, BinaryRef>> fns = {
      {ops::BinaryOp::add, [](double x, double y) { return x + y; }},
      {ops::BinaryOp::sub, [](double x, double y) { return x - y; }},
      {ops::BinaryOp::mul, [](double x, double y) { return x * y; }},
      {ops::BinaryOp::div, [](double x, double y) { return x / y; }},
      {ops::BinaryOp::maximum, [](double x, double y) { return std::max(x, y); }},
      {ops::BinaryOp::minimum, [](double x, double y) { return std::min(x, y); }},
      {ops::BinaryOp::add_relu, [](double x, double y) { return std::max(x + y, 0.0); }},
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (size_t c = 0; c < cases.size(); ++c) {
      // b in [0.5, 2) so division is well conditioned.
      const Tensor a = random_tensor(cases[c].a, 10 + c, dtype);
      const Tensor b = random_tensor(cases[c].b, 50 + c, dtype, 0.5, 2.0);
      for (size_t k = 0; k < fns.size(); ++k) {
        CAPTURE(c);
        CAPTURE(k);
        CHECK_CLOSE(ops::binary(fns[k].first, a, b), reference_binary(a, b, fns[k].second), 1e-6, 1e-6);
      }
    }
  }
}

TEST_CASE("binary ops read non-contiguous views correctly") {
  const Tensor base = random_tensor({6, 8, 5}, 3, DType::f64);
  const Tensor a = ops::slice(ops::permute(base, {2, 0, 1}), 2, 1, 8, 3);  // [5, 6, 3], strided
  const Tensor b = ops::transpose(random_tensor({3, 6}, 4, DType::f64), 0, 1);  // [6, 3] transposed
  REQUIRE_FALSE(a.is_contiguous());
  CHECK_CLOSE(ops::mul(a, b), reference_binary(a, b, [](double x, double y) { return x * y; }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::add(a, ops::unsqueeze(ops::slice(b, 1, 0, 1), 0)),
              reference_binary(a, ops::unsqueeze(ops::slice(b, 1, 0, 1), 0),
                               [](double x, double y) { return x + y; }),
              1e-12, 1e-12);
}

TEST_CASE("unary, scalar and compare ops match std:: math") {
  const Tensor x = ops::slice(random_tensor({5, 11}, 9, DType::f64, 0.1, 3.0), 1, 0, 11, 2);
  const std::vector<double> xs = values(x);
  auto ref = [&](double (*f)(double)) {
    std::vector<double> out;
    for (double v : xs) out.push_back(f(v));
    return out;
  };
  CHECK_CLOSE(ops::unary(ops::UnaryOp::exp, x), ref([](double v) { return std::exp(v); }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::unary(ops::UnaryOp::log, x), ref([](double v) { return std::log(v); }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::unary(ops::UnaryOp::sqrt, x), ref([](double v) { return std::sqrt(v); }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::unary(ops::UnaryOp::tanh, x), ref([](double v) { return std::tanh(v); }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::unary(ops::UnaryOp::sigmoid, ops::scalar_op(ops::ScalarOp::mul, x, -50.0)),
              ref([](double v) { return 1.0 / (1.0 + std::exp(50.0 * v)); }), 1e-12, 1e-9);
  CHECK_CLOSE(ops::unary(ops::UnaryOp::relu, ops::scalar_op(ops::ScalarOp::add, x, -1.5)),
              ref([](double v) { return std::max(v - 1.5, 0.0); }), 0, 0);
  CHECK_CLOSE(ops::scalar_op(ops::ScalarOp::pow, x, 2.5), ref([](double v) { return std::pow(v, 2.5); }), 1e-12, 1e-12);
  CHECK_CLOSE(ops::scalar_op(ops::ScalarOp::rdiv, x, 3.0), ref([](double v) { return 3.0 / v; }), 1e-12, 1e-12);
  const Tensor m = ops::compare(ops::CompareOp::gt, x, scalar_tensor(1.0, {DType::f64}));
  CHECK(m.dtype() == DType::u8);
  CHECK_CLOSE(m, ref([](double v) { return v > 1.0 ? 1.0 : 0.0; }), 0, 0);
  CHECK_CLOSE(ops::where(m, x, zeros_like(x)), ref([](double v) { return v > 1.0 ? v : 0.0; }), 0, 0);
}

TEST_CASE("where selects integer tensors too (targets with an ignore index are made so)") {
  const Tensor t = from_vector<int64_t>({0, 2, 1, 2, 3}, {5});
  const Tensor m = ops::compare(ops::CompareOp::eq, t, full({}, 2, {DType::i64}));
  const Tensor got = ops::where(m, full({}, -100, {DType::i64}), t);
  CHECK(got.dtype() == DType::i64);
  CHECK(values(got) == std::vector<double>{0, -100, 1, -100, 3});
  const Tensor u = from_vector<uint8_t>({1, 0, 1}, {3});
  CHECK(values(ops::where(u, u, full({}, 7, {DType::u8}))) == std::vector<double>{1, 7, 1});
  CHECK_THROWS_AS(ops::where(m, t, zeros({5})), DTypeError);  // i64 with f32: no silent cast
}

TEST_CASE("in-place ops write through views and bump the version counter") {
  Tensor t = zeros({3, 4});
  const uint64_t v0 = t.version();
  ops::add_(ops::slice(t, 0, 1, 2), ones({4}), 2.0);
  CHECK(t.version() > v0);
  CHECK(t.at({1, 3}) == 2.0);
  CHECK(t.at({0, 3}) == 0.0);
  ops::mul_(t, 3.0);
  CHECK(t.at({1, 0}) == 6.0);
  ops::copy_(t, arange(0, 4));  // broadcast copy
  CHECK(t.at({2, 3}) == 3.0);
}

TEST_CASE("elementwise errors name the op, the expected and the actual") {
  const Tensor a = zeros({2, 3}), b = zeros({4}), d = zeros({3}, {DType::f64});
  check_throws_with<ShapeError>([&] { ops::add(a, b); }, "add: shapes [2, 3] and [4] cannot be broadcast");
  check_throws_with<DTypeError>([&] { ops::mul(a, d); }, "mul: expected operands of the same dtype, got f32 and f64");
  check_throws_with<DTypeError>([&] { ops::unary(ops::UnaryOp::exp, zeros({2}, {DType::i32})); },
                                "unary: expected dtype f32 or f64, got i32");
  check_throws_with<ShapeError>([&] { ops::add_(b, a); }, "add_");
}
