// Upsampling: kernels/cpu/upsample.* against kernels/ref/upsample.* for
// nearest and bilinear (align_corners both ways), f32 and f64, forward and
// backward, over sizes 1, primes, integer and non-integer up- and
// down-sampling factors, identity, and planes large enough for the parallel
// path. The reference is pinned by values known from torch's semantics
// (bilinear 2x2 -> 4x4 both ways, nearest's float32 index rule) and by the
// adjoint identity <up(x), g> == <x, up_backward(g)>. Then the raw op on
// non-contiguous tensors and its argument checks.
// Run: build/tests/test_kernels -tc='*upsample*'
#include <array>
#include <sstream>

#include "kernels/cpu/upsample.h"
#include "kernels/ref/upsample.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

// {planes, H, W, P, Q}
using ResizeCase = std::array<int64_t, 5>;

std::vector<ResizeCase> resize_cases() {
  return {
      {1, 1, 1, 1, 1},      {1, 1, 1, 5, 3},     // a single pixel, to 1 and spread out
      {2, 5, 3, 1, 1},      {2, 4, 4, 8, 8},     // everything to one pixel; exact 2x
      {3, 7, 13, 11, 29},   {2, 13, 7, 5, 3},    // non-integer up; non-integer down
      {2, 6, 9, 6, 9},      {1, 3, 5, 7, 2},     // identity; up in H, down in W
      {1, 2, 82, 3, 2},     {1, 2, 2, 2, 82},    // torch's float32 nearest index differs from exact here
      {16, 33, 65, 70, 129}, {16, 65, 33, 31, 17},  // large: parallel paths, up and down
  };
}

std::string describe(const ResizeCase& c, const char* mode, bool align_corners, const char* dtype) {
  std::ostringstream s;
  s << "planes " << c[0] << ", " << c[1] << "x" << c[2] << " -> " << c[3] << "x" << c[4] << ", " << mode
    << (align_corners ? ", align_corners" : "") << ", " << dtype;
  return s.str();
}

template <typename T>
std::vector<T> random_values(int64_t n, uint64_t seed) {
  return random_tensor({n}, seed, dtype_of<T>::value).template to_vector<T>();
}

template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
void check_nearest(const ResizeCase& c, uint64_t seed) {
  const auto [planes, H, W, P, Q] = c;
  INFO(describe(c, "nearest", false, sizeof(T) == 4 ? "f32" : "f64"));
  const std::vector<T> x = random_values<T>(planes * H * W, seed);
  std::vector<T> y_ref(planes * P * Q), y_cpu(planes * P * Q, T(7));
  kernels::ref::upsample_nearest2d_forward(x.data(), y_ref.data(), planes, H, W, P, Q);
  kernels::cpu::upsample_nearest2d_forward(x.data(), y_cpu.data(), planes, H, W, P, Q);
  CHECK_CLOSE(as_double(y_cpu), as_double(y_ref), 0.0, 0.0);  // a copy: exact

  const std::vector<T> grad = random_values<T>(planes * P * Q, seed + 1);
  std::vector<T> dx_ref(x.size()), dx_cpu(x.size(), T(7));
  kernels::ref::upsample_nearest2d_backward(grad.data(), dx_ref.data(), planes, H, W, P, Q);
  kernels::cpu::upsample_nearest2d_backward(grad.data(), dx_cpu.data(), planes, H, W, P, Q);
  // Up to ceil(P/H) * ceil(Q/W) gradients meet in one input (82 for 1 -> 82).
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-13;
  CHECK_CLOSE(as_double(dx_cpu), as_double(dx_ref), tol, tol);
}

