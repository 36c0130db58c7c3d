// The Gaussian filters of crf/: the permutohedral lattice against its closed
// form in d = 1 and against the exact dense filter in d = 2..5, the lattice's
// transpose against the adjoint identity, awkward sizes, thread-count
// determinism and the error messages.
//
// Measured lattice vs dense agreement (normalised outputs, inputs in [0, 1],
// 24x24 points; build-crf/tests/test_crf -tc='*dense filter*' -s prints them):
//   spatial (x, y) / 3 (the CRF's default): max 0.014, mean 0.003
//   bilateral theta_alpha 160, theta_beta 64, random RGB: max 0.020, mean 0.003
//   bilateral theta_alpha 160, theta_beta 3 (CRF default), random RGB 0-255:
//     mean 0.0015, 99th percentile 0.035, max 0.084. Most pixels have no
//     neighbour within a few theta_beta (both filters return the input);
//     the few with one or two neighbours at ~1 sigma carry the error, since
//     the lattice weighs a single pair within x0.5..x1.3 of exp(-r^2/2) and
//     drops pairs whose blur paths cross absent lattice points.
// Run: build-crf/tests/test_crf -tc='*lattice*,*dense*'
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "crf/dense_filter.h"
#include "crf/permutohedral.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::crf;
using namespace crfseg::test;

namespace {

std::vector<double> uniform_values(int64_t n, uint64_t seed, double lo, double hi) {
  Generator gen(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = lo + (hi - lo) * gen.uniform_f64();
  return v;
}

struct Agreement {
  double max_abs = 0, mean_abs = 0, p99 = 0;
};

// Lattice (f32, the production path) vs dense (f64) after normalisation by
// filter(1), on C random channels in [0, 1].
Agreement normalised_agreement(const std::vector<double>& features, int64_t n, int64_t d, int64_t C = 3) {
  const PermutohedralLattice lattice(features, n, d);
  const DenseGaussianFilter dense(features, n, d);
  const std::vector<double> in = uniform_values(n * C, 7, 0, 1);
  const std::vector<float> in_f(in.begin(), in.end()), ones_f(static_cast<size_t>(n), 1.0f);
  const std::vector<double> ones(static_cast<size_t>(n), 1.0);
  std::vector<float> out_l(in.size()), norm_l(static_cast<size_t>(n));
  std::vector<double> out_d(in.size()), norm_d(static_cast<size_t>(n));
  lattice.apply(in_f.data(), out_l.data(), C);
  lattice.apply(ones_f.data(), norm_l.data(), 1);
  dense.apply(in.data(), out_d.data(), C);
  dense.apply(ones.data(), norm_d.data(), 1);
  std::vector<double> err;
  Agreement a;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < C; ++c) {
      err.push_back(std::abs(double(out_l[i * C + c]) / norm_l[i] - out_d[i * C + c] / norm_d[i]));
      a.mean_abs += err.back() / static_cast<double>(n * C);
    }
  }
  std::sort(err.begin(), err.end());
  a.max_abs = err.back();
  a.p99 = err[err.size() * 99 / 100];
  MESSAGE("lattice vs dense (normalised): max ", a.max_abs, ", mean ", a.mean_abs, ", p99 ", a.p99,
          ", lattice points ", lattice.num_lattice_points());
  return a;
}

// Features of n points in d dims, uniform on [-spread, spread]; spread 0:
// small integers on the lattice grid, point 0 at the origin (key (0, ...,
// 0), whose hash is 0; keys whose candidates have negative coordinates).
std::vector<double> case_features(int64_t n, int64_t d, double spread, uint64_t seed) {
  std::vector<double> f = uniform_values(n * d, seed, -spread, spread);
  if (spread == 0) {
    for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<double>(static_cast<int64_t>(i * 7 % 5) - 2);
    for (int64_t k = 0; k < d; ++k) f[k] = 0;
  }
  return f;
}

