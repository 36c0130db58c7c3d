// Batch norm: the tuned kernels (kernels/cpu/batchnorm.*) against the
// reference (kernels/ref/batchnorm.*) on awkward shapes that reach both
// layouts and every chunking edge, in train and eval mode, with and without
// affine parameters and fused ReLU; the forward and backward formulas on a
// small case worked out by hand; the running-statistics update against its
// formula; numerical stability with a large offset; bitwise determinism
// across thread counts; and the raw ops' error messages. Synchronised batch
// norm: replicas on threads (tests/support/thread_replicas.h), each with a
// slice of a batch, against the reference on the whole batch, with unequal
// slices and loss weights, and a finite-difference check of the synced op.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/batchnorm_rules.h"
#include "kernels/channel_chunks.h"
#include "kernels/cpu/batchnorm.h"
#include "kernels/ref/batchnorm.h"
#include "tests/support/helpers.h"
#include "tests/support/thread_replicas.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

struct Geometry {
  int64_t N, C, inner;
};

Geometry geometry(const Shape& shape) {
  Geometry g{shape[0], shape[1], 1};
  for (size_t d = 2; d < shape.size(); ++d) g.inner *= shape[d];
  return g;
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <typename T>
constexpr DType dtype_of_v = std::is_same_v<T, float> ? DType::f32 : DType::f64;

// Everything one forward + backward produces.
struct Outputs {
  Tensor y, mean, invstd, running_mean, running_var, dx, dweight, dbias;
};

struct Case {
  Tensor x, weight, bias, running_mean, running_var, grad;
  bool training = true, relu = false;
};

template <typename T>
Case make_case(const Shape& shape, bool training, bool affine, bool relu, uint64_t seed) {
  const DType dt = dtype_of_v<T>;
  const int64_t C = shape[1];
  Case k;
  // Mean ~0.5 and spread ~1.4: the statistics have something to remove.
  k.x = random_tensor(shape, seed, dt, -2.0, 3.0);
  if (affine) {
    k.weight = random_tensor({C}, seed + 1, dt, -1.5, 1.5);
    k.bias = random_tensor({C}, seed + 2, dt, -0.5, 0.5);
  }
  k.running_mean = random_tensor({C}, seed + 3, dt, -0.5, 0.5);
  k.running_var = random_tensor({C}, seed + 4, dt, 0.5, 2.0);
  k.grad = random_tensor(shape, seed + 5, dt, -1.0, 1.0);
  k.training = training;
  k.relu = relu;
  return k;
}

// Runs one kernel set (Ref = true: kernels::ref) on a case. The backward is
// given `y_for_mask` (the reference's y) and the reference's statistics, so
// both backward kernels see identical inputs even where f32 rounding moves
// an output across the ReLU kink.
template <typename T, bool Ref>
Outputs run(const Case& k, const Outputs* ref_forward, double eps = 1e-5, double momentum = 0.1,
            kernels::ReplicaSync* sync = nullptr) {
  const Geometry g = geometry(k.x.shape());
  const TensorOptions opts{dtype_of_v<T>};
  Outputs o;
  o.y = Tensor::empty(k.x.shape(), opts);
  o.mean = Tensor::empty({g.C}, opts);
  o.invstd = Tensor::empty({g.C}, opts);
  o.running_mean = ops::clone(k.running_mean);
  o.running_var = ops::clone(k.running_var);
  if (k.training) {
    auto fwd = Ref ? kernels::ref::batchnorm_forward_train<T> : kernels::cpu::batchnorm_forward_train<T>;
    fwd(ptr<T>(k.x), ptr<T>(k.weight), ptr<T>(k.bias), ptr<T>(o.y), ptr<T>(o.mean), ptr<T>(o.invstd),
        ptr<T>(o.running_mean), ptr<T>(o.running_var), g.N, g.C, g.inner, momentum, eps, k.relu, sync);
  } else {
    auto fwd = Ref ? kernels::ref::batchnorm_forward_eval<T> : kernels::cpu::batchnorm_forward_eval<T>;
    fwd(ptr<T>(k.x), ptr<T>(k.weight), ptr<T>(k.bias), ptr<T>(k.running_mean), ptr<T>(k.running_var), ptr<T>(o.y),
        ptr<T>(o.invstd), g.N, g.C, g.inner, eps, k.relu);
    o.mean = ops::clone(k.running_mean);
  }
  const Outputs& stats = ref_forward ? *ref_forward : o;
  o.dx = Tensor::empty(k.x.shape(), opts);
  o.dbias = Tensor::empty({g.C}, opts);
  if (k.weight.defined()) o.dweight = Tensor::empty({g.C}, opts);
  auto bwd = Ref ? kernels::ref::batchnorm_backward<T> : kernels::cpu::batchnorm_backward<T>;
  bwd(ptr<T>(k.grad), ptr<T>(k.x), k.relu ? ptr<T>(stats.y) : nullptr, ptr<T>(k.weight), ptr<T>(stats.mean),
      ptr<T>(stats.invstd), ptr<T>(o.dx), ptr<T>(o.dweight), ptr<T>(o.dbias), g.N, g.C, g.inner, k.training,
      sync);
  return o;
}

template <typename T>
void check_against_ref(const Shape& shape, uint64_t seed) {
  // f32: a few ulps of O(1) values; f64: double accumulation on both sides.
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  for (bool training : {true, false}) {
    for (bool affine : {false, true}) {
      for (bool relu : {false, true}) {
        CAPTURE(shape_str(shape));
        CAPTURE(training);
        CAPTURE(affine);
        CAPTURE(relu);
        const Case k = make_case<T>(shape, training, affine, relu, seed);
        const Outputs want = run<T, true>(k, nullptr);
        const Outputs got = run<T, false>(k, &want);
        CHECK_CLOSE(got.y, values(want.y), tol, tol);
        CHECK_CLOSE(got.mean, values(want.mean), tol, tol);
        CHECK_CLOSE(got.invstd, values(want.invstd), tol, tol);
        CHECK_CLOSE(got.running_mean, values(want.running_mean), tol, tol);
        CHECK_CLOSE(got.running_var, values(want.running_var), tol, tol);
        CHECK_CLOSE(got.dx, values(want.dx), tol, tol);
        CHECK_CLOSE(got.dbias, values(want.dbias), tol, tol);
        if (affine) CHECK_CLOSE(got.dweight, values(want.dweight), tol, tol);
        if (relu) {
          const std::vector<double> y = values(got.y);
          CHECK(*std::min_element(y.begin(), y.end()) >= 0.0);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("batchnorm: cpu kernels match the reference on awkward shapes") {
  const std::vector<Shape> shapes = {
      {4, 1, 5, 5},     // C = 1
      {1, 3, 7, 7},     // N = 1, spatial > 1
      {3, 5, 7, 11},    // primes
      {2, 3},           // 2-D, two values per channel (the minimum for training)
      {13, 7},          // 2-D [N, C]: column layout
      {70, 300},        // column layout: several row blocks and feature blocks
      {5, 4, 3},        // tiny spatial: column layout with inner > 1
      {150, 3, 2},      // column layout, last row block partial
      {2, 3, 2, 3, 5},  // 5-D
      {300, 2, 17},     // strip layout, many strips per chunk, last chunk partial
      {3, 2, 4100},     // strips longer than a chunk: split, last piece short
  };
  for (size_t s = 0; s < shapes.size(); ++s) {
    check_against_ref<float>(shapes[s], 10 * s + 1);
    check_against_ref<double>(shapes[s], 10 * s + 1);
  }
}

// The CUDA kernels' split of each channel into chunks, and their threads'
// walks of a chunk (kernels/channel_chunks.h), run here on the CPU: together
// they must visit every value of every channel exactly once, each thread in
// increasing order, within the planned number of splits.
TEST_CASE("batchnorm: the CUDA channel chunks cover every value once") {
  struct Case {
    int64_t N, C, inner, threads;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 256},     {7, 3, 1, 256},       {1, 1, 8192, 256},   {1, 1, 8193, 256},  {3, 2, 8633, 256},
      {2, 5, 10007, 256}, {16, 1, 4096, 256},   {3, 2, 97, 7},       {1000, 2, 3, 256},  {4, 1, 8191, 13},
      {5, 600, 20, 256},  {2, 3, 40000, 256},
  };
  for (const Case& t : cases) {
    INFO("N=", t.N, " C=", t.C, " inner=", t.inner, " threads=", t.threads);
    const int64_t M = t.N * t.inner;
    const kernels::ChannelChunks plan = kernels::channel_chunks(t.N, t.C, t.inner);
    REQUIRE(plan.splits >= 1);
    REQUIRE(plan.chunk >= 1);
    CHECK(plan.splits * plan.chunk >= M);
    CHECK((plan.splits - 1) * plan.chunk < std::max<int64_t>(M, 1));  // no empty split
    CHECK(plan.splits * t.C <= std::max<int64_t>(1024, t.C));
    if (plan.splits > 1) CHECK(plan.chunk >= 8192 / 2);
    std::vector<int> visits(static_cast<size_t>(t.N * t.C * t.inner), 0);
    bool ordered = true, in_channel = true;
    for (int64_t c = 0; c < t.C; ++c) {
      for (int64_t s = 0; s < plan.splits; ++s) {
        for (int64_t tid = 0; tid < t.threads; ++tid) {
          int64_t last = -1;
          kernels::walk_channel_chunk(c, t.C, t.inner, plan.begin(s), plan.end(s, M), tid, t.threads, [&](int64_t k) {
            ordered = ordered && k > last;
            last = k;
            in_channel = in_channel && (k / t.inner) % t.C == c;
            ++visits[static_cast<size_t>(k)];
          });
        }
      }
    }
    CHECK(ordered);
    CHECK(in_channel);
    CHECK(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }));
  }
  // The split counts the kernels get: one block per channel for small
  // channels, up to 1024 blocks in all for large ones.
  CHECK(kernels::channel_chunks(16, 64, 256 * 256).splits == 16);
  CHECK(kernels::channel_chunks(16, 1024, 16 * 16).splits == 1);
  CHECK(kernels::channel_chunks(2, 3, 100).splits == 1);
  CHECK(kernels::channel_chunks(3, 2, 8633).splits == 4);
}

TEST_CASE("batchnorm: eval backward needs no x, and then gives the same dx") {
  for (const Shape& shape : {Shape{6, 4, 9, 5}, Shape{9, 4}}) {
    CAPTURE(shape_str(shape));
    const Case k = make_case<double>(shape, /*training=*/false, /*affine=*/true, /*relu=*/false, 7);
    const Outputs want = run<double, true>(k, nullptr);
    const Geometry g = geometry(shape);
    const Tensor dx = Tensor::empty(shape, {DType::f64}), dbias = Tensor::empty({g.C}, {DType::f64});
    kernels::cpu::batchnorm_backward<double>(ptr<double>(k.grad), nullptr, nullptr, ptr<double>(k.weight),
                                             ptr<double>(want.mean), ptr<double>(want.invstd), ptr<double>(dx),
                                             nullptr, ptr<double>(dbias), g.N, g.C, g.inner, false);
    CHECK_CLOSE(dx, values(want.dx), 1e-12, 1e-12);
    CHECK_CLOSE(dbias, values(want.dbias), 1e-12, 1e-12);
  }
}

namespace {

// x [N=2, C=2, inner=2] chosen so every statistic is exact in binary:
// channel 0 holds {0, 0, 2, 2} (mean 1, var 1), channel 1 {1, 5, 1, 5}
// (mean 3, var 4). Flat order is n, c, i.
const std::vector<double> kX = {0, 0, 1, 5, 2, 2, 1, 5};
const std::vector<double> kW = {2, -1}, kB = {0.5, 1};

}  // namespace

TEST_CASE("batchnorm: training forward and backward on a hand-worked case") {
  const Tensor x = from_vector(kX, {2, 2, 2});
  const Tensor w = from_vector(kW, {2}), b = from_vector(kB, {2});
  Tensor rm = from_vector<double>({0, 0}, {2}), rv = from_vector<double>({1, 1}, {2});
  // eps = 0 keeps invstd exact: 1 and 1/2. xhat: ch0 {-1,-1,1,1}, ch1 {-1,1,-1,1}.
  const ops::BatchNormForward f = ops::batch_norm(x, w, b, rm, rv, true, 0.1, 0.0);
  CHECK_CLOSE(f.y, {-1.5, -1.5, 2, 0, 2.5, 2.5, 2, 0}, 0, 0);
  CHECK_CLOSE(f.mean, {1, 3}, 0, 0);
  CHECK_CLOSE(f.invstd, {1, 0.5}, 0, 0);
  // running = 0.9 running + 0.1 stat, with the unbiased variances 4/3 and 16/3.
  CHECK_CLOSE(rm, {0.1, 0.3}, 1e-15, 0);
  CHECK_CLOSE(rv, {0.9 + 0.4 / 3, 0.9 + 1.6 / 3}, 1e-15, 0);

  // g = 1 at x[0,0,0] and x[0,1,1]. ch0 (w 2, invstd 1): mean g = 1/4,
  // mean g xhat = -1/4, dx = 2 (g - 1/4 + xhat / 4) = {1, -1, 0, 0}.
  // ch1 (w -1, invstd 1/2): mean g = 1/4, mean g xhat = 1/4,
  // dx = -1/2 (g - 1/4 - xhat / 4) = {0, -1/4, 0, 1/4}.
  const Tensor g = from_vector<double>({1, 0, 0, 1, 0, 0, 0, 0}, {2, 2, 2});
  const ops::BatchNormGrads d = ops::batch_norm_backward(g, x, w, f, true, false);
  CHECK_CLOSE(d.dx, {1, -1, 0, -0.25, 0, 0, 0, 0.25}, 1e-15, 0);
  CHECK_CLOSE(d.dweight, {-1, 1}, 1e-15, 0);
  CHECK_CLOSE(d.dbias, {1, 1}, 1e-15, 0);

  // The oracle agrees with the hand values too.
  std::vector<double> y(8), mean(2), invstd(2), dx(8), dw(2), db(2);
  kernels::ref::batchnorm_forward_train<double>(kX.data(), kW.data(), kB.data(), y.data(), mean.data(),
                                                invstd.data(), nullptr, nullptr, 2, 2, 2, 0.1, 0.0, false);
  CHECK_CLOSE(y, {-1.5, -1.5, 2, 0, 2.5, 2.5, 2, 0}, 0, 0);
  const std::vector<double> gv = values(g);
  kernels::ref::batchnorm_backward<double>(gv.data(), kX.data(), nullptr, kW.data(), mean.data(), invstd.data(),
                                           dx.data(), dw.data(), db.data(), 2, 2, 2, true);
  CHECK_CLOSE(dx, {1, -1, 0, -0.25, 0, 0, 0, 0.25}, 1e-15, 0);
}

TEST_CASE("batchnorm: fused ReLU on the hand-worked case") {
  const Tensor x = from_vector(kX, {2, 2, 2});
  const Tensor w = from_vector(kW, {2}), b = from_vector(kB, {2});
  const ops::BatchNormForward f = ops::batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1, 0.0, true);
  // y = 0 exactly at two places: clamped outputs and the zero both get no gradient.
  CHECK_CLOSE(f.y, {0, 0, 2, 0, 2.5, 2.5, 2, 0}, 0, 0);
  // g = 1 everywhere; the mask keeps ch0 {0,0,1,1} and ch1 {1,0,1,0}.
  // Without ReLU: dweight = sum xhat = 0, dbias = 4. With it: dweight = {2, -2}, dbias = {2, 2},
  // and dx = 0 (gm is affine in xhat within each channel, which the formula projects out).
  const ops::BatchNormGrads d = ops::batch_norm_backward(ones({2, 2, 2}, {DType::f64}), x, w, f, true, true);
  CHECK_CLOSE(d.dweight, {2, -2}, 1e-15, 0);
  CHECK_CLOSE(d.dbias, {2, 2}, 1e-15, 0);
  CHECK_CLOSE(d.dx, std::vector<double>(8, 0.0), 1e-15, 0);
}

TEST_CASE("batchnorm: eval mode on the hand-worked case") {
  const Tensor x = from_vector(kX, {2, 2, 2});
  const Tensor w = from_vector(kW, {2}), b = from_vector(kB, {2});
  const Tensor rm = from_vector<double>({1, 2}, {2}), rv = from_vector<double>({3, 0}, {2});
  const uint64_t version = rm.version();
  // eps = 1: invstd = {1/2, 1}. ch0: (x - 1)/2 * 2 + 0.5; ch1: (x - 2) * -1 + 1.
  const ops::BatchNormForward f = ops::batch_norm(x, w, b, rm, rv, false, 0.1, 1.0);
  CHECK_CLOSE(f.y, {-0.5, -0.5, 2, -2, 1.5, 1.5, 2, -2}, 0, 0);
  CHECK_CLOSE(f.invstd, {0.5, 1}, 0, 0);
  CHECK_CLOSE(f.mean, {1, 2}, 0, 0);
  CHECK(f.mean.storage_ptr() != rm.storage_ptr());  // a copy, not the buffer
  CHECK(rm.version() == version);                   // eval never writes the buffers
  CHECK_CLOSE(rm, {1, 2}, 0, 0);
  // dx = g w invstd = {1, -1} per channel; dweight = sum xhat = {0, 4}; dbias = 4.
  const ops::BatchNormGrads d = ops::batch_norm_backward(ones({2, 2, 2}, {DType::f64}), x, w, f, false, false);
  CHECK_CLOSE(d.dx, {1, 1, -1, -1, 1, 1, -1, -1}, 0, 0);
  CHECK_CLOSE(d.dweight, {0, 4}, 0, 0);
  CHECK_CLOSE(d.dbias, {4, 4}, 0, 0);
  // Without x (a frozen layer), dx is the same and dweight is not computed.
  const ops::BatchNormGrads no_x = ops::batch_norm_backward(ones({2, 2, 2}, {DType::f64}), Tensor(), w, f, false, false);
  CHECK_CLOSE(no_x.dx, values(d.dx), 0, 0);
  CHECK(!no_x.dweight.defined());
  CHECK_CLOSE(no_x.dbias, {4, 4}, 0, 0);
}

TEST_CASE("batchnorm: running statistics follow torch's update, in place") {
  const double momentum = 0.3;
  for (const Shape& shape : {Shape{4, 3, 5}, Shape{6, 3}}) {
    CAPTURE(shape_str(shape));
    const Tensor x = random_tensor(shape, 3, DType::f64, -1.0, 4.0);
    const Geometry g = geometry(shape);
    // Hand formulas: mean and unbiased variance per channel.
    std::vector<double> sum(3, 0.0), sq(3, 0.0);
    for_each_index(shape, [&](const std::vector<int64_t>& i) { sum[i[1]] += x.at(i); });
    const double M = static_cast<double>(g.N * g.inner);
    for_each_index(shape, [&](const std::vector<int64_t>& i) {
      const double d = x.at(i) - sum[i[1]] / M;
      sq[i[1]] += d * d;
    });
    const std::vector<double> rm0 = {0.5, -1.0, 2.0}, rv0 = {1.0, 0.25, 3.0};
    std::vector<double> want_mean, want_var, want_invstd;
    for (int64_t c = 0; c < 3; ++c) {
      want_mean.push_back((1 - momentum) * rm0[c] + momentum * sum[c] / M);
      want_var.push_back((1 - momentum) * rv0[c] + momentum * sq[c] / (M - 1));
      want_invstd.push_back(1.0 / std::sqrt(sq[c] / M + 1e-5));  // biased variance normalises
    }
    const Tensor rm = from_vector(rm0, {3}), rv = from_vector(rv0, {3});
    const uint64_t vm = rm.version(), vv = rv.version();
    const ops::BatchNormForward f = ops::batch_norm(x, Tensor(), Tensor(), rm, rv, true, momentum, 1e-5);
    CHECK_CLOSE(rm, want_mean, 1e-14, 1e-14);
    CHECK_CLOSE(rv, want_var, 1e-14, 1e-14);
    CHECK_CLOSE(f.invstd, want_invstd, 1e-14, 1e-14);
    CHECK(rm.version() > vm);
    CHECK(rv.version() > vv);

    // Strided buffers (every other element of a [6] tensor) are updated in place too.
    const Tensor big_m = from_vector<double>({0.5, 9, -1.0, 9, 2.0, 9}, {6});
    const Tensor big_v = from_vector<double>({1.0, 9, 0.25, 9, 3.0, 9}, {6});
    const Tensor sm = ops::slice(big_m, 0, 0, 6, 2), sv = ops::slice(big_v, 0, 0, 6, 2);
    ops::batch_norm(x, Tensor(), Tensor(), sm, sv, true, momentum, 1e-5);
    CHECK_CLOSE(sm, want_mean, 1e-14, 1e-14);
    CHECK_CLOSE(sv, want_var, 1e-14, 1e-14);
    CHECK_CLOSE(ops::slice(big_m, 0, 1, 6, 2), {9, 9, 9}, 0, 0);  // the gaps are untouched
  }
}

TEST_CASE("batchnorm: statistics stay accurate under a large offset") {
  // x = offset + d, with d = +-k/64 in pairs so mean(d) = 0 and var(d) is
  // known exactly; both are exactly representable next to the offset. A
  // one-pass E[x^2] - E[x]^2 loses everything here (offset^2 / var ~ 1e16).
  auto check = [](auto tag, double offset, const Shape& shape, double tol) {
    using T = decltype(tag);
    const Geometry g = geometry(shape);
    std::vector<T> x(g.N * g.C * g.inner);
    std::vector<double> sq(g.C, 0.0);
    for (int64_t n = 0; n < g.N; ++n) {
      for (int64_t c = 0; c < g.C; ++c) {
        for (int64_t i = 0; i < g.inner; ++i) {
          const int64_t j = n * g.inner + i;  // position inside the channel
          const double d = ((j / 2) % 64 + 1) / 64.0 * (j % 2 == 0 ? 1.0 : -1.0) * (c + 1);
          x[(n * g.C + c) * g.inner + i] = static_cast<T>(offset + d);
          sq[c] += d * d;
        }
      }
    }
    const double M = static_cast<double>(g.N * g.inner);
    std::vector<T> y(x.size()), mean(g.C), invstd(g.C);
    kernels::cpu::batchnorm_forward_train<T>(x.data(), nullptr, nullptr, y.data(), mean.data(), invstd.data(),
                                             nullptr, nullptr, g.N, g.C, g.inner, 0.1, 0.0, false);
    for (int64_t c = 0; c < g.C; ++c) {
      CAPTURE(c);
      CHECK(static_cast<double>(mean[c]) == doctest::Approx(offset).epsilon(1e-12));
      CHECK(static_cast<double>(invstd[c]) == doctest::Approx(1.0 / std::sqrt(sq[c] / M)).epsilon(tol));
    }
  };
  // M even per channel, so the +- pairs cancel exactly.
  check(double{}, 1e8, {4, 3, 2 * 1500}, 1e-9);  // strip layout, chunks split strips
  check(double{}, 1e8, {200, 3}, 1e-9);          // column layout
  check(float{}, 1e4, {4, 2, 600}, 1e-5);
  check(float{}, 1e4, {300, 2}, 1e-5);
}

TEST_CASE("batchnorm: results do not depend on the thread count") {
  // Large enough to run threaded; both layouts.
  for (const Shape& shape : {Shape{8, 3, 64, 64}, Shape{4096, 12}}) {
    CAPTURE(shape_str(shape));
    const Case k = make_case<float>(shape, true, true, true, 5);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Outputs one = run<float, false>(k, nullptr);
    omp_set_num_threads(3);
    const Outputs three = run<float, false>(k, nullptr);
    omp_set_num_threads(saved);
    CHECK(values(one.y) == values(three.y));
    CHECK(values(one.mean) == values(three.mean));
    CHECK(values(one.invstd) == values(three.invstd));
    CHECK(values(one.running_var) == values(three.running_var));
    CHECK(values(one.dx) == values(three.dx));
    CHECK(values(one.dweight) == values(three.dweight));
    CHECK(values(one.dbias) == values(three.dbias));
  }
}

TEST_CASE("batch_norm and dropout_mask: argument errors name the op, the expected and the actual") {
  const Tensor x = zeros({2, 3});
  const Tensor c3 = ones({3}), c4 = ones({4});
  check_throws_with<ValueError>([&] { ops::batch_norm(zeros({1, 3}), c3, c3, c3, c3, true, 0.1, 1e-5); },
                                "batch_norm: expected more than 1 value per channel when training, got input of "
                                "shape [1, 3]");
  check_throws_with<ValueError>([&] { ops::batch_norm(zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(),
                                                      true, 0.1, 1e-5); },
                                "more than 1 value per channel when training, got input of shape [1, 3, 1, 1]");
  // One value per channel is fine in eval mode.
  CHECK_CLOSE(ops::batch_norm(ones({1, 3}), Tensor(), Tensor(), zeros({3}), ones({3}), false, 0.1, 0.0).y,
              {1, 1, 1}, 0, 0);
  check_throws_with<ShapeError>([&] { ops::batch_norm(x, c4, Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5); },
                                "batch_norm: expected weight of shape [3] for input [2, 3], got [4]");
  check_throws_with<ShapeError>([&] { ops::batch_norm(x, Tensor(), Tensor(), c3, c4, true, 0.1, 1e-5); },
                                "expected running_var of shape [3]");
  check_throws_with<DTypeError>(
      [&] { ops::batch_norm(x, Tensor(), ones({3}, {DType::f64}), Tensor(), Tensor(), true, 0.1, 1e-5); },
      "batch_norm: expected bias of dtype f32 like the input, got f64");
  check_throws_with<DTypeError>(
      [&] { ops::batch_norm(zeros({2, 3}, {DType::i64}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5); },
      "batch_norm: expected input of dtype f32 or f64, got i64");
  check_throws_with<ShapeError>([&] { ops::batch_norm(zeros({5}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1,
                                                      1e-5); },
                                "batch_norm: expected input of shape [N, C, ...] with at least 2 dims, got [5]");
  check_throws_with<ValueError>([&] { ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false, 0.1, 1e-5); },
                                "batch_norm: eval mode normalises with the running statistics");
  check_throws_with<ValueError>([&] { ops::batch_norm(x, Tensor(), Tensor(), c3, Tensor(), true, 0.1, 1e-5); },
                                "both defined or both undefined, got only running_mean");

  const ops::BatchNormForward f = ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
  check_throws_with<ValueError>([&] { ops::batch_norm_backward(x, Tensor(), Tensor(), f, true, false); },
                                "batch_norm_backward: the input x is needed in training mode");
  check_throws_with<ShapeError>([&] { ops::batch_norm_backward(zeros({3, 3}), x, Tensor(), f, true, false); },
                                "batch_norm_backward: grad Tensor[3, 3] f32 cpu does not match input");
  check_throws_with<ValueError>([&] { ops::batch_norm_backward(x, x, Tensor(), {Tensor(), f.mean, f.invstd}, true,
                                                               true); },
                                "batch_norm_backward: argument 'forward.y (needed with fuse_relu)' is an undefined tensor");

  Generator gen(1);
  check_throws_with<ValueError>([&] { ops::dropout_mask(x, 1.5, gen); },
                                "dropout_mask: expected a drop probability p in [0, 1], got 1.5");
  check_throws_with<ValueError>([&] { ops::dropout_mask(x, -0.1, gen); }, "got -0.1");
  check_throws_with<DTypeError>([&] { ops::dropout_mask(zeros({2}, {DType::i32}), 0.5, gen); },
                                "dropout_mask: expected dtype f32 or f64, got i32");
}

// ---- synchronised batch norm -------------------------------------------

namespace {

// Splits case k's batch into replicas of rows[r] samples each and runs the
// kernels (Ref: kernels::ref) synchronised on threads, each replica with its
// own copy of the running statistics. Replica r differentiates its own loss
// L_r, and L = sum_r w_r L_r is the whole batch's loss whose gradient is
// k.grad: so replica r's grad is its rows of k.grad divided by w_r.
template <typename T, bool Ref>
std::vector<Outputs> run_synced(const Case& k, const std::vector<int64_t>& rows, const std::vector<double>& w) {
  const int64_t P = static_cast<int64_t>(rows.size());
  std::vector<Case> parts(P);
  for (int64_t r = 0, start = 0; r < P; start += rows[r], ++r) {
    parts[r] = k;
    parts[r].x = ops::contiguous(ops::slice(k.x, 0, start, start + rows[r]));
    parts[r].grad = ops::mul(ops::slice(k.grad, 0, start, start + rows[r]),
                             full({}, 1.0 / w[r], {k.grad.dtype()}));
  }
  std::vector<Outputs> out(P);
  test::ThreadReplicas group(P, w);
  group.run([&](int64_t r, kernels::ReplicaSync& sync) { out[r] = run<T, Ref>(parts[r], nullptr, 1e-5, 0.1, &sync); });
  CHECK(group.gathers() == (Ref ? 3 : 2));  // per forward + backward: ref 2 + 1, tuned 1 + 1
  return out;
}

// The replicas together must give what the reference gives on the whole
// batch: y and w_r dx row by row, sum_r w_r dweight_r and dbias_r, and on
// every replica the same (bitwise) statistics and running statistics.
template <typename T>
void check_synced(const Shape& shape, const std::vector<int64_t>& rows, const std::vector<double>& w, bool affine,
                  bool relu, uint64_t seed) {
  const double tol = std::is_same_v<T, float> ? 3e-5 : 1e-11;
  const Case k = make_case<T>(shape, /*training=*/true, affine, relu, seed);
  const Outputs want = run<T, true>(k, nullptr);
  for (bool ref : {true, false}) {
    CAPTURE(shape_str(shape));
    CAPTURE(ref);
    CAPTURE(affine);
    CAPTURE(relu);
    const std::vector<Outputs> got = ref ? run_synced<T, true>(k, rows, w) : run_synced<T, false>(k, rows, w);
    const int64_t C = shape[1];
    std::vector<double> y, dx, dweight(C, 0.0), dbias(C, 0.0);
    for (size_t r = 0; r < got.size(); ++r) {
      CAPTURE(r);
      for (double v : values(got[r].y)) y.push_back(v);
      for (double v : values(got[r].dx)) dx.push_back(w[r] * v);
      for (int64_t c = 0; c < C; ++c) {
        if (affine) dweight[c] += w[r] * values(got[r].dweight)[c];
        dbias[c] += w[r] * values(got[r].dbias)[c];
      }
      CHECK_CLOSE(got[r].mean, values(want.mean), tol, tol);
      CHECK_CLOSE(got[r].invstd, values(want.invstd), tol, tol);
      CHECK_CLOSE(got[r].running_mean, values(want.running_mean), tol, tol);
      CHECK_CLOSE(got[r].running_var, values(want.running_var), tol, tol);
      CHECK(values(got[r].mean) == values(got[0].mean));
      CHECK(values(got[r].invstd) == values(got[0].invstd));
      CHECK(values(got[r].running_var) == values(got[0].running_var));
    }
    CHECK_CLOSE(y, values(want.y), tol, tol);
    CHECK_CLOSE(dx, values(want.dx), tol, tol);
    CHECK_CLOSE(dbias, values(want.dbias), tol, tol);
    if (affine) CHECK_CLOSE(dweight, values(want.dweight), tol, tol);
  }
}

}  // namespace

TEST_CASE("batchnorm: synchronised replicas equal one batch (tuned and reference kernels)") {
  const std::vector<double> equal = {1.0, 1.0, 1.0}, shares = {1.0 / 7, 2.0 / 7, 4.0 / 7};
  // Uneven slices 1 + 2 + 4 of a batch of 7, in both layouts.
  for (const Shape& shape : {Shape{7, 3, 5, 13}, Shape{7, 3, 15}, Shape{7, 5}}) {
    for (bool affine : {false, true}) {
      check_synced<float>(shape, {1, 2, 4}, equal, affine, false, 3);
      check_synced<double>(shape, {1, 2, 4}, equal, affine, false, 3);
      check_synced<double>(shape, {1, 2, 4}, shares, affine, true, 5);  // weighted losses, fused ReLU
    }
  }
  // Strips longer than a chunk, two replicas; and a replica with no samples at all.
  check_synced<double>({4, 2, 4100}, {3, 1}, {0.75, 0.25}, true, false, 7);
  check_synced<double>({5, 2, 9}, {0, 5}, {0.0, 1.0}, true, false, 9);
}

TEST_CASE("batchnorm: one synchronised replica is bitwise the plain kernel") {
  for (const Shape& shape : {Shape{3, 4, 33}, Shape{9, 4}}) {
    CAPTURE(shape_str(shape));
    const Case k = make_case<float>(shape, true, true, true, 11);
    const Outputs plain = run<float, false>(k, nullptr);
    const std::vector<Outputs> synced = run_synced<float, false>(k, {shape[0]}, {1.0});
    for (auto [a, b] : {std::pair{plain.y, synced[0].y}, std::pair{plain.mean, synced[0].mean},
                        std::pair{plain.invstd, synced[0].invstd}, std::pair{plain.running_var, synced[0].running_var},
                        std::pair{plain.dx, synced[0].dx}, std::pair{plain.dweight, synced[0].dweight}}) {
      CHECK(values(a) == values(b));
    }
  }
}

TEST_CASE("batchnorm: the synchronised op passes a float64 finite-difference check") {
  // L = sum_r sum y_r R_r over 3 replicas (weights 1), so dL/dx_r is what
  // replica r's backward gives with g = R_r; every x moves every replica's
  // statistics, so the cross-replica terms are exercised.
  const std::vector<int64_t> rows = {2, 1, 3};
  const int64_t C = 2, inner = 5;
  std::vector<Tensor> xs, rs;
  for (size_t r = 0; r < rows.size(); ++r) {
    xs.push_back(random_tensor({rows[r], C, inner}, 20 + r, DType::f64, -2.0, 3.0));
    rs.push_back(random_tensor({rows[r], C, inner}, 30 + r, DType::f64, -1.0, 1.0));
  }
  const Tensor weight = random_tensor({C}, 40, DType::f64, 0.5, 1.5), bias = random_tensor({C}, 41, DType::f64);
  auto loss = [&] {
    std::vector<double> parts(rows.size());
    test::ThreadReplicas(static_cast<int64_t>(rows.size())).run([&](int64_t r, kernels::ReplicaSync& sync) {
      const ops::BatchNormForward f =
          ops::batch_norm(xs[r], weight, bias, Tensor(), Tensor(), true, 0.1, 1e-5, false, &sync);
      parts[r] = ops::sum(ops::mul(f.y, rs[r])).item();
    });
    double total = 0;
    for (double p : parts) total += p;
    return total;
  };
  std::vector<Tensor> dx(rows.size());
  test::ThreadReplicas(static_cast<int64_t>(rows.size())).run([&](int64_t r, kernels::ReplicaSync& sync) {
    const ops::BatchNormForward f =
        ops::batch_norm(xs[r], weight, bias, Tensor(), Tensor(), true, 0.1, 1e-5, false, &sync);
    dx[r] = ops::batch_norm_backward(rs[r], xs[r], weight, f, true, false, &sync).dx;
  });
  const double h = 1e-6;
  int checked = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int64_t i = 0; i < xs[r].numel(); i += 3) {
      double* p = xs[r].data<double>() + i;
      const double x0 = *p;
      *p = x0 + h;
      const double up = loss();
      *p = x0 - h;
      const double down = loss();
      *p = x0;
      const double numeric = (up - down) / (2 * h), analytic = dx[r].data<double>()[i];
      CAPTURE(r);
      CAPTURE(i);
      CHECK(analytic == doctest::Approx(numeric).epsilon(1e-6).scale(1.0));
      ++checked;
    }
  }
  CHECK(checked == 21);
}

TEST_CASE("batchnorm: synchronised, the count over all replicas decides whether training works") {
  // One value per channel on each of two replicas: M = 2, which works synchronised...
  const Tensor a = from_vector<double>({1.0, 4.0}, {1, 2}), b = from_vector<double>({3.0, 0.0}, {1, 2});
  std::vector<Tensor> ys(2);
  test::ThreadReplicas(2).run([&](int64_t r, kernels::ReplicaSync& sync) {
    ys[r] = ops::batch_norm(r == 0 ? a : b, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 0.0, false, &sync).y;
  });
  CHECK_CLOSE(ys[0], {-1, 1}, 1e-15, 0);  // channel 0 {1, 3}: mean 2, std 1; channel 1 {4, 0}: mean 2, std 2
  CHECK_CLOSE(ys[1], {1, -1}, 1e-15, 0);
  // ...but one value on a single replica has no spread: every replica refuses, naming the total.
  test::ThreadReplicas(1).run([&](int64_t, kernels::ReplicaSync& sync) {
    check_throws_with<ValueError>(
        [&] { ops::batch_norm(a, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, false, &sync); },
        "batch_norm: expected more than 1 value per channel over all 1 replicas when training, got 1");
  });
}

// The CUDA kernel's dx, folded per channel (kernels/batchnorm_rules.h: A gm
// + (B (x - mean) + D)), against the reference kernel's dx: the channel's
// sums and the per-value step in double as the CUDA kernel forms them,
// rounded once to T. Data offset far above its spread (1000 + [-2, 3)),
// with and without the ReLU mask, training and eval. Each value must agree
// to within `tolerance` of itself (plus 1e-12 of the largest, for values
// near zero): the two differ only by the fold's reassociation in double.
template <typename T>
void check_folded_dx(double tolerance) {
  const int64_t N = 3, C = 4, inner = 37, M = N * inner;
  const Tensor x = ops::scalar_op(ops::ScalarOp::add, random_tensor({N, C, inner}, 71, dtype_of<T>::value, -2.0, 3.0), 1000.0);
  const Tensor g = random_tensor({N, C, inner}, 72, dtype_of<T>::value, -1.0, 1.0);
  const Tensor w = random_tensor({C}, 73, dtype_of<T>::value, -1.5, 1.5);
  const std::vector<T> xv = x.to_vector<T>(), gv0 = g.to_vector<T>(), wv = w.to_vector<T>();
  for (const bool training : {true, false}) {
    for (const bool relu : {false, true}) {
      INFO("training=", training, " relu=", relu);
      std::vector<T> y(xv.size()), mean(C), invstd(C), want(xv.size()), dw(C), db(C);
      kernels::ref::batchnorm_forward_train<T>(xv.data(), wv.data(), nullptr, y.data(), mean.data(), invstd.data(),
                                               nullptr, nullptr, N, C, inner, 0.1, 1e-5, relu);
      kernels::ref::batchnorm_backward<T>(gv0.data(), xv.data(), relu ? y.data() : nullptr, wv.data(), mean.data(),
                                          invstd.data(), want.data(), dw.data(), db.data(), N, C, inner, training);
      double worst = 0, scale = 0;
      for (int64_t c = 0; c < C; ++c) {
        auto at = [&](int64_t n, int64_t i) { return (n * C + c) * inner + i; };
        auto gm = [&](int64_t k) { return relu && !(y[k] > T(0)) ? T(0) : gv0[k]; };
        double sg = 0, sgx = 0;
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = at(n, i);
            sg += static_cast<double>(gm(k));
            sgx += static_cast<double>(gm(k)) * (static_cast<double>(xv[k]) - mean[c]) * invstd[c];
          }
        }
        const kernels::BatchNormDx f =
            kernels::batchnorm_dx_coefficients(wv[c], invstd[c], sg, sgx, 1.0 / static_cast<double>(M), training);
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = at(n, i);
            const double value = training ? kernels::batchnorm_dx_value<double>(f.a, f.b, f.d, mean[c], gm(k), xv[k])
                                          : f.a * static_cast<double>(gm(k));
            const T got = static_cast<T>(value);
            worst = std::max(worst, std::abs(static_cast<double>(got) - want[k]) /
                                        (std::abs(static_cast<double>(want[k])) + 1e-12));
            scale = std::max(scale, std::abs(static_cast<double>(want[k])));
          }
        }
      }
      CHECK(scale > 0.1);
      CHECK(worst <= tolerance);
    }
  }
}

TEST_CASE("batchnorm: the CUDA kernel's per-channel fold of dx matches the reference") {
  check_folded_dx<double>(1e-9);
  check_folded_dx<float>(1.2e-7);  // one rounding to float apart at most
}