template <typename T>
void check_bilinear(const ResizeCase& c, bool align_corners, uint64_t seed) {
  const auto [planes, H, W, P, Q] = c;
  INFO(describe(c, "bilinear", align_corners, sizeof(T) == 4 ? "f32" : "f64"));
  const std::vector<T> x = random_values<T>(planes * H * W, seed);
  std::vector<T> y_ref(planes * P * Q), y_cpu(planes * P * Q, T(7));
  kernels::ref::upsample_bilinear2d_forward(x.data(), y_ref.data(), planes, H, W, P, Q, align_corners);
  kernels::cpu::upsample_bilinear2d_forward(x.data(), y_cpu.data(), planes, H, W, P, Q, align_corners);
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  CHECK_CLOSE(as_double(y_cpu), as_double(y_ref), tol, tol);

  const std::vector<T> grad = random_values<T>(planes * P * Q, seed + 1);
  std::vector<T> dx_ref(x.size()), dx_cpu(x.size(), T(7));
  kernels::ref::upsample_bilinear2d_backward(grad.data(), dx_ref.data(), planes, H, W, P, Q, align_corners);
  kernels::cpu::upsample_bilinear2d_backward(grad.data(), dx_cpu.data(), planes, H, W, P, Q, align_corners);
  const double btol = sizeof(T) == 4 ? 1e-5 : 1e-13;
  CHECK_CLOSE(as_double(dx_cpu), as_double(dx_ref), btol, btol);
}

}  // namespace

// ---------------------------------------------------------------- cpu vs ref

TEST_CASE("upsample kernels: cpu nearest matches ref (forward exactly, backward)") {
  uint64_t seed = 500;
  for (const ResizeCase& c : resize_cases()) {
    check_nearest<float>(c, seed++);
    check_nearest<double>(c, seed++);
  }
}

TEST_CASE("upsample kernels: cpu bilinear matches ref, align_corners both ways") {
  uint64_t seed = 600;
  for (const ResizeCase& c : resize_cases()) {
    for (bool align : {false, true}) {
      check_bilinear<float>(c, align, seed++);
      check_bilinear<double>(c, align, seed++);
    }
  }
}

// ------------------------------------------------- the reference, by hand

TEST_CASE("upsample reference: bilinear 2x2 -> 4x4 as torch computes it") {
  const std::vector<double> x = {1, 2, 3, 4};
  std::vector<double> y(16);
  // align_corners=False: source coordinates (d + 0.5) / 2 - 0.5 = -0.25 -> 0, 0.25, 0.75, 1.25 -> 1.
  kernels::ref::upsample_bilinear2d_forward(x.data(), y.data(), 1, 2, 2, 4, 4, false);
  CHECK_CLOSE(y, (std::vector<double>{1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5,  //
                                      2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0}),
              1e-15, 1e-15);
  // align_corners=True: source coordinates d / 3, so the corners are kept.
  kernels::ref::upsample_bilinear2d_forward(x.data(), y.data(), 1, 2, 2, 4, 4, true);
  CHECK_CLOSE(y, (std::vector<double>{1, 4.0 / 3, 5.0 / 3, 2, 5.0 / 3, 2, 7.0 / 3, 8.0 / 3,  //
                                      7.0 / 3, 8.0 / 3, 3, 10.0 / 3, 3, 10.0 / 3, 11.0 / 3, 4}),
              1e-15, 1e-15);
}

TEST_CASE("upsample reference: bilinear downsampling, single outputs and backward by hand") {
  const std::vector<double> x = {1, 2, 3, 4};
  std::vector<double> y(2), y1(1);
  // 4 -> 2 without antialiasing: centres map to 0.5 and 2.5, averaging pairs.
  kernels::ref::upsample_bilinear2d_forward(x.data(), y.data(), 1, 1, 4, 1, 2, false);
  CHECK_CLOSE(y, (std::vector<double>{1.5, 3.5}), 1e-15, 1e-15);
  // align_corners: the two ends.
  kernels::ref::upsample_bilinear2d_forward(x.data(), y.data(), 1, 1, 4, 1, 2, true);
  CHECK_CLOSE(y, (std::vector<double>{1, 4}), 1e-15, 1e-15);
  // To one pixel: the centre (1.5 -> 2.5) without align_corners, the first pixel with.
  kernels::ref::upsample_bilinear2d_forward(x.data(), y1.data(), 1, 1, 4, 1, 1, false);
  CHECK(y1[0] == doctest::Approx(2.5));
  kernels::ref::upsample_bilinear2d_forward(x.data(), y1.data(), 1, 1, 4, 1, 1, true);
  CHECK(y1[0] == 1);

  // Backward of 1x2 -> 1x4 (align_corners=False): taps (1, 0), (.75, .25),
  // (.25, .75) and (0, 1) (the last clamped to the edge), so grad
  // [1, 2, 3, 4] gives dx = [1 + 1.5 + 0.75, 0.5 + 2.25 + 4].
  const std::vector<double> grad = {1, 2, 3, 4};
  std::vector<double> dx(2);
  kernels::ref::upsample_bilinear2d_backward(grad.data(), dx.data(), 1, 1, 2, 1, 4, false);
  CHECK_CLOSE(dx, (std::vector<double>{3.25, 6.75}), 1e-15, 1e-15);
}

