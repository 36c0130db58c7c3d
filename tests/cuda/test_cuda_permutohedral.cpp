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
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>

#include "crf/dense_filter.h"
#include "crf/gaussian_filter.h"
#include "crf/gaussian_filter_cuda.h"
#include "crf/mean_field_composed.h"
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
  // The scratch comes from the caching allocator (counted, returned on exit),
  // also on a stream other than the current one, where it is reused.
  const cuda::Stream side(0);
  for (const cuda::StreamHandle stream : {cuda::current_stream(0), side.handle()}) {
    const DeviceMemoryStats before = cuda::memory_stats(0);
    std::vector<float> got(in.size());
    gpu.filter(static_cast<const float*>(d_in), static_cast<float*>(d_out), C, false, stream);
    gpu.filter(static_cast<const float*>(d_in), static_cast<float*>(d_out), C, false, stream);
    side.synchronize();
    cuda::copy_to_host(got.data(), d_out, bytes, 0);
    const DeviceMemoryStats after = cuda::memory_stats(0);
    CHECK(after.allocations - before.allocations == 2);
    CHECK(after.cache_hits - before.cache_hits >= 1);  // the second call reused the first's block
    CHECK(after.allocated_bytes == before.allocated_bytes);
    std::vector<float> host(in.size());
    gpu.filter_host(in.data(), host.data(), C, false);
    CHECK(got == host);
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

// The lattice built on the GPU (CudaPermutohedralFilter::build,
// kernels/cuda/lattice_build.cu) against the same batch's tables from the
// build's host twin (lattice_tables_sorted, itself checked bit for bit
// against the CPU lattices in tests/crf): both number the lattice points in
// code order, so the index tables must be equal outright and the weights
// equal to an ulp of float (nvcc and GCC may fuse different multiply-adds
// in the embedding: a last-bit difference in a double can round a weight
// the other way); and, through the same filter kernels, the same values to
// rounding. Batches of noisy and smooth RGB images (16 x 48x40: 184k vertex
// entries, the sort's many blocks) and gray ones, 1x1 images, uniform
// features whose codes need 53 bits with the image number (one case under
// a non-default stream); then the cases the build leaves to the host
// (dimensions outside 2..5, codes over 64 bits) and bad features.
namespace {

void check_tables_equal(const LatticeTables& got, const LatticeTables& want) {
  REQUIRE(got.num_lattice == want.num_lattice);
  CHECK(got.num_points == want.num_points);
  CHECK(got.alpha == want.alpha);
  CHECK(got.splat_offsets == want.splat_offsets);
  CHECK(got.splat_points == want.splat_points);
  CHECK(got.neighbours == want.neighbours);
  CHECK(got.vertices == want.vertices);
  for (const auto& [g, w] : {std::pair{&got.splat_weights, &want.splat_weights},
                             std::pair{&got.barycentric, &want.barycentric}}) {
    REQUIRE(g->size() == w->size());
    int64_t off = 0;
    for (size_t i = 0; i < g->size(); ++i) {
      const float a = (*g)[i], b = (*w)[i];
      off += a != b && std::nextafter(a, b) != b;  // more than one ulp apart
    }
    CHECK(off == 0);
  }
}

}  // namespace

TEST_CASE("cuda lattice build: the GPU-built batch lattice is its host twin's, tables and filter" *
          doctest::skip(kNoDevice)) {
  struct Case {
    int64_t images, channels, h, w;  // channels < 0: uniform features of dim 5 on [-150, 150]
    bool smooth;                     // a gradient image (a dense lattice) instead of noise
    bool own_stream;
  };
  for (const Case c : {Case{16, 3, 48, 40, false, false}, Case{3, 3, 37, 29, true, false},
                       Case{5, 1, 13, 11, false, true}, Case{2, 3, 1, 1, false, false},
                       Case{6, -5, 1, 53, false, false}}) {
    INFO("images ", c.images, " channels ", c.channels, " ", c.h, "x", c.w, c.smooth ? " smooth" : "",
         c.own_stream ? " (own stream)" : "");
    const int64_t n = c.h * c.w, dim = c.channels > 0 ? 2 + c.channels : -c.channels;
    std::vector<double> features;
    for (int64_t b = 0; b < c.images; ++b) {
      std::vector<double> f;
      if (c.channels < 0) {
        f = uniform_values<double>(n * dim, static_cast<uint64_t>(60 + b));
        for (double& x : f) x = 300.0 * x - 150.0;
      } else {
        std::vector<double> image = random_image(c.h, c.w, static_cast<uint64_t>(60 + b));
        image.resize(static_cast<size_t>(c.channels * n));
        if (c.smooth) {
          for (int64_t x = 0; x < c.channels * n; ++x) image[static_cast<size_t>(x)] = static_cast<double>((x % n) + 7 * b);
        }
        f = bilateral_features(image.data(), c.channels, c.h, c.w, 3.0, 30.0);
      }
      features.insert(features.end(), f.begin(), f.end());
    }
    const std::optional<LatticeTables> twin = lattice_tables_sorted(features, c.images, n, dim);
    REQUIRE(twin.has_value());
    std::optional<cuda::Stream> stream;
    std::optional<cuda::StreamGuard> guard;
    if (c.own_stream) {
      stream.emplace(0);
      guard.emplace(*stream);
    }
    const std::optional<CudaPermutohedralFilter> built = CudaPermutohedralFilter::build(features, c.images, n, dim, 0);
    REQUIRE(built.has_value());
    CHECK(built->num_points() == c.images * n);
    check_tables_equal(built->download_tables(), *twin);
    const CudaPermutohedralFilter uploaded(*twin, 0);
    for (const int64_t C : {1, 3}) {
      const int64_t N = c.images * n;
      const std::vector<double> in = uniform_values<double>(N * C, 70);
      for (bool transpose : {false, true}) {
        INFO("C ", C, " transpose ", transpose);
        std::vector<double> got(in.size()), want(in.size());
        built->filter_host(in.data(), got.data(), C, transpose);
        uploaded.filter_host(in.data(), want.data(), C, transpose);
        CHECK_CLOSE(got, want, 1e-7, 1e-7);
        std::vector<float> in32(in.begin(), in.end()), got32(in.size()), want32(in.size());
        built->filter_host(in32.data(), got32.data(), C, transpose);
        uploaded.filter_host(in32.data(), want32.data(), C, transpose);
        CHECK_CLOSE(as_double(got32), as_double(want32), 1e-5, 1e-5);
      }
    }
  }
  const std::vector<double> f1 = uniform_values<double>(2 * 7, 71), f6 = uniform_values<double>(2 * 7 * 6, 72);
  CHECK_FALSE(CudaPermutohedralFilter::build(f1, 2, 7, 1, 0).has_value());
  CHECK_FALSE(CudaPermutohedralFilter::build(f6, 2, 7, 6, 0).has_value());
  std::vector<double> wide = uniform_values<double>(2 * 40 * 5, 74);  // codes over 64 bits: known after the bounds
  for (double& x : wide) x = 2e5 * x - 1e5;
  CHECK_FALSE(CudaPermutohedralFilter::build(wide, 2, 40, 5, 0).has_value());
  std::vector<double> bad = uniform_values<double>(3 * 4 * 5, 73);
  bad[17] = std::nan("");
  check_throws_with<ValueError>([&] { (void)CudaPermutohedralFilter::build(bad, 3, 4, 5, 0); },
                                "CudaPermutohedralFilter::build: features out of the lattice's range");
  bad[17] = 1e12;
  check_throws_with<ValueError>([&] { (void)CudaPermutohedralFilter::build(bad, 3, 4, 5, 0); },
                                "are they divided by theta?");
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter::build(f6, 2, 7, 6, 99); },
                                 "expected a CUDA device index");
}

