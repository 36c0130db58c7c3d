// Pooling: kernels/cpu/pool2d.* against kernels/ref/pool2d.* over awkward
// geometries (size 1, primes, non-multiples, stride != kernel, padding,
// dilation, ceil_mode and count_include_pad both ways, windows that are all
// padding), f32 and f64, forward and backward. The reference itself is
// pinned by hand-computed cases that follow torch's documented results and by
// adjoint identities (<pool(x), g> == <x, pool_backward(g)>). Then the raw
// ops: non-contiguous inputs, output shapes and every argument check.
// Run: build/tests/test_kernels -tc='*pool*'
#include <cmath>
#include <limits>
#include <sstream>

#include "kernels/cpu/pool2d.h"
#include "kernels/ref/pool2d.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using kernels::Pool2dGeometry;

namespace {

// One pooling configuration; P and Q follow from pool2d_output_size.
struct PoolCase {
  int64_t planes, H, W;
  int64_t kh, kw, sh, sw, ph, pw, dh = 1, dw = 1;
  bool ceil_mode = false;
};

Pool2dGeometry geometry(const PoolCase& c) {
  Pool2dGeometry g{c.planes, c.H, c.W, 0, 0, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw};
  g.P = kernels::pool2d_output_size(c.H, c.kh, c.ph, c.sh, c.dh, c.ceil_mode);
  g.Q = kernels::pool2d_output_size(c.W, c.kw, c.pw, c.sw, c.dw, c.ceil_mode);
  return g;
}

std::string describe(const Pool2dGeometry& g, bool ceil_mode) {
  std::ostringstream s;
  s << "planes " << g.planes << ", " << g.H << "x" << g.W << " -> " << g.P << "x" << g.Q << ", kernel " << g.kernel_h
    << "x" << g.kernel_w << ", stride " << g.stride_h << "x" << g.stride_w << ", pad " << g.pad_h << "x" << g.pad_w
    << ", dil " << g.dil_h << "x" << g.dil_w << (ceil_mode ? ", ceil" : ", floor");
  return s.str();
}

// The shape sweep. The last cases exceed the kernels' OpenMP threshold.
std::vector<PoolCase> pool_cases() {
  return {
      {1, 1, 1, 1, 1, 1, 1, 0, 0},                    // size 1
      {2, 1, 1, 3, 3, 1, 1, 1, 1},                    // 1x1 input, window mostly padding
      {3, 7, 13, 3, 3, 2, 2, 1, 1},                   // primes, padded
      {2, 7, 13, 3, 3, 1, 1, 1, 1},                   // stride 1: overlapping windows
      {2, 8, 8, 2, 2, 2, 2, 0, 0},                    // the common 2x2/2
      {2, 9, 11, 3, 3, 2, 2, 0, 0, 1, 1, true},       // ceil_mode adds a partial window
      {1, 10, 9, 2, 3, 3, 1, 1, 1, 1, 1, true},       // non-square kernel, stride != kernel
      {2, 11, 11, 2, 2, 3, 3, 0, 0},                  // stride > kernel: gaps
      {1, 4, 5, 3, 3, 2, 2, 1, 1, 1, 1, true},        // ceil_mode with padding: clipped divisor
      {1, 4, 4, 2, 2, 3, 3, 1, 1, 1, 1, true},        // ceil_mode drops a window starting in the pad
      {2, 13, 7, 3, 3, 1, 1, 1, 1, 2, 2},             // dilation (max only)
      {1, 5, 17, 2, 4, 1, 3, 1, 2, 2, 1, true},       // everything at once
      {1, 2, 6, 2, 2, 1, 1, 1, 0, 3, 1},              // dilation makes an all-padding window
      {16, 33, 65, 3, 3, 2, 2, 1, 1},                 // large: parallel path
      {16, 31, 67, 2, 2, 2, 2, 0, 0, 1, 1, true},     // large, ceil
  };
}

template <typename T>
std::vector<T> random_values(int64_t n, uint64_t seed) {
  return random_tensor({n}, seed, dtype_of<T>::value).template to_vector<T>();
}

template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

// "" when a and b hold the same values (inf == inf, NaN matches NaN), else
// the first difference. CHECK_CLOSE cannot be used for max pool outputs:
// |-inf - -inf| is NaN, which it reports as a mismatch.
template <typename T>
std::string same_values(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(double(got[i])) && std::isnan(double(want[i]));
    if (got[i] != want[i] && !both_nan) {
      std::ostringstream s;
      s << "first difference at " << i << ": got " << got[i] << ", want " << want[i];
      return s.str();
    }
  }
  return "";
}