TEST_CASE("upsample reference: nearest indices follow torch's float32 rule") {
  const std::vector<double> x = {10, 20, 30, 40, 50};
  std::vector<double> y5(5), y3(3);
  // 3 -> 5: floor(d * 0.6) = 0, 0, 1, 1, 2.
  kernels::ref::upsample_nearest2d_forward(x.data(), y5.data(), 1, 1, 3, 1, 5);
  CHECK(y5 == std::vector<double>{10, 10, 20, 20, 30});
  // 5 -> 3 (down): floor(d * 5/3) = 0, 1, 3.
  kernels::ref::upsample_nearest2d_forward(x.data(), y3.data(), 1, 1, 5, 1, 3);
  CHECK(y3 == std::vector<double>{10, 20, 40});
  // 2 -> 82: 41 * float(2/82) rounds to just below 1, so output 41 reads
  // input 0 in torch (exact arithmetic would give input 1), in f64 as well.
  std::vector<double> y82(82);
  kernels::ref::upsample_nearest2d_forward(x.data(), y82.data(), 1, 1, 2, 1, 82);
  CHECK(y82[40] == 10);
  CHECK(y82[41] == 10);
  CHECK(y82[42] == 20);
  std::vector<float> y82f(82);
  const std::vector<float> xf = {10, 20};
  kernels::ref::upsample_nearest2d_forward(xf.data(), y82f.data(), 1, 1, 2, 1, 82);
  CHECK(y82f[41] == 10);

  // Backward of 2x2 -> 4x4: each input gathers its 2x2 block.
  std::vector<double> grad(16), dx(4);
  for (int i = 0; i < 16; ++i) grad[i] = i;
  kernels::ref::upsample_nearest2d_backward(grad.data(), dx.data(), 1, 2, 2, 4, 4);
  CHECK(dx == std::vector<double>{0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15});
}