// Two filters of the same points must give equal outputs (== also
// equates the zero signs they may differ in), both directions, f32 and
// f64, for channel counts with a fixed-width walk (1, 3) and without (5),
// on random inputs in [-1, 1] (seeds seed + C).
void check_same_outputs(const GaussianFilter& one, const GaussianFilter& other, uint64_t seed) {
  const int64_t n = one.num_points();
  for (const int64_t C : {1, 3, 5}) {
    const std::vector<double> x = uniform_values(n * C, seed + static_cast<uint64_t>(C), -1, 1);
    const std::vector<float> xf(x.begin(), x.end());
    for (const bool transpose : {false, true}) {
      CAPTURE(C);
      CAPTURE(transpose);
      std::vector<double> a(x.size()), b(x.size());
      one.apply(x.data(), a.data(), C, transpose);
      other.apply(x.data(), b.data(), C, transpose);
      CHECK(a == b);
      std::vector<float> af(x.size()), bf(x.size());
      one.apply(xf.data(), af.data(), C, transpose);
      other.apply(xf.data(), bf.data(), C, transpose);
      CHECK(af == bf);
    }
  }
}

}  // namespace

TEST_CASE("lattice vs dense filter, normalised, on 24x24 images") {
  const int64_t H = 24, W = 24, N = H * W;
  SUBCASE("spatial features (x, y) / 3") {
    const Agreement a = normalised_agreement(spatial_features(H, W, 3.0), N, 2);
    CHECK(a.max_abs < 0.02);
    CHECK(a.mean_abs < 0.005);
  }
  const std::vector<double> image = uniform_values(3 * N, 3, 0, 255);
  SUBCASE("bilateral, random RGB, theta_alpha 160, theta_beta 64 (dense neighbourhoods)") {
    const Agreement a = normalised_agreement(bilateral_features(image.data(), 3, H, W, 160, 64), N, 5);
    CHECK(a.max_abs < 0.03);
    CHECK(a.mean_abs < 0.005);
  }
  SUBCASE("bilateral, random RGB, CRF defaults theta_alpha 160, theta_beta 3 (sparse neighbourhoods)") {
    const Agreement a = normalised_agreement(bilateral_features(image.data(), 3, H, W, 160, 3), N, 5);
    CHECK(a.mean_abs < 0.005);
    CHECK(a.p99 < 0.05);
    CHECK(a.max_abs < 0.12);
  }
  SUBCASE("random features in a cube of side 4, d = 3") {
    const Agreement a = normalised_agreement(uniform_values(N * 3, 11, 0, 4), N, 3);
    CHECK(a.max_abs < 0.02);
    CHECK(a.mean_abs < 0.005);
  }
}

TEST_CASE("lattice raw output carries the Gaussian's mass on dense features") {
  // Points dense in a box; away from its faces the raw filter(1) should
  // match the exact sum (lattice_scale in permutohedral.cpp).
  for (int64_t d : {1, 2, 3}) {
    CAPTURE(d);
    const double side = d == 1 ? 24.0 : d == 2 ? 10.0 : 9.0;
    const int64_t n = d == 3 ? 6000 : 4000;
    const std::vector<double> f = uniform_values(n * d, 5 + d, 0, side);
    const PermutohedralLattice lattice(f, n, d);
    const DenseGaussianFilter dense(f, n, d);
    const std::vector<double> ones(static_cast<size_t>(n), 1.0);
    std::vector<double> nl(static_cast<size_t>(n)), nd(static_cast<size_t>(n));
    lattice.apply(ones.data(), nl.data(), 1);
    dense.apply(ones.data(), nd.data(), 1);
    double ratio = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      bool inner = true;
      for (int64_t k = 0; k < d; ++k) inner = inner && f[i * d + k] > 3.0 && f[i * d + k] < side - 3.0;
      if (inner) ratio += nl[i] / nd[i], ++count;
    }
    REQUIRE(count > 20);
    ratio /= static_cast<double>(count);
    MESSAGE("d = ", d, ": mean lattice / exact filter(1) away from the faces = ", ratio);
    CHECK(std::abs(ratio - 1.0) < 0.03);
  }
}

