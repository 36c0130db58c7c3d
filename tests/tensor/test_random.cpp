// Seeded generator: determinism, state round trip, moments, init bounds.
#include <cmath>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

TEST_CASE("same seed, same stream; different seed, different stream") {
  Generator g1(42), g2(42), g3(43);
  const Tensor a = randn({1000}, {}, g1), b = randn({1000}, {}, g2), c = randn({1000}, {}, g3);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  CHECK(a.to_vector<float>() != c.to_vector<float>());
}

TEST_CASE("generator state round-trips mid-stream") {
  Generator g(7);
  (void)randn({3}, {}, g);  // leaves a cached Box-Muller value behind
  const std::string state = g.state();
  const std::vector<float> next = randn({5}, {}, g).to_vector<float>();
  Generator h(0);
  h.set_state(state);
  CHECK(randn({5}, {}, h).to_vector<float>() == next);
  CHECK_THROWS_AS(h.set_state("not a state"), ValueError);
}

TEST_CASE("uniform and normal have the right moments") {
  Generator g(1);
  const std::vector<double> u = values(rand({200000}, {DType::f64}, g));
  const std::vector<double> n = values(randn({200000}, {DType::f64}, g));
  auto mean_var = [](const std::vector<double>& v) {
    double m = 0, s = 0;
    for (double x : v) m += x;
    m /= v.size();
    for (double x : v) s += (x - m) * (x - m);
    return std::pair{m, s / v.size()};
  };
  auto [um, uv] = mean_var(u);
  auto [nm, nv] = mean_var(n);
  CHECK(std::abs(um - 0.5) < 0.005);
  CHECK(std::abs(uv - 1.0 / 12) < 0.002);
  CHECK(std::abs(nm) < 0.01);
  CHECK(std::abs(nv - 1.0) < 0.02);
  for (double x : u) REQUIRE((x >= 0 && x < 1));
}

TEST_CASE("Kaiming and Xavier follow torch.nn.init's formulas") {
  Generator g(3);
  const Tensor w = Tensor::empty({64, 32, 3, 3});
  kaiming_uniform_(w, 0.0, g);
  const double bound = std::sqrt(3.0) * std::sqrt(2.0) / std::sqrt(32.0 * 9);
  const Tensor mx = ops::max(ops::unary(ops::UnaryOp::abs, w));
  CHECK(mx.item() <= bound);
  CHECK(mx.item() > 0.95 * bound);
  xavier_uniform_(w, 1.0, g);
  const double xb = std::sqrt(6.0 / (32.0 * 9 + 64.0 * 9));
  CHECK(ops::max(ops::unary(ops::UnaryOp::abs, w)).item() <= xb);
  kaiming_normal_(w, 0.0, g);
  const double var = ops::mean(ops::unary(ops::UnaryOp::square, w)).item();
  CHECK(std::abs(var - 2.0 / (32 * 9)) < 0.1 * 2.0 / (32 * 9));
  CHECK(compute_fans({10, 4, 5}).fan_in == 20);
  check_throws_with<ShapeError>([] { compute_fans({5}); }, "compute_fans: expected a weight with >= 2 dims");
}

TEST_CASE("uniform_ and normal_ on a view draw the numbers a contiguous tensor of its shape gets") {
  for (const bool normal : {false, true}) {
    CAPTURE(normal);
    auto draw = [&](const Tensor& t) {
      Generator g(5);
      normal ? normal_(t, 1.0, 2.0, g) : uniform_(t, -1.0, 3.0, g);
    };
    const Tensor want = Tensor::empty({4, 3}, {DType::f64});
    draw(want);
    // A transposed view: row-major over the view's [4, 3], not the storage's order.
    const Tensor base = zeros({3, 4}, {DType::f64});
    const Tensor t = ops::transpose(base, 0, 1);
    REQUIRE_FALSE(t.is_contiguous());
    draw(t);
    CHECK(values(t) == values(want));
    // A strided slice: only its elements change.
    const Tensor wide = zeros({4, 7}, {DType::f64});
    draw(ops::slice(wide, 1, 1, 7, 2));
    CHECK(values(ops::slice(wide, 1, 1, 7, 2)) == values(want));
    for (const int64_t c : {0, 2, 4, 6}) CHECK(values(ops::slice(wide, 1, c, c + 1)) == std::vector<double>(4, 0.0));
  }
}