TEST_CASE("upsample reference: backward is the adjoint of forward (<up(x), g> == <x, dx>)") {
  uint64_t seed = 700;
  for (const ResizeCase& c : resize_cases()) {
    const auto [planes, H, W, P, Q] = c;
    if (planes * P * Q > 100000) continue;  // the sweep's large cases add nothing here
    INFO(describe(c, "both", false, "f64"));
    const std::vector<double> x = random_values<double>(planes * H * W, seed++);
    const std::vector<double> grad = random_values<double>(planes * P * Q, seed++);
    std::vector<double> y(grad.size()), dx(x.size());
    kernels::ref::upsample_nearest2d_forward(x.data(), y.data(), planes, H, W, P, Q);
    kernels::ref::upsample_nearest2d_backward(grad.data(), dx.data(), planes, H, W, P, Q);
    CHECK(dot(y, grad) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
    for (bool align : {false, true}) {
      kernels::ref::upsample_bilinear2d_forward(x.data(), y.data(), planes, H, W, P, Q, align);
      kernels::ref::upsample_bilinear2d_backward(grad.data(), dx.data(), planes, H, W, P, Q, align);
      CHECK(dot(y, grad) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
    }
  }
}

// ------------------------------------------------------------- raw ops

TEST_CASE("upsample ops: non-contiguous inputs and gradients, f32 and f64") {
  // [2, 3, 5, 4] as a permuted view of an NHWC tensor.
  const Tensor x = ops::permute(random_tensor({2, 5, 4, 3}, 11, DType::f64), {0, 3, 1, 2});
  REQUIRE(!x.is_contiguous());
  const std::vector<double> xc = values(x);
  const Tensor grad = ops::transpose(random_tensor({2, 3, 7, 9}, 12, DType::f64), 2, 3);  // [2, 3, 9, 7]
  const std::vector<double> gc = values(grad);
  std::vector<double> y(6 * 9 * 7), dx(xc.size());

  kernels::ref::upsample_nearest2d_forward(xc.data(), y.data(), 6, 5, 4, 9, 7);
  CHECK_CLOSE(ops::upsample2d(x, 9, 7, ops::UpsampleMode::nearest), y, 0.0, 0.0);
  kernels::ref::upsample_nearest2d_backward(gc.data(), dx.data(), 6, 5, 4, 9, 7);
  CHECK_CLOSE(ops::upsample2d_backward(grad, x.shape(), ops::UpsampleMode::nearest), dx, 1e-14, 1e-14);
  for (bool align : {false, true}) {
    kernels::ref::upsample_bilinear2d_forward(xc.data(), y.data(), 6, 5, 4, 9, 7, align);
    const Tensor out = ops::upsample2d(x, 9, 7, ops::UpsampleMode::bilinear, align);
    CHECK(out.shape() == Shape{2, 3, 9, 7});
    CHECK_CLOSE(out, y, 1e-14, 1e-14);
    kernels::ref::upsample_bilinear2d_backward(gc.data(), dx.data(), 6, 5, 4, 9, 7, align);
    CHECK_CLOSE(ops::upsample2d_backward(grad, x.shape(), ops::UpsampleMode::bilinear, align), dx, 1e-14, 1e-14);
  }
  const Tensor y32 = ops::upsample2d(ops::to_dtype(x, DType::f32), 3, 2, ops::UpsampleMode::bilinear);
  CHECK(y32.dtype() == DType::f32);
  CHECK(y32.shape() == Shape{2, 3, 3, 2});
}

TEST_CASE("upsample ops reject bad arguments, naming the op, the expected and the got") {
  const Tensor x = zeros({1, 2, 3, 3});
  using ops::UpsampleMode;
  check_throws_with<ValueError>([&] { ops::upsample2d(x, 0, 4, UpsampleMode::nearest); },
                                "upsample2d: expected an output size >= 1, got 0x4");
  check_throws_with<ValueError>([&] { ops::upsample2d(x, 4, 4, UpsampleMode::nearest, true); },
                                "upsample2d: align_corners=true needs mode bilinear, got mode nearest");
  check_throws_with<ShapeError>([] { ops::upsample2d(zeros({2, 3, 3}), 4, 4, UpsampleMode::bilinear); },
                                "upsample2d: expected a 4-D input [N, C, H, W], got [2, 3, 3]");
  check_throws_with<ShapeError>([] { ops::upsample2d(zeros({1, 1, 0, 3}), 4, 4, UpsampleMode::bilinear); },
                                "upsample2d: expected non-zero C, H and W, got [1, 1, 0, 3]");
  check_throws_with<DTypeError>([] { ops::upsample2d(zeros({1, 1, 2, 2}, {DType::i64}), 4, 4, UpsampleMode::nearest); },
                                "upsample2d: expected dtype f32 or f64, got i64");
  check_throws_with<ShapeError>([&] { ops::upsample2d_backward(zeros({1, 3, 6, 6}), x.shape(), UpsampleMode::nearest); },
                                "upsample2d_backward: expected grad [1, 2, P, Q] for x_shape [1, 2, 3, 3], got [1, 3, 6, 6]");
  check_throws_with<ShapeError>([] { ops::upsample2d_backward(zeros({1, 2, 6, 6}), {2, 3}, UpsampleMode::nearest); },
                                "upsample2d_backward: expected x_shape [N, C, H, W] with non-zero C, H, W, got [2, 3]");
  check_throws_with<ValueError>(
      [&] { ops::upsample2d_backward(zeros({1, 2, 6, 6}), x.shape(), UpsampleMode::nearest, true); },
      "upsample2d_backward: align_corners=true needs mode bilinear");
}
