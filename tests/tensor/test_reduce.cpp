// Reductions over every subset of dims against a plain reference.
#include <cmath>
#include <limits>
#include <random>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

// Reference: out[kept index] = fold over the reduced block in row-major order.
struct RefReduce {
  std::vector<double> sum, max;
  std::vector<int64_t> argmax;  // position in the block
};

RefReduce reference_reduce(const Tensor& t, const std::vector<int64_t>& dims) {
  Shape kept_shape, red_shape;
  for (int64_t d = 0; d < t.dim(); ++d) {
    const bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    (r ? red_shape : kept_shape).push_back(t.shape()[d]);
  }
  RefReduce out;
  for_each_index(kept_shape, [&](const std::vector<int64_t>& k) {
    double s = 0, m = -std::numeric_limits<double>::infinity();
    int64_t arg = -1, j = 0;
    for_each_index(red_shape, [&](const std::vector<int64_t>& r) {
      std::vector<int64_t> idx;
      size_t ki = 0, ri = 0;
      for (int64_t d = 0; d < t.dim(); ++d) {
        const bool red = std::find(dims.begin(), dims.end(), d) != dims.end();
        idx.push_back(red ? r[ri++] : k[ki++]);
      }
      const double v = t.at(idx);
      s += v;
      if (v > m) {
        m = v;
        arg = j;
      }
      ++j;
    });
    out.sum.push_back(s);
    out.max.push_back(m);
    out.argmax.push_back(arg);
  });
  return out;
}

}  // namespace

TEST_CASE("sum, mean and max over every subset of dims, contiguous and strided") {
  const Tensor base = random_tensor({3, 5, 7, 2}, 21, DType::f64);
  const std::vector<Tensor> inputs = {base, ops::permute(base, {2, 0, 3, 1}), ops::slice(base, 2, 1, 7, 2)};
  for (size_t n = 0; n < inputs.size(); ++n) {
    const Tensor& t = inputs[n];
    for (int mask = 1; mask < (1 << t.dim()); ++mask) {
      std::vector<int64_t> dims;
      for (int64_t d = 0; d < t.dim(); ++d)
        if (mask & (1 << d)) dims.push_back(d);
      CAPTURE(n);
      CAPTURE(mask);
      const RefReduce ref = reference_reduce(t, dims);
      int64_t block = 1;
      for (int64_t d : dims) block *= t.shape()[d];
      std::vector<double> ref_mean;
      for (double s : ref.sum) ref_mean.push_back(s / block);
      CHECK_CLOSE(ops::sum(t, dims), ref.sum, 1e-12, 1e-12);
      CHECK_CLOSE(ops::mean(t, dims, true), ref_mean, 1e-12, 1e-12);
      auto [mx, idx] = ops::max_with_index(t, dims, false);
      CHECK_CLOSE(mx, ref.max, 0, 0);
      CHECK(idx.to_vector<int64_t>() == ref.argmax);
    }
  }
}

TEST_CASE("keepdim shapes, negative dims, argmax and sum_to") {
  const Tensor t = random_tensor({4, 3, 5}, 2, DType::f32);
  CHECK(ops::sum(t, {-1}, true).shape() == Shape{4, 3, 1});
  CHECK(ops::sum(t, {0, 2}).shape() == Shape{3});
  CHECK(ops::sum(t).shape() == Shape{});
  const Tensor am = ops::argmax(t, 1);
  CHECK(am.shape() == Shape{4, 5});
  CHECK(am.dtype() == DType::i64);
  for_each_index(am.shape(), [&](const std::vector<int64_t>& i) {
    const int64_t best = static_cast<int64_t>(am.at(i));
    for (int64_t c = 0; c < 3; ++c) CHECK(t.at({i[0], best, i[1]}) >= t.at({i[0], c, i[1]}));
  });
  // sum_to undoes broadcasting: [4,3,5] -> [3,1] sums dims 0 and 2.
  const Tensor st = ops::sum_to(t, {3, 1});
  CHECK(st.shape() == Shape{3, 1});
  CHECK_CLOSE(ops::reshape(st, {3}), values(ops::sum(t, {0, 2})), 1e-5, 1e-5);
}

TEST_CASE("large reductions are deterministic and accurate") {
  const Tensor t = random_tensor({64, 4099}, 5, DType::f32);
  const Tensor s1 = ops::sum(t, {1}), s2 = ops::sum(t, {1});
  CHECK(s1.to_vector<float>() == s2.to_vector<float>());
  double total = 0;
  for (double v : values(t)) total += v;
  CHECK(std::abs(ops::sum(t).item() - total) < 1e-3);
}

TEST_CASE("reduction errors") {
  const Tensor t = zeros({2, 3});
  check_throws_with<ShapeError>([&] { ops::sum(t, {2}); }, "sum: dim 2 out of range");
  check_throws_with<ShapeError>([&] { ops::sum(t, {1, -1}); }, "sum: dim repeated");
  check_throws_with<ShapeError>([&] { ops::max(zeros({0, 3}), {0}); }, "max: reduction over zero elements");
}