TEST_CASE("lattice in d = 1 equals its closed form") {
  // In d = 1 the lattice is the integer line t = f * 2 / sqrt(3); a point
  // splats to floor(t), floor(t) + 1 with tent weights, both blur
  // directions are the same [1/2 1 1/2] step along the line restricted to
  // the occupied range, and slicing reads the tents back times alpha.
  const int64_t n = 200;
  const std::vector<double> f = uniform_values(n, 21, 0, 10);
  const std::vector<double> in = uniform_values(n, 22, -1, 1);
  std::vector<double> out(static_cast<size_t>(n));
  PermutohedralLattice lattice(f, n, 1);
  lattice.apply(in.data(), out.data(), 1);

  std::vector<double> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = f[i] * 2.0 / std::sqrt(3.0);
  const int64_t lo = static_cast<int64_t>(std::floor(*std::min_element(t.begin(), t.end())));
  const int64_t hi = static_cast<int64_t>(std::floor(*std::max_element(t.begin(), t.end()))) + 1;
  const int64_t m = hi - lo + 1;
  CHECK(lattice.num_lattice_points() == m);  // 200 points over ~12 cells touch every one
  std::vector<double> v(static_cast<size_t>(m), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = static_cast<int64_t>(std::floor(t[i])) - lo;
    const double frac = t[i] - std::floor(t[i]);
    v[k] += (1 - frac) * in[i];
    v[k + 1] += frac * in[i];
  }
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<double> next(v);
    for (int64_t k = 0; k < m; ++k) next[k] += 0.5 * ((k > 0 ? v[k - 1] : 0) + (k + 1 < m ? v[k + 1] : 0));
    v = next;
  }
  const double alpha = std::sqrt(2.0) * std::sqrt(4.0 * M_PI / 3.0) / 4.0;
  std::vector<double> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = static_cast<int64_t>(std::floor(t[i])) - lo;
    const double frac = t[i] - std::floor(t[i]);
    want[i] = alpha * ((1 - frac) * v[k] + frac * v[k + 1]);
  }
  // Barycentric weights are stored as float: ~1e-7 relative.
  CHECK_CLOSE(out, want, 1e-6, 1e-6);
}

TEST_CASE("lattice transpose is the adjoint: <K x, y> = <x, K^T y>") {
  for (int64_t d : {1, 2, 3, 5}) {
    CAPTURE(d);
    const int64_t n = 150, C = 2;
    const std::vector<double> f = uniform_values(n * d, 30 + d, 0, 3);  // sparse enough that K^T != K
    const PermutohedralLattice lattice(f, n, d);
    const std::vector<double> x = uniform_values(n * C, 40, -1, 1), y = uniform_values(n * C, 41, -1, 1);
    std::vector<double> kx(x.size()), kty(y.size()), ky(y.size());
    lattice.apply(x.data(), kx.data(), C);
    lattice.apply(y.data(), kty.data(), C, /*transpose=*/true);
    lattice.apply(y.data(), ky.data(), C);
    double lhs = 0, rhs = 0, sym = 0;
    for (size_t e = 0; e < x.size(); ++e) {
      lhs += kx[e] * y[e];
      rhs += x[e] * kty[e];
      sym += x[e] * ky[e];
    }
    CHECK(std::abs(lhs - rhs) <= 1e-12 * (std::abs(lhs) + 1));
    // For d >= 2 the forward blur order is not symmetric on a sparse
    // lattice, so the check above would fail if transpose did not reverse it.
    MESSAGE("d = ", d, ": <Kx,y> - <x,Ky> = ", lhs - sym);
    if (d >= 2) CHECK(std::abs(lhs - sym) > 1e-3);
  }
}

