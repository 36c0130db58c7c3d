// softmax / log_softmax over any dim and the fused cross-entropy, against
// plain reference loops.
#include <cmath>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

std::vector<double> reference_softmax(const Tensor& x, int64_t dim, bool log) {
  std::vector<double> out;
  for_each_index(x.shape(), [&](const std::vector<int64_t>& i) {
    double mx = -INFINITY, sum = 0;
    auto j = i;
    for (j[dim] = 0; j[dim] < x.shape()[dim]; ++j[dim]) mx = std::max(mx, x.at(j));
    for (j[dim] = 0; j[dim] < x.shape()[dim]; ++j[dim]) sum += std::exp(x.at(j) - mx);
    out.push_back(log ? x.at(i) - mx - std::log(sum) : std::exp(x.at(i) - mx) / sum);
  });
  return out;
}

}  // namespace

TEST_CASE("softmax and log_softmax over every dim, including inner sizes past one block") {
  const std::vector<Shape> shapes = {{1}, {7}, {3, 5}, {2, 3, 301}, {4, 1, 2, 3}};
  for (size_t s = 0; s < shapes.size(); ++s) {
    // Large logits (x40) check the max subtraction: a naive exp would overflow in f32.
    const Tensor x = ops::scalar_op(ops::ScalarOp::mul, random_tensor(shapes[s], s, DType::f32), 40.0);
    for (int64_t d = 0; d < x.dim(); ++d) {
      CAPTURE(s);
      CAPTURE(d);
      CHECK_CLOSE(ops::softmax(x, d), reference_softmax(x, d, false), 1e-6, 1e-5);
      CHECK_CLOSE(ops::log_softmax(x, d), reference_softmax(x, d, true), 1e-5, 1e-5);
    }
  }
  const Tensor strided = ops::transpose(random_tensor({5, 4}, 9, DType::f64), 0, 1);
  CHECK_CLOSE(ops::softmax(strided, -1), reference_softmax(ops::contiguous(strided), 1, false), 1e-12, 1e-12);
}

TEST_CASE("cross_entropy matches the weighted, ignore-aware definition") {
  const int64_t N = 3, C = 4, H = 2, W = 5;
  const Tensor logits = random_tensor({N, C, H, W}, 1, DType::f64, -3, 3);
  std::vector<int64_t> t;
  Generator g(2);
  for (int64_t i = 0; i < N * H * W; ++i) t.push_back(i % 7 == 3 ? -100 : g.next_u32() % C);
  const Tensor target = from_vector(t, {N, H, W});
  const Tensor weight = from_vector<double>({0.5, 1.0, 2.0, 0.25}, {C});
  for (bool weighted : {false, true}) {
    double loss = 0, wsum = 0;
    for_each_index({N, H, W}, [&](const std::vector<int64_t>& p) {
      const int64_t cls = static_cast<int64_t>(target.at(p));
      if (cls == -100) return;
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c < C; ++c) mx = std::max(mx, logits.at({p[0], c, p[1], p[2]}));
      for (int64_t c = 0; c < C; ++c) sum += std::exp(logits.at({p[0], c, p[1], p[2]}) - mx);
      const double nll = -(logits.at({p[0], cls, p[1], p[2]}) - mx - std::log(sum));
      const double w = weighted ? weight.at({cls}) : 1.0;
      loss += w * nll;
      wsum += w;
    });
    const auto out = ops::cross_entropy(logits, target, weighted ? weight : Tensor(), -100);
    CHECK(out.loss.item() == doctest::Approx(loss / wsum).epsilon(1e-12));
  }
  // Every position ignored: NaN, as in torch.
  const auto all_ignored = ops::cross_entropy(logits, full({N, H, W}, -100, {DType::i64}), Tensor(), -100);
  CHECK(std::isnan(all_ignored.loss.item()));
}

TEST_CASE("cross_entropy rejects bad targets, shapes and dtypes") {
  const Tensor logits = zeros({2, 3});
  check_throws_with<ValueError>([&] { ops::cross_entropy(logits, from_vector<int64_t>({1, 3}, {2}), Tensor(), -100); },
                                "cross_entropy: target 3 at flat position 1 is outside [0, 3)");
  check_throws_with<ShapeError>([&] { ops::cross_entropy(logits, zeros({3}, {DType::i64}), Tensor(), -100); },
                                "expected target of shape [2] for logits [2, 3], got [3]");
  check_throws_with<DTypeError>([&] { ops::cross_entropy(logits, zeros({2}, {DType::i32}), Tensor(), -100); },
                                "expected i64 class-index targets, got i32");
  check_throws_with<ShapeError>([&] { ops::cross_entropy(logits, zeros({2}, {DType::i64}), ones({2}), -100); },
                                "expected class weights [3]");
  // The raw backward checks what it is given, too (it would read out of bounds).
  const ops::CrossEntropyForward fwd = ops::cross_entropy(logits, zeros({2}, {DType::i64}), Tensor(), -100);
  check_throws_with<ShapeError>(
      [&] { ops::cross_entropy_backward(ones({}), fwd, zeros({3}, {DType::i64}), Tensor(), -100); },
      "cross_entropy_backward: expected target of shape [2] for logits [2, 3], got [3]");
  check_throws_with<ShapeError>(
      [&] { ops::cross_entropy_backward(ones({}), fwd, zeros({2}, {DType::i64}), ones({4}), -100); },
      "cross_entropy_backward: expected class weights [3]");
  check_throws_with<ShapeError>(
      [&] { ops::cross_entropy_backward(ones({2}), fwd, zeros({2}, {DType::i64}), Tensor(), -100); },
      "cross_entropy_backward: expected the loss's gradient (one element), got [2]");
  CHECK(values(ops::cross_entropy_backward(ones({}), fwd, zeros({2}, {DType::i64}), Tensor(), -100)).size() == 6);
}