namespace {
// Labels in [lo, hi], some replaced by `ignore` (seeded).
Tensor labels(const Shape& shape, uint32_t seed, int64_t lo, int64_t hi, int64_t ignore) {
  std::mt19937 rng(seed);
  std::vector<int64_t> v(static_cast<size_t>(numel(shape)));
  for (auto& x : v) x = rng() % 7 == 0 ? ignore : lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
  return from_vector<int64_t>(v, shape);
}
}  // namespace

TEST_CASE("confusion_counts against a plain count, with ignored targets and bad classes refused") {
  for (int64_t classes : {1, 3, 13}) {
    const Shape shape{2, 1, 5, 7};
    const Tensor t = labels(shape, 1, 0, classes - 1, -100), p = labels(shape, 2, 0, classes - 1, 0);
    std::vector<int64_t> want(static_cast<size_t>(classes * classes), 0);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t ti = t.data<int64_t>()[i], pi = p.data<int64_t>()[i];
      if (ti != -100) ++want[static_cast<size_t>(ti * classes + pi)];
    }
    const Tensor got = ops::confusion_counts(p, t, classes, -100);
    CHECK(got.shape() == Shape{classes, classes});
    CHECK(got.to_vector<int64_t>() == want);
    // Views are read as they lie: the transposed pair gives the same counts.
    CHECK(ops::confusion_counts(ops::transpose(p, 2, 3), ops::transpose(t, 2, 3), classes, -100).to_vector<int64_t>() ==
          want);
  }
  // Nothing to count, and everything ignored.
  CHECK(ops::confusion_counts(empty({0}, {DType::i64}), empty({0}, {DType::i64}), 2, 0).to_vector<int64_t>() ==
        std::vector<int64_t>(4, 0));
  CHECK(ops::confusion_counts(full({3}, 9, {DType::i64}), full({3}, 9, {DType::i64}), 2, 9).to_vector<int64_t>() ==
        std::vector<int64_t>(4, 0));
  // The first bad pair is named; a bad prediction under an ignored target is not one.
  const Tensor t = from_vector<int64_t>({5, 0, 1, -1, 2}, {5}), p = from_vector<int64_t>({7, 0, 1, 0, 3}, {5});
  check_throws_with<ValueError>([&] { ops::confusion_counts(p, t, 3, 5); },
                                "confusion_counts: class outside [0, 3) at flat index 3: target -1, prediction 0");
  check_throws_with<ValueError>([&] { ops::confusion_counts(p, t, 3, -1); },
                                "class outside [0, 3) at flat index 0: target 5, prediction 7");
  check_throws_with<DTypeError>([&] { ops::confusion_counts(p.to(DType::f32), t, 3, 5); }, "expected i64");
  check_throws_with<ShapeError>([&] { ops::confusion_counts(p, ops::slice(t, 0, 0, 4), 3, 5); }, "differ in shape");
  check_throws_with<ValueError>([&] { ops::confusion_counts(p, t, 0, 5); }, "expected between 1 and 65536 classes");
  check_throws_with<ValueError>([&] { ops::confusion_counts(Tensor(), t, 3, 5); }, "undefined");
}

TEST_CASE("confusion_counts with add_to: a running count, add_to left unchanged") {
  const Tensor t1 = labels({3, 4, 5}, 7, 0, 3, -100), p1 = labels({3, 4, 5}, 8, 0, 3, 0);
  const Tensor t2 = labels({2, 9}, 9, 0, 3, -100), p2 = labels({2, 9}, 10, 0, 3, 0);
  const Tensor first = ops::confusion_counts(p1, t1, 4, -100);
  const std::vector<int64_t> before = first.to_vector<int64_t>();
  const Tensor running = ops::confusion_counts(p2, t2, 4, -100, first);
  const std::vector<int64_t> second = ops::confusion_counts(p2, t2, 4, -100).to_vector<int64_t>();
  std::vector<int64_t> want = before;
  for (size_t i = 0; i < want.size(); ++i) want[i] += second[i];
  CHECK(running.to_vector<int64_t>() == want);
  CHECK(first.to_vector<int64_t>() == before);
  CHECK(running.raw_data() != first.raw_data());
  // A bad pair throws and leaves add_to as it was.
  const Tensor bad_t = from_vector<int64_t>({1, 4}, {2}), bad_p = from_vector<int64_t>({1, 1}, {2});
  check_throws_with<ValueError>([&] { ops::confusion_counts(bad_p, bad_t, 4, -100, first); },
                                "at flat index 1: target 4, prediction 1");
  CHECK(first.to_vector<int64_t>() == before);
  check_throws_with<ShapeError>([&] { ops::confusion_counts(p2, t2, 4, -100, zeros({3, 3}, {DType::i64})); },
                                "expected add_to i64 [4, 4], got");
  check_throws_with<ShapeError>([&] { ops::confusion_counts(p2, t2, 4, -100, zeros({4, 4}, {DType::f32})); },
                                "expected add_to i64 [4, 4]");
}