TEST_CASE("lattice and dense filters on awkward sizes and dimensions") {
  SUBCASE("one point: the normalised output is the input, in both filters") {
    for (int64_t d : {1, 2, 5}) {
      const std::vector<double> f = uniform_values(d, 50 + d, -5, 5);
      for (FilterMode mode : {FilterMode::lattice, FilterMode::dense}) {
        const auto k = make_gaussian_filter(mode, f, 1, d);
        const std::vector<float> in{0.25f, -2.0f, 3.5f}, one{1.0f};
        std::vector<float> out(3), norm(1);
        k->apply(in.data(), out.data(), 3);
        k->apply(one.data(), norm.data(), 1);
        for (int c = 0; c < 3; ++c) CHECK(out[c] / norm[0] == doctest::Approx(in[c]).epsilon(1e-6));
      }
    }
  }
  SUBCASE("1xN, Nx1 and prime image sizes, d = 1, 2, 3, 5") {
    const std::vector<std::pair<int64_t, int64_t>> sizes{{1, 17}, {31, 1}, {7, 13}, {13, 11}, {2, 3}};
    for (const auto& hw : sizes) {
      const int64_t h = hw.first, w = hw.second;  // (clang 14 cannot capture structured bindings in CAPTURE)
      for (int64_t d : {1, 2, 3, 5}) {
        CAPTURE(h);
        CAPTURE(w);
        CAPTURE(d);
        // Image-like features: x, y / 2 (as far as d allows) plus random channels.
        const int64_t n = h * w;
        std::vector<double> f = uniform_values(n * d, 60 + d, 0, 2);
        for (int64_t i = 0; i < n; ++i) {
          f[i * d] = static_cast<double>(i % w) / 2;
          if (d > 1) f[i * d + 1] = static_cast<double>(i / w) / 2;
        }
        // A sanity bound: with random channels spread over 2 sigma these
        // points have few close neighbours (measured worst: max 0.18, mean 0.037, d = 5).
        const Agreement a = normalised_agreement(f, n, d, 2);
        CHECK(std::isfinite(a.max_abs));
        CHECK(a.max_abs < 0.25);
        CHECK(a.mean_abs < 0.05);
      }
    }
  }
}

TEST_CASE("lattice and dense filters are bit-identical for 1, 2 and 3 threads") {
  const int64_t H = 37, W = 41, N = H * W, C = 3;
  const std::vector<double> image = uniform_values(3 * N, 70, 0, 255);
  const std::vector<double> f = bilateral_features(image.data(), 3, H, W, 20, 16);
  const std::vector<double> x = uniform_values(N * C, 71, 0, 1);
  const std::vector<float> xf(x.begin(), x.end());
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> lattice_out, lattice_t_out;
  std::vector<std::vector<double>> dense_out;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    const PermutohedralLattice lattice(f, N, 5);  // built with this thread count too
    std::vector<float> out(xf.size()), out_t(xf.size());
    lattice.apply(xf.data(), out.data(), C);
    lattice.apply(xf.data(), out_t.data(), C, true);
    lattice_out.push_back(out);
    lattice_t_out.push_back(out_t);
    const DenseGaussianFilter dense(f, N, 5);
    std::vector<double> dout(x.size());
    dense.apply(x.data(), dout.data(), C);
    dense_out.push_back(dout);
  }
  omp_set_num_threads(saved);
  for (size_t k = 1; k < 3; ++k) {
    CHECK(lattice_out[k] == lattice_out[0]);
    CHECK(lattice_t_out[k] == lattice_t_out[0]);
    CHECK(dense_out[k] == dense_out[0]);
  }
}