#define CHECK_SAME(got, want)                                   \
  do {                                                          \
    const std::string report_ = same_values(got, want);         \
    CHECK_MESSAGE(report_.empty(), report_);                    \
  } while (0)

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
void check_max_pool(const PoolCase& c, uint64_t seed) {
  const Pool2dGeometry g = geometry(c);
  INFO(describe(g, c.ceil_mode), ", ", sizeof(T) == 4 ? "f32" : "f64");
  REQUIRE(g.P >= 1);
  REQUIRE(g.Q >= 1);
  std::vector<T> x = random_values<T>(g.planes * g.H * g.W, seed);
  if (x.size() > 5) x[5] = std::numeric_limits<T>::quiet_NaN();  // NaN must propagate identically
  const size_t n_out = static_cast<size_t>(g.planes * g.P * g.Q);
  std::vector<T> y_ref(n_out), y_cpu(n_out);
  std::vector<int64_t> i_ref(n_out), i_cpu(n_out, 12345);
  kernels::ref::max_pool2d_forward(x.data(), y_ref.data(), i_ref.data(), g);
  kernels::cpu::max_pool2d_forward(x.data(), y_cpu.data(), i_cpu.data(), g);
  // A max is exact, so values and indices must match bit for bit.
  CHECK_SAME(y_cpu, y_ref);
  CHECK_SAME(i_cpu, i_ref);

  // Heavy ties (only the values 1 and 2) among three quarters -inf: the
  // first maximum must win in both kernels, and all -inf windows (common
  // here) report their first element.
  std::vector<T> ties(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    ties[i] = x[i] > T(0.5) ? std::round(T(2) * x[i]) : -std::numeric_limits<T>::infinity();
  std::vector<T> yt_ref(n_out), yt_cpu(n_out);
  std::vector<int64_t> it_ref(n_out), it_cpu(n_out);
  kernels::ref::max_pool2d_forward(ties.data(), yt_ref.data(), it_ref.data(), g);
  kernels::cpu::max_pool2d_forward(ties.data(), yt_cpu.data(), it_cpu.data(), g);
  CHECK_SAME(yt_cpu, yt_ref);
  CHECK_SAME(it_cpu, it_ref);

  const std::vector<T> grad = random_values<T>(static_cast<int64_t>(n_out), seed + 1);
  std::vector<T> dx_ref(x.size()), dx_cpu(x.size());
  CHECK(kernels::ref::max_pool2d_backward(grad.data(), i_ref.data(), dx_ref.data(), g) == -1);
  CHECK(kernels::cpu::max_pool2d_backward(grad.data(), i_ref.data(), dx_cpu.data(), g) == -1);
  const double tol = sizeof(T) == 4 ? 1e-6 : 1e-14;
  CHECK_CLOSE(as_double(dx_cpu), as_double(dx_ref), tol, tol);

  // The gather the CUDA backward runs with the forward's geometry: every
  // forward index lies in its own window, and gathering each input gives
  // the CPU scatter's bits (both add in T in increasing output order), for
  // the random and the tied indices alike.
  for (const std::vector<int64_t>* indices : {&i_ref, &it_ref}) {
    CHECK(kernels::cpu::max_pool2d_first_outside_window(indices->data(), g) == -1);
    std::vector<T> dx_scatter(x.size()), dx_gather(x.size());
    REQUIRE(kernels::cpu::max_pool2d_backward(grad.data(), indices->data(), dx_scatter.data(), g) == -1);
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t ih = 0; ih < g.H; ++ih)
        for (int64_t iw = 0; iw < g.W; ++iw)
          dx_gather[static_cast<size_t>((p * g.H + ih) * g.W + iw)] = kernels::max_pool_gather(
              grad.data() + p * g.P * g.Q, indices->data() + p * g.P * g.Q, ih, iw, g);
    CHECK_SAME(dx_gather, dx_scatter);
  }
}

