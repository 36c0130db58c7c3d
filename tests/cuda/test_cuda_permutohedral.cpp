// The CUDA permutohedral filter (crf/permutohedral_cuda.h,
// kernels/cuda/permutohedral.cu) against the CPU lattice it is uploaded
// from: the same host-built lattice is applied by PermutohedralLattice::apply
// and by CudaPermutohedralFilter, forward and transpose, in f32 and f64, on
// the CRF's 24x24 bilateral (RGB, d = 5) and spatial (d = 2) features and on
// awkward sizes (1 point, 1x17, primes, channel counts off the CPU's
// unrolled 1..4). The GPU sums in the CPU's order, so the bound is 1e-5
// relative in f32 (1e-10 in f64), far looser than the expected last-bit
// differences.
//
// Every case but the last needs a CUDA device: without one doctest reports
// them as skipped, not passed (the suite prints "no CUDA device" once). The
// last case checks the clean DeviceError when there is no device or no CUDA
// build. These GPU cases were written and compiled without a GPU; they had
// NOT been run on one when committed.
// Run: build/tests/test_cuda -tc='*permutohedral*' [-s for the error report]
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "crf/gaussian_filter.h"
#include "crf/permutohedral.h"
#include "crf/permutohedral_cuda.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::crf;
using namespace crfseg::test;

namespace {

const bool kNoDevice = [] {
  const bool none = cuda::device_count() == 0;
  if (none) std::fprintf(stderr, "test_cuda_permutohedral: no CUDA device, skipping the GPU cases\n");
  return none;
}();

template <typename T>
std::vector<T> uniform_values(int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = static_cast<T>(gen.uniform_f64());
  return v;
}

template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// A random RGB image [3 x H x W] on the 0-255 scale.
std::vector<double> random_image(int64_t H, int64_t W, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> image(static_cast<size_t>(3 * H * W));
  for (double& x : image) x = 255.0 * gen.uniform_f64();
  return image;
}

// Applies one host-built lattice on the CPU and on cuda:0 to the same random
// values [n x C], forward and transpose, and compares.
template <typename T>
void check_against_cpu(const std::vector<double>& features, int64_t n, int64_t d, int64_t C, uint64_t seed) {
  const double atol = sizeof(T) == 4 ? 1e-6 : 1e-12, rtol = sizeof(T) == 4 ? 1e-5 : 1e-10;
  const PermutohedralLattice lattice(features, n, d);
  const CudaPermutohedralFilter gpu(lattice, 0);
  CHECK(gpu.num_points() == n);
  CHECK(gpu.feature_dim() == d);
  CHECK(gpu.num_lattice_points() == lattice.num_lattice_points());
  const std::vector<T> in = uniform_values<T>(n * C, seed);
  for (bool transpose : {false, true}) {
    CAPTURE(transpose);
    std::vector<T> want(in.size()), got(in.size());
    lattice.apply(in.data(), want.data(), C, transpose);
    gpu.filter_host(in.data(), got.data(), C, transpose);
    double max_rel = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      if (want[i] != 0) max_rel = std::max(max_rel, std::abs(double(got[i]) - want[i]) / std::abs(double(want[i])));
    }
    MESSAGE("n ", n, " d ", d, " C ", C, (sizeof(T) == 4 ? " f32" : " f64"), (transpose ? " transpose" : " forward"),
            ": max rel err vs CPU ", max_rel, ", lattice points ", lattice.num_lattice_points());
    CHECK_CLOSE(as_double(got), as_double(want), atol, rtol);
  }
}

}  // namespace

TEST_CASE("cuda permutohedral: 24x24 RGB bilateral lattice (d = 5) matches the CPU" * doctest::skip(kNoDevice)) {
  const int64_t H = 24, W = 24, N = H * W;
  const std::vector<double> image = random_image(H, W, 11);
  SUBCASE("CRF defaults theta_alpha 160, theta_beta 3") {
    const std::vector<double> f = bilateral_features(image.data(), 3, H, W, 160.0, 3.0);
    check_against_cpu<float>(f, N, 5, 3, 1);
    check_against_cpu<double>(f, N, 5, 3, 2);
  }
  SUBCASE("denser lattice: theta_alpha 160, theta_beta 64") {
    const std::vector<double> f = bilateral_features(image.data(), 3, H, W, 160.0, 64.0);
    check_against_cpu<float>(f, N, 5, 3, 3);
    check_against_cpu<double>(f, N, 5, 3, 4);
  }
}

TEST_CASE("cuda permutohedral: 24x24 spatial lattice (d = 2) matches the CPU" * doctest::skip(kNoDevice)) {
  const std::vector<double> f = spatial_features(24, 24, 3.0);
  check_against_cpu<float>(f, 24 * 24, 2, 3, 5);
  check_against_cpu<double>(f, 24 * 24, 2, 3, 6);
}