// The bilateral features computed on the device from a CUDA image batch
// (CudaPermutohedralFilter::build_bilateral) are the host's
// (bilateral_features: divisions only, the same bits), so the lattice is
// the twin's table for table. f32 images of 3 and 1 channels, odd sizes.
TEST_CASE("cuda lattice build: from a CUDA image batch, the features made on the device" * doctest::skip(kNoDevice)) {
  for (const std::array<int64_t, 4>& shape : std::vector<std::array<int64_t, 4>>{{4, 3, 23, 17}, {3, 1, 9, 31}, {1, 3, 1, 1}}) {
    const int64_t B = shape[0], C = shape[1], H = shape[2], W = shape[3];  // (INFO cannot capture bindings)
    INFO(B, " images ", C, " x ", H, " x ", W);
    const Tensor image = random_tensor({B, C, H, W}, 90, DType::f32, 0, 255);
    const std::vector<double> planes = values(image);
    std::vector<double> features;
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<double> f = bilateral_features(planes.data() + b * C * H * W, C, H, W, 5.0, 13.0);
      features.insert(features.end(), f.begin(), f.end());
    }
    const std::optional<LatticeTables> twin = lattice_tables_sorted(features, B, H * W, 2 + C);
    REQUIRE(twin.has_value());
    const std::optional<CudaPermutohedralFilter> built =
        CudaPermutohedralFilter::build_bilateral(image.to(Device::cuda(0)), 5.0, 13.0);
    REQUIRE(built.has_value());
    check_tables_equal(built->download_tables(), *twin);
  }
  check_throws_with<ValueError>([] { (void)CudaPermutohedralFilter::build_bilateral(random_tensor({1, 3, 4, 4}, 91), 5, 13); },
                                "expected a CUDA image [B, C, H, W]");
  check_throws_with<ValueError>(
      [] { (void)CudaPermutohedralFilter::build_bilateral(random_tensor({1, 3, 4, 4}, 91).to(Device::cuda(0)), 0, 13); },
      "expected positive thetas");
}