template <typename T>
void check_avg_pool(PoolCase c, bool count_include_pad, uint64_t seed) {
  c.dh = c.dw = 1;  // average pooling has no dilation
  const Pool2dGeometry g = geometry(c);
  INFO(describe(g, c.ceil_mode), count_include_pad ? ", include pad" : ", exclude pad", ", ",
       sizeof(T) == 4 ? "f32" : "f64");
  REQUIRE(g.P >= 1);
  REQUIRE(g.Q >= 1);
  const std::vector<T> x = random_values<T>(g.planes * g.H * g.W, seed);
  const size_t n_out = static_cast<size_t>(g.planes * g.P * g.Q);
  std::vector<T> y_ref(n_out), y_cpu(n_out);
  kernels::ref::avg_pool2d_forward(x.data(), y_ref.data(), g, count_include_pad);
  kernels::cpu::avg_pool2d_forward(x.data(), y_cpu.data(), g, count_include_pad);
  // f32 sums of up to 9 values: a few ulps of the largest term.
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  CHECK_CLOSE(as_double(y_cpu), as_double(y_ref), tol, tol);

  const std::vector<T> grad = random_values<T>(static_cast<int64_t>(n_out), seed + 1);
  std::vector<T> dx_ref(x.size()), dx_cpu(x.size(), T(7));
  kernels::ref::avg_pool2d_backward(grad.data(), dx_ref.data(), g, count_include_pad);
  kernels::cpu::avg_pool2d_backward(grad.data(), dx_cpu.data(), g, count_include_pad);
  CHECK_CLOSE(as_double(dx_cpu), as_double(dx_ref), tol, tol);
}

template <typename T>
void check_adaptive(int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q, uint64_t seed) {
  INFO("planes ", planes, ", ", H, "x", W, " -> ", P, "x", Q, ", ", sizeof(T) == 4 ? "f32" : "f64");
  const std::vector<T> x = random_values<T>(planes * H * W, seed);
  std::vector<T> y_ref(planes * P * Q), y_cpu(planes * P * Q);
  kernels::ref::adaptive_avg_pool2d_forward(x.data(), y_ref.data(), planes, H, W, P, Q);
  kernels::cpu::adaptive_avg_pool2d_forward(x.data(), y_cpu.data(), planes, H, W, P, Q);
  // Windows reach H*W/(P*Q) elements (whole 33x65 planes for (1, 1)).
  const double rtol = sizeof(T) == 4 ? 1e-6 * (1.0 + double(H * W) / double(P * Q)) : 1e-13;
  CHECK_CLOSE(as_double(y_cpu), as_double(y_ref), rtol, rtol);

  const std::vector<T> grad = random_values<T>(planes * P * Q, seed + 1);
  std::vector<T> dx_ref(x.size()), dx_cpu(x.size(), T(7));
  kernels::ref::adaptive_avg_pool2d_backward(grad.data(), dx_ref.data(), planes, H, W, P, Q);
  kernels::cpu::adaptive_avg_pool2d_backward(grad.data(), dx_cpu.data(), planes, H, W, P, Q);
  CHECK_CLOSE(as_double(dx_cpu), as_double(dx_ref), rtol, rtol);
}

const double kInf = std::numeric_limits<double>::infinity();

}  // namespace

// ---------------------------------------------------------------- cpu vs ref

TEST_CASE("pool2d kernels: cpu max pool matches ref exactly (values, indices, NaN) and its backward") {
  uint64_t seed = 100;
  for (const PoolCase& c : pool_cases()) {
    check_max_pool<float>(c, seed++);
    check_max_pool<double>(c, seed++);
  }
}

TEST_CASE("pool2d kernels: cpu avg pool matches ref, count_include_pad both ways") {
  uint64_t seed = 200;
  for (const PoolCase& c : pool_cases()) {
    for (bool include : {true, false}) {
      check_avg_pool<float>(c, include, seed++);
      check_avg_pool<double>(c, include, seed++);
    }
  }
}

TEST_CASE("pool2d kernels: cpu adaptive avg pool matches ref (divisible, not, larger output, global)") {
  const std::vector<std::array<int64_t, 5>> cases = {
      {1, 1, 1, 1, 1}, {3, 7, 13, 3, 5}, {2, 8, 8, 1, 1},     {2, 5, 7, 5, 7},
      {2, 3, 4, 7, 9}, {1, 13, 17, 4, 6}, {16, 33, 65, 7, 7}, {16, 33, 65, 1, 1},
  };
  uint64_t seed = 300;
  for (const auto& c : cases) {
    check_adaptive<float>(c[0], c[1], c[2], c[3], c[4], seed++);
    check_adaptive<double>(c[0], c[1], c[2], c[3], c[4], seed++);
  }
}