TEST_CASE("lattice in Z order: the same filter, bit for bit, as in first-seen order and for any thread count") {
  // A 64x64 random-noise RGB image at the CRF's defaults gives a lattice
  // above the 16384 points from which the hash build renumbers in Z order.
  const int64_t H = 64, W = 64, N = H * W, C = 3;
  const std::vector<double> image = uniform_values(3 * N, 80, 0, 255);
  const std::vector<double> f = bilateral_features(image.data(), 3, H, W, 160, 3);
  const LatticeOptions hashed{.sorted_build = false};
  const PermutohedralLattice z(f, N, 5, hashed), first_seen(f, N, 5, {.sorted_build = false, .z_order = false});
  REQUIRE(z.num_lattice_points() >= 16384);
  CHECK(z.num_lattice_points() == first_seen.num_lattice_points());
  CHECK(z.vertices() != first_seen.vertices());  // renumbered, not left alone
  // Blur neighbours are mutual in the new numbering too: q = p + u_j <=> p = q - u_j.
  const int64_t M = z.num_lattice_points();
  const CpuVector<int32_t> nb = z.blur_neighbours();
  int64_t mutual = 0, links = 0;
  for (int64_t j = 0; j < 6; ++j) {
    for (int64_t p = 0; p < M; ++p) {
      const int32_t q = nb[(j * M + p) * 2];
      if (q == M) continue;
      ++links;
      mutual += nb[(j * M + q) * 2 + 1] == p;
    }
  }
  CHECK(links > 0);
  CHECK(mutual == links);
  const std::vector<double> x = uniform_values(N * C, 81, 0, 1);
  const std::vector<float> xf(x.begin(), x.end());
  for (const bool transpose : {false, true}) {
    std::vector<float> a(xf.size()), b(xf.size());
    z.apply(xf.data(), a.data(), C, transpose);
    first_seen.apply(xf.data(), b.data(), C, transpose);
    CHECK(a == b);
  }
  // The Z-ordered build (parallel neighbour search in the new order,
  // chains per direction) makes the same tables and filter for 1, 2 and 3
  // threads.
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 2, 3}) {
    CAPTURE(threads);
    omp_set_num_threads(threads);
    const PermutohedralLattice again(f, N, 5, hashed);
    CHECK(again.vertices() == z.vertices());
    CHECK(again.blur_neighbours() == z.blur_neighbours());
    CHECK(again.splat_offsets() == z.splat_offsets());
    std::vector<float> a(xf.size()), b(xf.size());
    again.apply(xf.data(), a.data(), C, true);
    z.apply(xf.data(), b.data(), C, true);
    CHECK(a == b);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lattice neighbour search: the screened search builds the plain search's lattice") {
  // The hash build's default search hashes a point's neighbour candidates
  // incrementally and drops most absent ones through a Bloom filter; the
  // plain search hashes and probes every candidate. Their tables must agree entry for
  // entry, on: 1 and 2 points, primes, lattices on both sides of the
  // parallel (4096 points) and Z-order (16384) thresholds, d = 1 to 6,
  // sparse (wide) and dense (narrow) features, and features on the lattice
  // grid (0 and small integers: key (0, ..., 0), whose hash is 0, and keys
  // whose candidates have negative coordinates). d = 254 and 300 sit on
  // both sides of the byte that holds a simplex link's direction (the
  // default build writes those links itself only for d + 1 <= 255).
  struct Case {
    int64_t n, d;
    double spread;  // features uniform on [-spread, spread]; 0: small integers
  };
  const Case cases[] = {{1, 1, 0},      {1, 5, 0},      {2, 3, 0},      {7, 2, 1},      {97, 5, 0},
                        {97, 5, 3},     {331, 1, 40},   {1009, 4, 0},   {4099, 5, 50},  {2053, 3, 20},
                        {5003, 6, 2},   {20011, 5, 40}, {4096, 2, 30},  {7, 254, 0.3},  {7, 300, 0.3}};
  for (const Case& c : cases) {
    CAPTURE(c.n);
    CAPTURE(c.d);
    CAPTURE(c.spread);
    const std::vector<double> f = case_features(c.n, c.d, c.spread, static_cast<uint64_t>(90 + c.n + c.d));
    const PermutohedralLattice screened(f, c.n, c.d, {.sorted_build = false}),
        plain(f, c.n, c.d, {.sorted_build = false, .plain_neighbour_search = true});
    REQUIRE(screened.num_lattice_points() == plain.num_lattice_points());
    CHECK(screened.vertices() == plain.vertices());
    CHECK(screened.splat_offsets() == plain.splat_offsets());
    const CpuVector<int32_t> table = plain.blur_neighbours();
    CHECK(screened.blur_neighbours() == table);
    // Not vacuous: some neighbours exist, and (on the larger lattices) some are absent.
    const int64_t M = plain.num_lattice_points();
    const int64_t present = std::count_if(table.begin(), table.end(), [M](int32_t q) { return q != M; });
    if (c.n > 2) CHECK(present > 0);
    if (c.n > 1000) CHECK(present < static_cast<int64_t>(table.size()));
  }
}