TEST_CASE("cuda permutohedral: awkward sizes and channel counts" * doctest::skip(kNoDevice)) {
  struct Size {
    int64_t H, W;
  };
  for (const Size s : {Size{1, 1}, Size{1, 17}, Size{17, 1}, Size{7, 13}, Size{31, 29}}) {
    CAPTURE(s.H);
    CAPTURE(s.W);
    const int64_t N = s.H * s.W;
    const std::vector<double> image = random_image(s.H, s.W, 20 + static_cast<uint64_t>(N));
    const std::vector<double> bilateral = bilateral_features(image.data(), 3, s.H, s.W, 8.0, 13.0);
    const std::vector<double> spatial = spatial_features(s.H, s.W, 3.0);
    for (int64_t C : {1, 2, 3, 4, 5, 7}) {
      CAPTURE(C);
      check_against_cpu<float>(bilateral, N, 5, C, 100 + static_cast<uint64_t>(C));
      check_against_cpu<float>(spatial, N, 2, C, 200 + static_cast<uint64_t>(C));
    }
    // d = 1 and d = 3 (grayscale bilateral) exercise other blur-pass counts.
    std::vector<double> f1(static_cast<size_t>(N)), f3(static_cast<size_t>(3 * N));
    for (int64_t i = 0; i < N; ++i) {
      f1[i] = static_cast<double>(i) / 2.5;
      f3[3 * i] = spatial[2 * i];
      f3[3 * i + 1] = spatial[2 * i + 1];
      f3[3 * i + 2] = image[i] / 20.0;
    }
    check_against_cpu<double>(f1, N, 1, 3, 300);
    check_against_cpu<float>(f3, N, 3, 3, 301);
  }
}

TEST_CASE("cuda permutohedral: device-pointer filter() is deterministic and equals filter_host()" *
          doctest::skip(kNoDevice)) {
  const int64_t H = 24, W = 24, N = H * W, C = 3;
  const std::vector<double> image = random_image(H, W, 31);
  const PermutohedralLattice lattice(bilateral_features(image.data(), 3, H, W, 160.0, 3.0), N, 5);
  const CudaPermutohedralFilter gpu(lattice, 0);
  const std::vector<float> in = uniform_values<float>(N * C, 32);
  const size_t bytes = in.size() * sizeof(float);
  void* d_in = cuda::malloc_bytes(bytes, 0);
  void* d_out = cuda::malloc_bytes(bytes, 0);
  cuda::copy_to_device(d_in, in.data(), bytes, 0);
  for (bool transpose : {false, true}) {
    CAPTURE(transpose);
    std::vector<float> first(in.size()), second(in.size()), host(in.size());
    gpu.filter(static_cast<const float*>(d_in), static_cast<float*>(d_out), C, transpose);
    cuda::copy_to_host(first.data(), d_out, bytes, 0);
    gpu.filter(static_cast<const float*>(d_in), static_cast<float*>(d_out), C, transpose);
    cuda::copy_to_host(second.data(), d_out, bytes, 0);
    gpu.filter_host(in.data(), host.data(), C, transpose);
    CHECK(first == second);  // bit-identical: gathers only, no atomics
    CHECK(first == host);
  }
  cuda::free_bytes(d_in, 0);
  cuda::free_bytes(d_out, 0);
}

TEST_CASE("cuda permutohedral: transpose is the adjoint, <K x, y> = <x, K^T y>" * doctest::skip(kNoDevice)) {
  const int64_t H = 24, W = 24, N = H * W, C = 2;
  const std::vector<double> image = random_image(H, W, 41);
  const PermutohedralLattice lattice(bilateral_features(image.data(), 3, H, W, 160.0, 3.0), N, 5);
  const CudaPermutohedralFilter gpu(lattice, 0);
  const std::vector<double> x = uniform_values<double>(N * C, 42), y = uniform_values<double>(N * C, 43);
  std::vector<double> kx(x.size()), kty(y.size());
  gpu.filter_host(x.data(), kx.data(), C, false);
  gpu.filter_host(y.data(), kty.data(), C, true);
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    lhs += kx[i] * y[i];
    rhs += x[i] * kty[i];
  }
  CHECK(std::abs(lhs - rhs) <= 1e-10 * std::abs(lhs));
}

TEST_CASE("cuda permutohedral: bad arguments throw ValueError" * doctest::skip(kNoDevice)) {
  const PermutohedralLattice lattice(spatial_features(3, 3, 3.0), 9, 2);
  const CudaPermutohedralFilter gpu(lattice, 0);
  std::vector<float> in(9), out(9);
  check_throws_with<ValueError>([&] { gpu.filter_host(in.data(), out.data(), 0); }, "expected channels >= 1");
  check_throws_with<ValueError>([&] { gpu.filter(static_cast<const float*>(nullptr), out.data(), 1); },
                                "null input or output pointer");
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter(lattice, 99); }, "expected a CUDA device index");
}

TEST_CASE("cuda permutohedral: without a device (or CUDA build), construction throws DeviceError" *
          doctest::skip(!kNoDevice)) {
  const PermutohedralLattice lattice(spatial_features(3, 3, 3.0), 9, 2);
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter(lattice, 0); }, "CudaPermutohedralFilter");
  const std::string expected = cuda::is_compiled() ? "no CUDA device present" : "built without CUDA";
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter(lattice, 0); }, expected);
}