// ------------------------------------------------- the reference, by hand

TEST_CASE("pool2d output size follows torch, ceil_mode included") {
  using kernels::pool2d_output_size;
  CHECK(pool2d_output_size(5, 2, 0, 2, 1, false) == 2);
  CHECK(pool2d_output_size(5, 2, 0, 2, 1, true) == 3);  // partial last window kept
  CHECK(pool2d_output_size(4, 3, 1, 2, 1, true) == 3);  // ceil(3/2)+1, last window starts at 3 < 4+1
  CHECK(pool2d_output_size(4, 2, 1, 3, 1, true) == 2);  // 3 by the formula, but window 2 starts at 6 >= 4+1
  CHECK(pool2d_output_size(4, 2, 1, 3, 1, false) == 2);
  CHECK(pool2d_output_size(224, 3, 1, 2, 1, false) == 112);  // ResNet stem
  CHECK(pool2d_output_size(13, 3, 1, 1, 2, false) == 11);    // effective kernel 5
  CHECK(pool2d_output_size(1, 3, 0, 1, 1, false) <= 0);      // too small
}

TEST_CASE("pool2d reference: max pool by hand (4x4, plain and dilated; overlapping backward)") {
  // x = [[ 3,  9,  1,  4],
  //      [ 7,  2,  8,  6],
  //      [ 5, 11,  0, 13],
  //      [10, 12, 15, 14]]
  const std::vector<double> x = {3, 9, 1, 4, 7, 2, 8, 6, 5, 11, 0, 13, 10, 12, 15, 14};
  std::vector<double> y(4);
  std::vector<int64_t> idx(4);
  Pool2dGeometry g{1, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1};
  kernels::ref::max_pool2d_forward(x.data(), y.data(), idx.data(), g);
  CHECK(y == std::vector<double>{9, 8, 12, 15});
  CHECK(idx == std::vector<int64_t>{1, 6, 13, 14});

  // kernel 2, dilation 2, stride 1: window (0,0) reads (0,0),(0,2),(2,0),(2,2) = 3,1,5,0.
  g = {1, 4, 4, 2, 2, 2, 2, 1, 1, 0, 0, 2, 2};
  kernels::ref::max_pool2d_forward(x.data(), y.data(), idx.data(), g);
  CHECK(y == std::vector<double>{5, 13, 15, 14});
  CHECK(idx == std::vector<int64_t>{8, 11, 14, 15});

  // kernel 3, stride 1, padding 1 (-inf pad): each 3x3 neighbourhood's max.
  std::vector<double> y16(16);
  std::vector<int64_t> idx16(16);
  g = {1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  kernels::ref::max_pool2d_forward(x.data(), y16.data(), idx16.data(), g);
  CHECK(y16 == std::vector<double>{9, 9, 9, 8, 11, 11, 13, 13, 12, 15, 15, 15, 12, 15, 15, 15});

  // Overlapping windows share an argmax, so its gradients add up:
  // x = [1, 3, 2], kernel 1x2, stride 1 -> y = [3, 3] -> dx = [0, g0 + g1, 0].
  const std::vector<double> row = {1, 3, 2}, grad = {1, 2};
  std::vector<double> y2(2), dx(3);
  std::vector<int64_t> idx2(2);
  g = {1, 1, 3, 1, 2, 1, 2, 1, 1, 0, 0, 1, 1};
  kernels::ref::max_pool2d_forward(row.data(), y2.data(), idx2.data(), g);
  CHECK(idx2 == std::vector<int64_t>{1, 1});
  CHECK(kernels::ref::max_pool2d_backward(grad.data(), idx2.data(), dx.data(), g) == -1);
  CHECK(dx == std::vector<double>{0, 3, 0});
}

TEST_CASE("pool2d reference: max pool ties, NaN, -inf and all-padding windows") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> y(1);
  std::vector<int64_t> idx(1);
  const Pool2dGeometry g{1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1};
  auto pool = [&](std::vector<double> x) { kernels::ref::max_pool2d_forward(x.data(), y.data(), idx.data(), g); };
  pool({4, 4, 1, 4});  // ties: the first maximum
  CHECK(idx[0] == 0);
  pool({1, nan, 3, 2});  // NaN wins over larger numbers
  CHECK(std::isnan(y[0]));
  CHECK(idx[0] == 1);
  pool({nan, 1, nan, 0});  // the last NaN is reported, as torch's "val > max || isnan(val)"
  CHECK(idx[0] == 2);
  pool({-kInf, -kInf, -kInf, -kInf});  // all -inf: the first element
  CHECK(y[0] == -kInf);
  CHECK(idx[0] == 0);

  // H = 2, kernel 2, dilation 3, padding 1: the window reads rows -1 and 2,
  // both outside. Documented result: -inf, index -1, and no gradient.
  const Pool2dGeometry empty{1, 2, 3, 1, 3, 2, 1, 1, 1, 1, 0, 3, 1};
  const std::vector<double> x = {1, 2, 3, 4, 5, 6}, grad = {1, 1, 1};
  std::vector<double> y3(3), dx(6, 9.0);
  std::vector<int64_t> idx3(3);
  kernels::ref::max_pool2d_forward(x.data(), y3.data(), idx3.data(), empty);
  CHECK(y3 == std::vector<double>{-kInf, -kInf, -kInf});
  CHECK(idx3 == std::vector<int64_t>{-1, -1, -1});
  CHECK(kernels::ref::max_pool2d_backward(grad.data(), idx3.data(), dx.data(), empty) == -1);
  CHECK(dx == std::vector<double>(6, 0.0));
}