// The exact filter on the GPU (the dense mode: CudaDenseGaussianFilter,
// kernels/cuda/dense_gaussian.cu) against the CPU's DenseGaussianFilter:
// the same row rule (kernels/dense_gaussian.h), summed in the same order in
// double, so only exp's last bits differ (CUDA's exp against glibc's).
// Channel counts 1, 3 and 17 (two chunks of 16), a single point, and a
// stack of three images' filters, block by block.
TEST_CASE("cuda dense filter: the exact filter matches the CPU's, alone and stacked" * doctest::skip(kNoDevice)) {
  struct Case {
    int64_t blocks, h, w;
  };
  for (const Case c : {Case{1, 9, 7}, Case{1, 1, 1}, Case{3, 5, 6}}) {
    const int64_t n = c.h * c.w, N = c.blocks * n;
    std::vector<std::unique_ptr<DenseGaussianFilter>> cpu;
    std::vector<const DenseGaussianFilter*> raw;
    for (int64_t b = 0; b < c.blocks; ++b) {
      const std::vector<double> image = random_image(c.h, c.w, static_cast<uint64_t>(80 + b));
      cpu.push_back(std::make_unique<DenseGaussianFilter>(bilateral_features(image.data(), 3, c.h, c.w, 3.0, 30.0),
                                                          n, 5));
      raw.push_back(cpu.back().get());
    }
    const CudaDenseGaussianFilter gpu(raw, 0);
    CHECK(gpu.num_points() == N);
    CHECK(gpu.feature_dim() == 5);
    for (const int64_t C : {1, 3, 17}) {
      INFO("blocks ", c.blocks, " ", c.h, "x", c.w, " C ", C);
      const std::vector<double> in = uniform_values<double>(N * C, 81);
      std::vector<double> want(in.size()), got(in.size());
      for (int64_t b = 0; b < c.blocks; ++b) cpu[b]->apply(in.data() + b * n * C, want.data() + b * n * C, C);
      gpu.filter_host(in.data(), got.data(), C, /*transpose=*/true);
      CHECK_CLOSE(got, want, 1e-12, 1e-12);
      const std::vector<float> in32 = uniform_values<float>(N * C, 82);
      std::vector<float> want32(in32.size()), got32(in32.size());
      for (int64_t b = 0; b < c.blocks; ++b) cpu[b]->apply(in32.data() + b * n * C, want32.data() + b * n * C, C);
      gpu.filter_host(in32.data(), got32.data(), C);
      CHECK_CLOSE(as_double(got32), as_double(want32), 1e-6, 1e-6);
    }
  }
  const std::vector<double> image = random_image(2, 3, 83);
  const DenseGaussianFilter six(bilateral_features(image.data(), 3, 2, 3, 3.0, 30.0), 6, 5);
  const DenseGaussianFilter one(bilateral_features(image.data(), 3, 1, 1, 3.0, 30.0), 1, 5);
  check_throws_with<ValueError>([&] { (void)CudaDenseGaussianFilter({&six, &one}, 0); },
                                "expected filters of one size and dimension (6 points of dimension 5), got 1 of 5");
  check_throws_with<ValueError>([&] { (void)CudaDenseGaussianFilter(std::vector<const DenseGaussianFilter*>{}, 0); },
                                "expected at least one filter");
  const CudaDenseGaussianFilter gpu(six, 0);
  std::vector<float> in(6), out(6);
  check_throws_with<ValueError>([&] { gpu.filter_host(in.data(), out.data(), 0); }, "expected channels >= 1");
}