TEST_CASE("lattice sorted build: the hash build's lattice, renumbered, and its filter bit for bit") {
  // The default build sorts the vertices' exact codes and merges the sorted
  // codes for the neighbours; the hash build inserts the keys into a table
  // and probes it. The lattices must be the same up to the numbering of
  // their points: a one-to-one map between the numberings that carries
  // every pixel's vertices, every splat list's length and every blur link
  // of one onto the other's; and so the filters must agree bit for bit
  // (same sums, same order). Dense lattices are renumbered as the hash
  // build numbers them, so theirs are equal outright. Cases:
  //  - those of the neighbour-search test (their codes and entries share
  //    64-bit sort items; d = 254 and 300 have more than 2^64 codes and fall
  //    back to the hash build);
  //  - 331 points in d = 5 at wider spreads: at 200 the codes (57 bits)
  //    need sort items of their own, from 800 on the build falls back;
  //  - a dense lattice above the Z-order threshold (71k points);
  //  - the CRF's spatial features (theta 3), where 76% of the vertex entries
  //    repeat the previous pixel's and only the rest are sorted: at 96^2
  //    and at 400^2 (20.8k points, above the Z-order threshold).
  struct Case {
    int64_t n, d;
    double spread;  // features uniform on [-spread, spread]; 0: small integers; < 0: spatial, sqrt(n)^2 pixels
  };
  std::vector<Case> cases = {{1, 1, 0},      {1, 5, 0},     {2, 3, 0},     {7, 2, 1},     {97, 5, 0},
                             {97, 5, 3},     {331, 1, 40},  {1009, 4, 0},  {4099, 5, 50}, {2053, 3, 20},
                             {5003, 6, 2},   {20011, 5, 40}, {4096, 2, 30}, {7, 254, 0.3}, {7, 300, 0.3}};
  for (const double spread : {200.0, 800.0, 50000.0}) cases.push_back({331, 5, spread});
  cases.push_back({60013, 3, 20});  // dense: 71k lattice points from 240k entries
  cases.push_back({3001, 9, 0.7});  // d + 1 = 10 directions: the merge's second group of lanes
  cases.push_back({96 * 96, 2, -1});
  cases.push_back({400 * 400, 2, -1});
  int64_t sorted_builds = 0, hash_builds = 0, dense_cases = 0;
  for (const Case& c : cases) {
    CAPTURE(c.n);
    CAPTURE(c.d);
    CAPTURE(c.spread);
    const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(c.n))));
    const auto seed = static_cast<uint64_t>(60 + c.n + c.d);
    const std::vector<double> f =
        c.spread < 0 ? spatial_features(side, side, 3) : case_features(c.n, c.d, c.spread, seed);
    const PermutohedralLattice sorted(f, c.n, c.d), hashed(f, c.n, c.d, {.sorted_build = false});
    CHECK_FALSE(hashed.sorted_build());
    CHECK(sorted.sorted_build() == (c.d < 100 && c.spread < 800));  // the fallbacks, and only they
    (sorted.sorted_build() ? sorted_builds : hash_builds) += 1;
    const int64_t M = hashed.num_lattice_points(), d1 = c.d + 1;
    REQUIRE(sorted.num_lattice_points() == M);
    // The map from the sorted numbering to the hash numbering, from the vertices.
    std::vector<int32_t> to_hashed(static_cast<size_t>(M), -1);
    bool one_to_one = true;
    for (size_t e = 0; e < sorted.vertices().size(); ++e) {
      int32_t& h = to_hashed[sorted.vertices()[e]];
      if (h >= 0 && h != hashed.vertices()[e]) one_to_one = false;
      h = hashed.vertices()[e];
    }
    std::vector<int32_t> image = to_hashed;
    std::sort(image.begin(), image.end());
    for (int64_t p = 0; p < M; ++p) one_to_one = one_to_one && image[p] == p;
    REQUIRE(one_to_one);
    // Each point's splat list, (pixel, weight) in pixel order, the same.
    bool same_lists = true, same_links = true;
    for (int64_t p = 0; p < M; ++p) {
      const int64_t h = to_hashed[p], begin = sorted.splat_offsets()[p], hbegin = hashed.splat_offsets()[h];
      const int64_t count = sorted.splat_offsets()[p + 1] - begin;
      same_lists = same_lists && count == hashed.splat_offsets()[h + 1] - hbegin;
      for (int64_t x = 0; same_lists && x < count; ++x) {
        const PermutohedralLattice::SplatEntry a = sorted.splat_entries()[begin + x];
        const PermutohedralLattice::SplatEntry b = hashed.splat_entries()[hbegin + x];
        same_lists = a.point == b.point && a.weight == b.weight;
      }
    }
    const CpuVector<int32_t> nb_sorted = sorted.blur_neighbours(), nb_hashed = hashed.blur_neighbours();
    for (int64_t j = 0; j < d1; ++j) {
      for (int64_t p = 0; p < M; ++p) {
        for (int64_t side = 0; side < 2; ++side) {
          const int32_t q = nb_sorted[(j * M + p) * 2 + side];
          const int32_t want = nb_hashed[(j * M + to_hashed[p]) * 2 + side];
          same_links = same_links && (q == M ? want == M : want == to_hashed[q]);
        }
      }
    }
    CHECK(same_lists);
    CHECK(same_links);
    // A dense lattice (more than two entries per point) takes the hash
    // build's numbering too: then the tables are equal outright.
    if (sorted.sorted_build() && c.n * d1 > 2 * M) {
      CHECK(sorted.vertices() == hashed.vertices());
      CHECK(sorted.splat_offsets() == hashed.splat_offsets());
      CHECK(nb_sorted == nb_hashed);
      ++dense_cases;
    }
    check_same_outputs(sorted, hashed, static_cast<uint64_t>(c.n + 5));
  }
  CHECK(sorted_builds > 0);
  CHECK(hash_builds > 0);  // the widest spreads fell back
  CHECK(dense_cases > 0);
}