TEST_CASE("pool2d reference: avg pool divisors by hand (padding, count_include_pad, ceil_mode)") {
  // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], kernel 3, stride 2, padding 1 -> 2x2.
  // Window (0,0) holds 1+2+4+5 = 12 over 4 real of 9 padded cells, (0,1)
  // 2+3+5+6 = 16, (1,0) 4+5+7+8 = 24, (1,1) 5+6+8+9 = 28.
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<double> y(4);
  const Pool2dGeometry pad{1, 3, 3, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1};
  kernels::ref::avg_pool2d_forward(x.data(), y.data(), pad, true);
  CHECK_CLOSE(y, (std::vector<double>{12.0 / 9, 16.0 / 9, 24.0 / 9, 28.0 / 9}), 1e-15, 1e-15);
  kernels::ref::avg_pool2d_forward(x.data(), y.data(), pad, false);
  CHECK_CLOSE(y, (std::vector<double>{3, 4, 6, 7}), 1e-15, 1e-15);

  // ceil_mode, kernel 2, stride 2, no padding: the overhanging windows divide
  // by their in-bounds size either way: [[3, 4.5], [7.5, 9]].
  const Pool2dGeometry ceil{1, 3, 3, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1};
  for (bool include : {true, false}) {
    kernels::ref::avg_pool2d_forward(x.data(), y.data(), ceil, include);
    CHECK_CLOSE(y, (std::vector<double>{3, 4.5, 7.5, 9}), 1e-15, 1e-15);
  }

  // ceil_mode with padding, one row of 4: kernel 3, stride 2, pad 1 -> 3
  // windows [-1, 2), [1, 4), [3, 6) clipped to the padded [-1, 5): the last
  // covers {3, pad} so count_include_pad divides by 2, not 3.
  const std::vector<double> r = {1, 2, 3, 4};
  std::vector<double> y3(3);
  const Pool2dGeometry ceil_pad{1, 1, 4, 1, 3, 1, 3, 1, 2, 0, 1, 1, 1};
  kernels::ref::avg_pool2d_forward(r.data(), y3.data(), ceil_pad, true);
  CHECK_CLOSE(y3, (std::vector<double>{3.0 / 3, 9.0 / 3, 4.0 / 2}), 1e-15, 1e-15);
  kernels::ref::avg_pool2d_forward(r.data(), y3.data(), ceil_pad, false);
  CHECK_CLOSE(y3, (std::vector<double>{3.0 / 2, 9.0 / 3, 4.0 / 1}), 1e-15, 1e-15);

  // Backward of the padded case: x[1][1] = 5 is in all four windows.
  const std::vector<double> grad = {9, 9, 9, 9};
  std::vector<double> dx(9);
  kernels::ref::avg_pool2d_backward(grad.data(), dx.data(), pad, true);
  CHECK_CLOSE(dx, (std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1}), 1e-15, 1e-15);
}