// The composed mean-field's filter op records the stream it runs on with
// the filter's tables (crf/mean_field_composed.cpp, apply_filter): filters
// are cached across forwards, so one made on the current stream can be
// dropped while another stream still reads it. Dropped, its 12 MiB
// features block must not be handed to the current stream before the
// side stream's work is done. A 2-point dense filter of dimension 3 << 18
// is the one table of that size (O(N^2 d) work: trivial).
TEST_CASE("cuda crf filter op: a filter used on another stream is reused only after that stream's work" *
          doctest::skip(kNoDevice)) {
  const Device gpu = Device::cuda(0);
  const int64_t dim = int64_t{3} << 18;  // 2 x dim doubles = 12 MiB, a segment of its own
  std::vector<double> features(static_cast<size_t>(2 * dim), 0.0);
  features[0] = 0.5;  // the two points 0.5 apart: weight exp(-1/8) between them
  // A fresh stream as the current one: its pool starts empty, so no block
  // left by earlier tests can serve the allocations below.
  const cuda::Stream home(0), side(0);
  const cuda::StreamGuard on_home(home);
  auto filter = to_device_filter(std::make_shared<const DenseGaussianFilter>(features, 2, dim), gpu);
  if (cuda::memory_stats(0).reserved_bytes == 0) {
    MESSAGE("skipped: the caching allocator is off (CRFSEG_CUDA_CACHE=0)");
    return;
  }
  const Tensor values = from_vector(std::vector<float>{1.0f, 2.0f}, {2, 1}, gpu);
  const Tensor busy = random_tensor({2048, 2048}, 1).to(gpu);
  Tensor out;
  {
    const cuda::StreamGuard on_side(side);
    Tensor y = busy;
    for (int k = 0; k < 20; ++k) y = ops::matmul(y, busy);  // ~340 GFLOP queued on `side` first
    out = gaussian_filter(values, filter);
  }
  filter.reset();  // dense filters are not cached: the features block is freed here
  const int64_t reserved = cuda::memory_stats(0).reserved_bytes;
  const Tensor taken = empty({3 << 20}, {DType::f32, gpu});  // 12 MiB on `home`
  const int64_t with_taken = cuda::memory_stats(0).reserved_bytes;
  CHECK(with_taken > reserved);  // a new segment: the block the side stream may still read was not handed out
  side.synchronize();
  const Tensor again = empty({3 << 20}, {DType::f32, gpu});
  CHECK(cuda::memory_stats(0).reserved_bytes == with_taken);  // now the freed block is reused
  const double w = std::exp(-0.125);
  side.synchronize();
  CHECK_CLOSE(out.to(Device::cpu()), std::vector<double>{1.0 + 2.0 * w, 2.0 + 1.0 * w}, 1e-6, 1e-6);
}

TEST_CASE("cuda permutohedral: without a device (or CUDA build), construction throws DeviceError" *
          doctest::skip(!kNoDevice)) {
  const PermutohedralLattice lattice(spatial_features(3, 3, 3.0), 9, 2);
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter(lattice, 0); }, "CudaPermutohedralFilter");
  const std::string expected = cuda::is_compiled() ? "no CUDA device present" : "built without CUDA";
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter(lattice, 0); }, expected);
  const std::vector<double> f = spatial_features(3, 3, 3.0);
  check_throws_with<DeviceError>([&] { (void)CudaPermutohedralFilter::build(f, 1, 9, 2, 0); }, expected);
}
