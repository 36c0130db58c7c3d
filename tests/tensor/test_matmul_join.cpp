// matmul (transposed views, batch broadcasting) and concat/stack.
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {
std::vector<double> reference_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2), "ref");
  std::vector<double> out;
  for_each_index(batch, [&](const std::vector<int64_t>& bi) {
    std::vector<int64_t> ia = broadcast_index(bi, Shape(a.shape().begin(), a.shape().end() - 2));
    std::vector<int64_t> ib = broadcast_index(bi, Shape(b.shape().begin(), b.shape().end() - 2));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          auto xa = ia, xb = ib;
          xa.insert(xa.end(), {i, k});
          xb.insert(xb.end(), {k, j});
          acc += a.at(xa) * b.at(xb);
        }
        out.push_back(acc);
      }
  });
  return out;
}
}  // namespace

TEST_CASE("matmul on awkward shapes, transposed views and broadcast batches") {
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {{{1, 1}, {1, 1}},       {{3, 7}, {7, 5}},         {{17, 13}, {13, 1}},
                                   {{2, 5, 4}, {4, 3}},    {{2, 1, 3, 4}, {5, 4, 2}}, {{65, 33}, {33, 31}}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (size_t c = 0; c < cases.size(); ++c) {
      CAPTURE(c);
      const Tensor a = random_tensor(cases[c].a, c, dtype), b = random_tensor(cases[c].b, 100 + c, dtype);
      const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
      CHECK_CLOSE(ops::matmul(a, b), reference_matmul(a, b), tol, tol);
    }
  }
  // A transposed view is consumed as a transpose flag; a doubly strided one is copied.
  const Tensor at = ops::transpose(random_tensor({9, 6}, 1, DType::f64), 0, 1);  // [6, 9]
  const Tensor bt = ops::transpose(random_tensor({4, 9}, 2, DType::f64), 0, 1);  // [9, 4]
  CHECK_CLOSE(ops::matmul(at, bt), reference_matmul(at, bt), 1e-12, 1e-12);
  const Tensor as = ops::slice(ops::slice(random_tensor({12, 18}, 3, DType::f64), 0, 0, 12, 2), 1, 0, 18, 2);
  CHECK_CLOSE(ops::matmul(as, random_tensor({9, 2}, 4, DType::f64)),
              reference_matmul(as, random_tensor({9, 2}, 4, DType::f64)), 1e-12, 1e-12);
}

TEST_CASE("matmul errors") {
  check_throws_with<ShapeError>([] { ops::matmul(zeros({2, 3}), zeros({4, 2})); },
                                "matmul: inner dims differ: [2, 3] @ [4, 2] (3 vs 4)");
  check_throws_with<ShapeError>([] { ops::matmul(zeros({3}), zeros({3, 2})); }, "expected tensors with >= 2 dims");
  check_throws_with<ShapeError>([] { ops::matmul(zeros({2, 2, 3}), zeros({3, 3, 1})); }, "cannot be broadcast");
}

TEST_CASE("concat and stack along any dim") {
  const Tensor a = random_tensor({2, 3, 4}, 1), b = random_tensor({2, 5, 4}, 2);
  const Tensor c = ops::concat({a, ops::contiguous(b)}, 1);
  CHECK(c.shape() == Shape{2, 8, 4});
  for_each_index(c.shape(), [&](const std::vector<int64_t>& i) {
    const double want = i[1] < 3 ? a.at(i) : b.at({i[0], i[1] - 3, i[2]});
    CHECK(c.at(i) == want);
  });
  const Tensor s = ops::stack({a, ops::transpose(ops::transpose(a, 0, 2), 0, 2), a}, -1);
  CHECK(s.shape() == Shape{2, 3, 4, 3});
  CHECK(s.at({1, 2, 3, 1}) == a.at({1, 2, 3}));
  check_throws_with<ShapeError>([&] { ops::concat({a, b}, 0); }, "concat: tensor 1 has shape [2, 5, 4]");
  check_throws_with<ShapeError>([&] { ops::stack({a, b}, 0); }, "stack: tensor 1 has shape");
  check_throws_with<ValueError>([&] { ops::concat({}, 0); }, "at least one tensor");
}

TEST_CASE("factories") {
  CHECK_CLOSE(arange(2, 11, 3), std::vector<double>{2, 5, 8});
  CHECK_CLOSE(arange(5, 0, -2), std::vector<double>{5, 3, 1});
  CHECK(arange(0, 0).numel() == 0);
  CHECK_CLOSE(full({2, 2}, 1.5), std::vector<double>(4, 1.5));
  CHECK(scalar_tensor(3).dim() == 0);
  CHECK(scalar_tensor(3).item() == 3.0);
  check_throws_with<ValueError>([] { arange(0, 1, 0); }, "arange: expected a non-zero step");
  check_throws_with<ShapeError>([] { from_vector<float>({1, 2, 3}, {2, 2}); }, "from_vector: got 3 values for shape [2, 2]");
  check_throws_with<ShapeError>([] { zeros({2, -1}); }, "expected non-negative sizes");
}