TEST_CASE("lattice sorted build: the same tables and filter for 1 to 4 threads") {
  // 64x64 images, so that every step of the build (codes, cache, radix
  // passes, neighbour merge) runs its parallel form: noise (a sparse
  // lattice above the Z-order threshold, kept in code order), and noise
  // above a flat bottom quarter or half, where the cache of recent codes
  // finds repeats in the last threads' ranges only (with one thread, none:
  // its trial ends in the noise). With the quarter the lattice is still
  // sparse, so with one thread the sort makes the splat lists and with four
  // the constructor does; with the half it is dense (renumbered first-seen).
  const int64_t H = 64, W = 64, N = H * W, C = 3;
  const std::vector<double> x = uniform_values(N * C, 83, 0, 1);
  const std::vector<float> xf(x.begin(), x.end());
  const int saved = omp_get_max_threads();
  for (const int64_t flat_rows : {int64_t{0}, H / 4, H / 2}) {
    CAPTURE(flat_rows);
    std::vector<double> image = uniform_values(3 * N, 82, 0, 255);
    for (int64_t c = 0; c < 3; ++c) {
      std::fill(image.begin() + (c + 1) * N - flat_rows * W, image.begin() + (c + 1) * N, 100.0);
    }
    const std::vector<double> f = bilateral_features(image.data(), 3, H, W, 160, 3);
    omp_set_num_threads(1);
    const PermutohedralLattice one(f, N, 5);
    REQUIRE(one.sorted_build());
    if (flat_rows == 0) REQUIRE(one.num_lattice_points() >= 16384);
    CHECK((6 * N > 2 * one.num_lattice_points()) == (flat_rows == H / 2));  // dense with the half only
    std::vector<float> want(xf.size());
    one.apply(xf.data(), want.data(), C, true);
    for (const int threads : {2, 3, 4}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      const PermutohedralLattice again(f, N, 5);
      CHECK(again.vertices() == one.vertices());
      CHECK(again.splat_offsets() == one.splat_offsets());
      bool same_entries = again.splat_entries().size() == one.splat_entries().size();
      for (size_t e = 0; same_entries && e < one.splat_entries().size(); ++e) {
        same_entries = again.splat_entries()[e].point == one.splat_entries()[e].point &&
                       again.splat_entries()[e].weight == one.splat_entries()[e].weight;
      }
      CHECK(same_entries);
      CHECK(again.blur_neighbours() == one.blur_neighbours());
      std::vector<float> got(xf.size());
      again.apply(xf.data(), got.data(), C, true);
      CHECK(got == want);
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lattice chain blur: the plain blur's filter, bit for bit") {
  // The default blur walks chains of present neighbours in place; the plain
  // blur reads every point's two neighbours into a second buffer. Same sums
  // in the same order, so equal outputs (check_same_outputs), on: 1 and 2
  // points, primes, sparse and dense lattices (short and long chains), both
  // sides of the parallel and Z-order thresholds, d = 1 to 6.
  struct Case {
    int64_t n, d;
    double spread;  // features uniform on [-spread, spread]
  };
  const Case cases[] = {{1, 1, 1}, {1, 5, 1}, {2, 3, 0.5}, {7, 2, 1}, {97, 5, 3}, {331, 1, 40},
                        {1009, 4, 1}, {4099, 5, 50}, {2053, 3, 2}, {5003, 6, 2}, {20011, 5, 40}, {4096, 2, 30}};
  for (const Case& c : cases) {
    CAPTURE(c.n);
    CAPTURE(c.d);
    CAPTURE(c.spread);
    const std::vector<double> f = uniform_values(c.n * c.d, static_cast<uint64_t>(40 + c.n + c.d), -c.spread, c.spread);
    const PermutohedralLattice chain(f, c.n, c.d), plain(f, c.n, c.d, {.chain_blur = false});
    REQUIRE(chain.num_lattice_points() == plain.num_lattice_points());
    check_same_outputs(chain, plain, static_cast<uint64_t>(c.n));
  }
}

TEST_CASE("dense filter: the exact sum, self included") {
  // Two points at distance r = 1.5 in d = 2: out_0 = in_0 + exp(-r^2 / 2) in_1.
  const std::vector<double> f{0.0, 0.0, 0.9, 1.2};
  const DenseGaussianFilter dense(f, 2, 2);
  const std::vector<double> in{2.0, -3.0};
  std::vector<double> out(2);
  dense.apply(in.data(), out.data(), 1);
  const double k = std::exp(-0.5 * (0.81 + 1.44));
  CHECK(out[0] == doctest::Approx(2.0 - 3.0 * k).epsilon(1e-14));
  CHECK(out[1] == doctest::Approx(-3.0 + 2.0 * k).epsilon(1e-14));
}

TEST_CASE("dense filter: channels in chunks of 16 give each channel's own result") {
  // The row rule (kernels/dense_gaussian.h) sums 16 channels at a time;
  // 17 and 33 channels cross one and two chunk edges. Each channel of the
  // wide call must equal a one-channel call on that channel alone, to the
  // last bits (the compiler may fuse the multiply-adds of a chunk and of a
  // single channel differently), f32 and f64.
  const int64_t n = 37, d = 5;
  const DenseGaussianFilter dense(values(random_tensor({n * d}, 60, DType::f64, -2, 2)), n, d);
  for (const int64_t C : {17, 33}) {
    INFO("C ", C);
    const std::vector<double> in = values(random_tensor({n * C}, 61, DType::f64));
    std::vector<double> wide(in.size()), alone(in.size());
    dense.apply(in.data(), wide.data(), C);
    std::vector<float> in32(in.begin(), in.end()), wide32(in.size()), alone32(in.size());
    dense.apply(in32.data(), wide32.data(), C);
    for (int64_t c = 0; c < C; ++c) {
      std::vector<double> one(static_cast<size_t>(n)), out(static_cast<size_t>(n));
      std::vector<float> one32(static_cast<size_t>(n)), out32(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) one[i] = in[i * C + c], one32[i] = in32[i * C + c];
      dense.apply(one.data(), out.data(), 1);
      dense.apply(one32.data(), out32.data(), 1);
      for (int64_t i = 0; i < n; ++i) alone[i * C + c] = out[i], alone32[i * C + c] = out32[i];
    }
    CHECK_CLOSE(wide, alone, 1e-13, 1e-13);
    std::vector<double> wide32d(wide32.begin(), wide32.end()), alone32d(alone32.begin(), alone32.end());
    CHECK_CLOSE(wide32d, alone32d, 1e-6, 1e-6);
  }
}

TEST_CASE("filter construction errors") {
  check_throws_with<ValueError>([] { PermutohedralLattice({}, 1, 0); }, "expected feature dimension d >= 1, got 0");
  check_throws_with<ValueError>([] { PermutohedralLattice({}, 0, 2); }, "expected at least one point, got 0");
  check_throws_with<ValueError>([] { PermutohedralLattice({1.0, 2.0, 3.0}, 2, 2); }, "expected 2 x 2 = 4 features, got 3");
  check_throws_with<ValueError>([] { PermutohedralLattice({1.0, NAN}, 1, 2); }, "features must be finite");
  check_throws_with<ValueError>([] { PermutohedralLattice({1e12, 0.0}, 1, 2); }, "are they divided by theta?");
  check_throws_with<ValueError>([] { DenseGaussianFilter({1.0}, 1, 2); }, "expected 1 x 2 = 2 features, got 1");
}