TEST_CASE("pool2d reference: adaptive windows by hand") {
  // 5 -> 3: windows [0, 2), [1, 4), [3, 5), overlapping at 1 and 3.
  const std::vector<double> x = {1, 2, 3, 4, 5};
  std::vector<double> y(3), dx(5);
  kernels::ref::adaptive_avg_pool2d_forward(x.data(), y.data(), 1, 1, 5, 1, 3);
  CHECK_CLOSE(y, (std::vector<double>{1.5, 3, 4.5}), 1e-15, 1e-15);
  const std::vector<double> grad = {2, 3, 4};
  kernels::ref::adaptive_avg_pool2d_backward(grad.data(), dx.data(), 1, 1, 5, 1, 3);
  CHECK_CLOSE(dx, (std::vector<double>{1, 1 + 1, 1, 1 + 2, 2}), 1e-15, 1e-15);
  // 2 -> 3 (output larger than input): windows [0, 1), [0, 2), [1, 2).
  kernels::ref::adaptive_avg_pool2d_forward(x.data(), y.data(), 1, 1, 2, 1, 3);
  CHECK_CLOSE(y, (std::vector<double>{1, 1.5, 2}), 1e-15, 1e-15);
}

TEST_CASE("pool2d reference: backward is the adjoint of forward (<pool(x), g> == <x, dx>)") {
  uint64_t seed = 400;
  for (const PoolCase& base : pool_cases()) {
    PoolCase c = base;
    c.dh = c.dw = 1;
    const Pool2dGeometry g = geometry(c);
    INFO(describe(g, c.ceil_mode));
    const std::vector<double> x = random_values<double>(g.planes * g.H * g.W, seed++);
    const std::vector<double> grad = random_values<double>(g.planes * g.P * g.Q, seed++);
    std::vector<double> y(grad.size()), dx(x.size());
    for (bool include : {true, false}) {
      kernels::ref::avg_pool2d_forward(x.data(), y.data(), g, include);
      kernels::ref::avg_pool2d_backward(grad.data(), dx.data(), g, include);
      CHECK(dot(y, grad) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
    }
    // max pool is linear in x once the argmax indices are fixed.
    std::vector<int64_t> idx(grad.size());
    kernels::ref::max_pool2d_forward(x.data(), y.data(), idx.data(), g);
    kernels::ref::max_pool2d_backward(grad.data(), idx.data(), dx.data(), g);
    CHECK(dot(y, grad) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
    kernels::ref::adaptive_avg_pool2d_forward(x.data(), y.data(), g.planes, g.H, g.W, g.P, g.Q);
    kernels::ref::adaptive_avg_pool2d_backward(grad.data(), dx.data(), g.planes, g.H, g.W, g.P, g.Q);
    CHECK(dot(y, grad) == doctest::Approx(dot(x, dx)).epsilon(1e-12));
  }
}

// ------------------------------------------------------------- raw ops

TEST_CASE("pool2d ops: non-contiguous inputs, shapes, dtypes and backward plumbing") {
  // A [2, 3, 7, 9] view made by permuting a [2, 7, 9, 3] (NHWC) tensor.
  const Tensor base = random_tensor({2, 7, 9, 3}, 7, DType::f64);
  const Tensor x = ops::permute(base, {0, 3, 1, 2});
  REQUIRE(!x.is_contiguous());
  const std::vector<double> xc = values(x);
  ops::Pool2dArgs args{.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                       .dil_h = 1, .dil_w = 1, .ceil_mode = true};
  const Pool2dGeometry g{6, 7, 9, 4, 5, 3, 2, 2, 2, 1, 1, 1, 1};
  REQUIRE(kernels::pool2d_output_size(7, 3, 1, 2, 1, true) == 4);
  REQUIRE(kernels::pool2d_output_size(9, 2, 1, 2, 1, true) == 5);

  const ops::MaxPool2dForward mp = ops::max_pool2d(x, args);
  CHECK(mp.y.shape() == Shape{2, 3, 4, 5});
  CHECK(mp.indices.dtype() == DType::i64);
  std::vector<double> y_ref(120);
  std::vector<int64_t> i_ref(120);
  kernels::ref::max_pool2d_forward(xc.data(), y_ref.data(), i_ref.data(), g);
  CHECK_SAME(values(mp.y), y_ref);
  CHECK(mp.indices.to_vector<int64_t>() == i_ref);

  const Tensor grad = random_tensor({2, 3, 4, 5}, 8, DType::f64);
  const std::vector<double> gc = values(grad);
  std::vector<double> dx_ref(xc.size());
  kernels::ref::max_pool2d_backward(gc.data(), i_ref.data(), dx_ref.data(), g);
  CHECK_CLOSE(ops::max_pool2d_backward(grad, mp.indices, x.shape()), dx_ref, 1e-14, 1e-14);
  CHECK_CLOSE(ops::max_pool2d_backward(grad, mp.indices, x.shape(), args), dx_ref, 1e-14, 1e-14);
  CHECK_CLOSE(ops::max_pool2d_backward(grad, mp.indices, x.shape(), args, false), dx_ref, 1e-14, 1e-14);

  for (bool include : {true, false}) {
    args.count_include_pad = include;
    kernels::ref::avg_pool2d_forward(xc.data(), y_ref.data(), g, include);
    CHECK_CLOSE(ops::avg_pool2d(x, args), y_ref, 1e-14, 1e-14);
    // The gradient as a transposed (non-contiguous) view, too.
    const Tensor grad_t = ops::transpose(ops::contiguous(ops::transpose(grad, 2, 3)), 2, 3);
    kernels::ref::avg_pool2d_backward(gc.data(), dx_ref.data(), g, include);
    CHECK_CLOSE(ops::avg_pool2d_backward(grad_t, x.shape(), args), dx_ref, 1e-14, 1e-14);
  }

  std::vector<double> ya(6 * 2 * 4);
  kernels::ref::adaptive_avg_pool2d_forward(xc.data(), ya.data(), 6, 7, 9, 2, 4);
  const Tensor y_adaptive = ops::adaptive_avg_pool2d(x, 2, 4);
  CHECK(y_adaptive.shape() == Shape{2, 3, 2, 4});
  CHECK_CLOSE(y_adaptive, ya, 1e-14, 1e-14);
  const Tensor ga = random_tensor({2, 3, 2, 4}, 9, DType::f64);
  const std::vector<double> gac = values(ga);
  kernels::ref::adaptive_avg_pool2d_backward(gac.data(), dx_ref.data(), 6, 7, 9, 2, 4);
  CHECK_CLOSE(ops::adaptive_avg_pool2d_backward(ga, x.shape()), dx_ref, 1e-14, 1e-14);

  // f32 goes through the same path; N = 0 gives empty results.
  const Tensor x32 = ops::to_dtype(x, DType::f32);
  CHECK(ops::avg_pool2d(x32, args).dtype() == DType::f32);
  CHECK(ops::max_pool2d(zeros({0, 3, 7, 9}), args).y.shape() == Shape{0, 3, 4, 5});
}

TEST_CASE("pool2d ops reject bad arguments, naming the op, the expected and the got") {
  const Tensor x = zeros({1, 2, 5, 5});
  auto max_pool = [&](ops::Pool2dArgs a) { return [a, &x] { ops::max_pool2d(x, a); }; };
  auto avg_pool = [&](ops::Pool2dArgs a) { return [a, &x] { ops::avg_pool2d(x, a); }; };
  check_throws_with<ValueError>(max_pool({.kernel_h = 0}), "max_pool2d: expected kernel size > 0, got kernel_h=0");
  check_throws_with<ValueError>(avg_pool({.kernel_w = -1}), "avg_pool2d: expected kernel size > 0");
  check_throws_with<ValueError>(max_pool({.stride_h = 2, .stride_w = 0}), "expected stride > 0, got stride_h=2, stride_w=0");
  check_throws_with<ValueError>(max_pool({.dil_h = 0}), "max_pool2d: expected dilation > 0, got dil_h=0");
  check_throws_with<ValueError>(avg_pool({.dil_w = 2}), "avg_pool2d: dilation is not supported (max pool only)");
  check_throws_with<ValueError>(max_pool({.kernel_h = 3, .kernel_w = 3, .pad_h = 2}),
                                "max_pool2d: expected 0 <= padding <= kernel / 2, got pad_h=2, pad_w=0 for kernel 3x3");
  check_throws_with<ValueError>(avg_pool({.pad_w = -1}), "got pad_h=0, pad_w=-1");
  check_throws_with<ShapeError>([] { ops::max_pool2d(zeros({1, 1, 2, 9}), {.kernel_h = 3, .kernel_w = 3}); },
                                "max_pool2d: expected an output size >= 1, got 0x4 for input [1, 1, 2, 9]");
  check_throws_with<ShapeError>([] { ops::max_pool2d(zeros({2, 5, 5}), {}); },
                                "max_pool2d: expected a 4-D input [N, C, H, W], got [2, 5, 5]");
  check_throws_with<ShapeError>([] { ops::avg_pool2d(zeros({1, 0, 5, 5}), {}); },
                                "avg_pool2d: expected non-zero C, H and W, got [1, 0, 5, 5]");
  check_throws_with<DTypeError>([] { ops::max_pool2d(zeros({1, 1, 4, 4}, {DType::i32}), {}); },
                                "max_pool2d: expected dtype f32 or f64, got i32");
  check_throws_with<ValueError>([] { ops::avg_pool2d(Tensor(), {}); }, "avg_pool2d: argument 'x' is an undefined tensor");

  check_throws_with<ValueError>([&] { ops::adaptive_avg_pool2d(x, 0, 3); },
                                "adaptive_avg_pool2d: expected an output size >= 1, got 0x3");
  check_throws_with<ShapeError>([] { ops::adaptive_avg_pool2d(zeros({4, 4}), 2, 2); },
                                "adaptive_avg_pool2d: expected a 4-D input");

  // Backward ops check grad against the shape the forward would produce.
  check_throws_with<ShapeError>([&] { ops::avg_pool2d_backward(zeros({1, 2, 3, 3}), x.shape(), {}); },
                                "avg_pool2d_backward: expected grad of shape [1, 2, 2, 2], got [1, 2, 3, 3]");
  check_throws_with<ShapeError>([&] { ops::adaptive_avg_pool2d_backward(zeros({1, 3, 2, 2}), x.shape()); },
                                "expected grad of shape [1, 2, 2, 2], got [1, 3, 2, 2]");
  check_throws_with<ShapeError>([&] { ops::adaptive_avg_pool2d_backward(zeros({1, 2, 2, 2}), {5, 5}); },
                                "expected x_shape [N, C, H, W] with non-zero C, H, W, got [5, 5]");
  const Tensor idx = zeros({1, 2, 2, 2}, {DType::i64});
  check_throws_with<DTypeError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 2}), zeros({1, 2, 2, 2}), x.shape()); },
                                "max_pool2d_backward: expected dtype i64, got f32");
  check_throws_with<ShapeError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 3}), idx, x.shape()); },
                                "max_pool2d_backward: expected grad of shape [1, 2, 2, 2], got [1, 2, 2, 3]");
  check_throws_with<ShapeError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 2}), idx, {1, 3, 5, 5}); },
                                "expected indices [1, 3, P, Q] for x_shape [1, 3, 5, 5], got [1, 2, 2, 2]");
  const Tensor bad = from_vector<int64_t>({0, 1, 25, 3, -1, 0, 0, 0}, {1, 2, 2, 2});
  check_throws_with<ValueError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 2}), bad, x.shape()); },
                                "max_pool2d_backward: expected indices in [0, 25) or -1, got 25 at flat position 2");

  // With the forward's arguments (kernel 2, stride 2 on 5x5: 2x2 outputs,
  // output (0, 1) reads rows 0-1, columns 2-3), an index must also lie in
  // its own window: 0 is in its plane but not in output (0, 1)'s window.
  const ops::Pool2dArgs k2{.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
  const Tensor outside = from_vector<int64_t>({0, 0, 5, 6, -1, 3, 5, 18}, {1, 2, 2, 2});
  CHECK_NOTHROW(ops::max_pool2d_backward(zeros({1, 2, 2, 2}), outside, x.shape()));
  check_throws_with<ValueError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 2}), outside, x.shape(), k2); },
                                "max_pool2d_backward: expected indices in [0, 25) or -1, each inside its output's "
                                "window, got 0 at flat position 1");
  const Tensor inside = from_vector<int64_t>({0, 3, 11, 12, -1, 3, 15, 18}, {1, 2, 2, 2});
  CHECK_NOTHROW(ops::max_pool2d_backward(zeros({1, 2, 2, 2}), inside, x.shape(), k2));
  const ops::Pool2dArgs stride1{.stride_h = 1, .stride_w = 1};
  check_throws_with<ShapeError>([&] { ops::max_pool2d_backward(zeros({1, 2, 2, 2}), inside, x.shape(), stride1); },
                                "max_pool2d_backward: expected indices of shape [1, 2, 4, 4] for x_shape [1, 2, 5, 5] "
                                "and the pooling arguments, got [1, 2, 2, 2]");
}
