// Convolution: kernels::cpu (implicit-im2col BLIS path for f32, im2col +
// dgemm for f64) against the direct loops of kernels::ref, forward and both
// backwards, on awkward geometries: sizes 1 and primes, strides, padding,
// dilation, non-square kernels, 1x1 (pure GEMM) paths, several KC/column
// blocks. Also: thread-count independence, im2col by hand, the raw ops'
// shapes and errors, and conv_transpose2d against its scatter definition.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/conv2d_direct.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cuda/im2col_rules.h"
#include "kernels/cuda/winograd_rules.h"
#include "kernels/ref/conv2d.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using kernels::ConvGeometry;

namespace {

ConvGeometry make(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh = 1,
                  int64_t sw = 1, int64_t ph = 0, int64_t pw = 0, int64_t dh = 1, int64_t dw = 1) {
  ConvGeometry g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.K = K, g.R = R, g.S = S;
  g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  g.P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
  g.Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  return g;
}

std::string describe(const ConvGeometry& g) {
  // One stream, not a chain of string +: GCC 12 warns (-Wrestrict, a false
  // positive) on the chain once it is inlined into a loop.
  std::ostringstream out;
  out << "N" << g.N << " C" << g.C << " " << g.H << "x" << g.W << " K" << g.K << " " << g.R << "x" << g.S
      << " stride " << g.sh << "," << g.sw << " pad " << g.ph << "," << g.pw << " dil " << g.dh << "," << g.dw;
  return out.str();
}

template <typename T>
std::vector<T> random_values(int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = static_cast<T>(2.0 * gen.uniform_f64() - 1.0);
  return v;
}

template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

const std::vector<ConvGeometry>& geometries() {
  static const std::vector<ConvGeometry> gs = {
      make(1, 1, 1, 1, 1, 1, 1),                    // everything 1
      make(2, 3, 7, 13, 5, 3, 3, 1, 1, 1, 1),        // primes, same padding
      make(1, 2, 11, 11, 7, 3, 3, 2, 2),             // stride 2, no padding
      make(2, 3, 9, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2),  // dilation 2
      make(1, 5, 6, 17, 3, 1, 5, 1, 1, 0, 2),        // 1x5 kernel, padding on W only
      make(3, 17, 9, 9, 19, 1, 1),                   // pointwise: pure GEMM path (batch folded: 81 pixels)
      make(4, 333, 5, 7, 29, 1, 1),                  // pointwise, batch folded: 140 columns across image edges, C > KC
      make(2, 7, 16, 17, 5, 1, 1),                   // pointwise, 272 pixels: one GEMM per image
      make(2, 8, 9, 7, 6, 1, 1, 2, 2),               // 1x1 stride 2 (ResNet downsample): input subsampled
      make(2, 5, 9, 8, 3, 1, 1, 3, 2),               // 1x1 strides 3 and 2: rows and columns dropped unevenly
      make(1, 3, 23, 23, 70, 7, 7, 2, 2, 3, 3),      // ResNet stem shape, K not a multiple of MR
      make(2, 32, 33, 17, 24, 3, 3, 1, 1, 1, 1),     // CRS = 288 > KC; PQ = 561 > 256-column blocks
      make(1, 4, 5, 40, 9, 3, 2, 3, 1, 0, 1, 1, 3),  // mixed strides/dilations, rows shorter than NR
      make(1, 2, 2, 2, 3, 3, 3, 1, 1, 1, 1),         // kernel larger than the image (padding makes it fit)
      make(1, 2, 5, 6, 3, 3, 3, 1, 1, 3, 3),         // padding > kernel reach: stride-1 backward-input via col2im
      make(2, 5, 12, 12, 7, 1, 1, 1, 1, 1, 0),       // padded 1x1 (not the pointwise GEMM path)
      make(2, 6, 4, 45, 5, 3, 3, 1, 1, 1, 1),        // rows of 45: 16-pixel runs inside the image; CRS = 54
      make(2, 19, 12, 13, 6, 3, 2, 2, 1, 1, 0, 2, 1),  // C >= 16 (channels-last weight gradient), 16 + 3 channels,
                                                     // stride, padding and dilation on one axis only
      make(1, 16, 3, 3, 5, 3, 3, 1, 1, 4, 4),        // padding wider than the image reaches: all-zero window rows
      // Small images with the batch folded into the GEMM's columns (kernels/cpu/conv2d.cpp, fold_batch):
      make(3, 9, 7, 7, 70, 3, 3, 1, 1, 1, 1),        // 3 x 49 columns: images end inside micro-panels
      make(2, 67, 5, 6, 40, 3, 3, 1, 1, 1, 1),       // CRS = 603 > KC; backward-input folded too (flipped, K' = 67)
      make(2, 13, 11, 9, 40, 3, 3, 2, 2, 1, 1),      // stride 2: 6 x 5 outputs per image
      make(3, 20, 9, 8, 36, 3, 3, 1, 1, 2, 2, 2, 2),  // dilation 2
      // Stride 2 along rows long enough for the packer's 16-wide gather (and its scalar tail):
      make(1, 5, 9, 70, 40, 3, 3, 2, 2, 1, 1),       // Q = 35: pieces of 32 and 3
      make(2, 3, 12, 100, 20, 7, 7, 2, 2, 3, 3),     // ResNet stem-like, Q = 50, 300 pixels per image
      // Kernel = stride 2 (the up-convolutions' backward-input, col2im_chunk): windows that tile the
      // image (no zeroing, stored; taps s = 0, 1 interleaved, 33 = 2 x 16 + 1 per row), then ones that do not:
      make(2, 5, 8, 10, 7, 2, 2, 2, 2),              // exact tiling, 5 per row
      make(1, 4, 4, 66, 3, 2, 2, 2, 2),              // exact tiling, 33 per row
      make(1, 2, 20, 60, 3, 2, 2, 2, 2),             // exact tiling, 300 columns: the second 256-column
                                                     // chunk starts mid-row (q = 16)
      make(1, 3, 9, 40, 4, 2, 2, 2, 2),              // odd H: the last row gets nothing (zeroed, added)
      make(2, 3, 6, 35, 4, 2, 2, 2, 2, 0, 1),        // padded W: no pairs, runs clipped at both ends
      // 1x1 with a stride that tiles the image (col2im_spreads_once: every pixel written once, zeros between):
      make(3, 5, 90, 90, 7, 1, 1, 2, 2),             // Q = 45 (16-pixel pieces and a tail); chunks start mid-row
      make(2, 4, 14, 14, 6, 1, 1, 2, 2),             // Q = 7: tails only
      make(1, 3, 9, 12, 5, 1, 1, 3, 2),              // stride 3 x 2
      make(1, 3, 8, 12, 5, 1, 1, 2, 3),              // stride 3 along W (not the pairwise form)
      // Small weight gradients summed by groups of images (conv2d.cpp, image_groups_win; the
      // GEMM path, checked below beside the dispatched one, which is the k-lanes kernel here):
      make(11, 3, 15, 21, 10, 7, 7, 2, 2, 3, 3),     // 11 images: 6 groups of 2, the last of 1
      make(5, 20, 9, 10, 3, 3, 3, 1, 2, 1, 1),       // 5 groups of 1, channels-last copies
  };
  return gs;
}

template <typename T>
std::vector<T> relu_of(std::vector<T> v) {
  for (T& x : v) x = std::max(x, T(0));
  return v;
}

template <typename T>
void check_against_reference(double tol) {
  for (const ConvGeometry& g : geometries()) {
    INFO(describe(g));
    const auto x = random_values<T>(g.N * g.C * g.hw(), 1);
    const auto w = random_values<T>(g.K * g.crs(), 2);
    const auto b = random_values<T>(g.K, 3);
    const auto dy = random_values<T>(g.N * g.K * g.pq(), 4);

    std::vector<T> want(g.N * g.K * g.pq()), got(want.size(), T(7));
    for (const bool with_bias : {true, false}) {
      kernels::ref::conv2d_forward<T>(g, x.data(), w.data(), with_bias ? b.data() : nullptr, want.data());
      kernels::cpu::conv2d_forward<T>(g, x.data(), w.data(), with_bias ? b.data() : nullptr, got.data());
      CHECK_CLOSE(as_double(got), as_double(want), tol, tol);
      // With the ReLU epilogue (whichever path this geometry takes).
      std::vector<T> got_relu(want.size(), T(-7));
      kernels::cpu::conv2d_forward<T>(g, x.data(), w.data(), with_bias ? b.data() : nullptr, got_relu.data(), true);
      CHECK_CLOSE(as_double(got_relu), as_double(relu_of(want)), tol, tol);
    }

    std::vector<T> dx_want(x.size()), dx_got(x.size(), T(7));
    kernels::ref::conv2d_backward_input<T>(g, dy.data(), w.data(), dx_want.data());
    kernels::cpu::conv2d_backward_input<T>(g, dy.data(), w.data(), dx_got.data());
    CHECK_CLOSE(as_double(dx_got), as_double(dx_want), tol, tol);

    std::vector<T> dw_want(w.size()), dw_got(w.size(), T(7));
    kernels::ref::conv2d_backward_weight<T>(g, dy.data(), x.data(), dw_want.data());
    kernels::cpu::conv2d_backward_weight<T>(g, dy.data(), x.data(), dw_got.data());
    CHECK_CLOSE(as_double(dw_got), as_double(dw_want), tol, tol);

    std::vector<T> db_want(g.K), db_got(g.K, T(7));
    kernels::ref::conv2d_backward_bias<T>(g, dy.data(), db_want.data());
    kernels::cpu::conv2d_backward_bias<T>(g, dy.data(), db_got.data());
    CHECK_CLOSE(as_double(db_got), as_double(db_want), tol, tol);
    // The bias gradient fused into the weight gradient's pass (or after it).
    std::vector<T> dw_fused(w.size(), T(7)), db_fused(g.K, T(7));
    kernels::cpu::conv2d_backward_weight<T>(g, dy.data(), x.data(), dw_fused.data(), db_fused.data());
    CHECK(dw_fused == dw_got);
    CHECK_CLOSE(as_double(db_fused), as_double(db_want), tol, tol);
    // f32 dispatches some geometries to the direct kernels: the GEMM path on every one too.
    if constexpr (std::is_same_v<T, float>) {
      std::vector<float> y_gemm(want.size(), 7.0f), dx_gemm(x.size(), 7.0f), dw_gemm(w.size(), 7.0f);
      kernels::cpu::conv2d_forward_gemm(g, x.data(), w.data(), nullptr, y_gemm.data());
      kernels::cpu::conv2d_backward_input_gemm(g, dy.data(), w.data(), dx_gemm.data());
      kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), dw_gemm.data());
      CHECK_CLOSE(as_double(y_gemm), as_double(want), tol, tol);
      CHECK_CLOSE(as_double(dx_gemm), as_double(dx_want), tol, tol);
      CHECK_CLOSE(as_double(dw_gemm), as_double(dw_want), tol, tol);
    }
  }
}

}  // namespace

TEST_CASE("conv2d kernels: f32 implicit-im2col path matches the direct reference") {
  check_against_reference<float>(2e-4);
}

TEST_CASE("1x1 convolutions whose GEMM reads the input in place give packing's bits") {
  // Planes not a multiple of 256 pixels, not folded (N = 1, or at least 256
  // pixels): full 32-column panels read in place beside a packed narrower
  // last panel; partial row panels (K = 29, 13); C = 1100 spans two KC
  // slices of K, so the in-place pointer moves on by whole slices too.
  struct Case { int64_t N, C, H, W, K; };
  for (const Case c : {Case{2, 37, 13, 23, 29}, Case{1, 1100, 6, 7, 13}, Case{1, 5, 1, 64, 12}}) {
    ConvGeometry g{c.N, c.C, c.H, c.W, c.K, 1, 1, c.H, c.W};
    const bool was = kernels::cpu::set_conv_b_in_place(true);
    INFO("N=", c.N, " C=", c.C, " H=", c.H, " W=", c.W, " K=", c.K);
    CHECK(kernels::cpu::conv2d_forward_reads_b_in_place(g));
    const auto x = random_values<float>(g.N * g.C * g.hw(), 11);
    const auto w = random_values<float>(g.K * g.C, 12);
    const auto b = random_values<float>(g.K, 13);
    const auto dy = random_values<float>(g.N * g.K * g.pq(), 14);
    std::vector<float> y_in(g.N * g.K * g.pq()), dx_in(x.size()), y_packed(y_in.size()), dx_packed(x.size());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y_in.data());
    kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_in.data());
    kernels::cpu::set_conv_b_in_place(false);
    CHECK_FALSE(kernels::cpu::conv2d_forward_reads_b_in_place(g));
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y_packed.data());
    kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_packed.data());
    kernels::cpu::set_conv_b_in_place(was);
    CHECK(y_in == y_packed);
    CHECK(dx_in == dx_packed);
    std::vector<float> want(y_in.size());
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), b.data(), want.data());
    CHECK_CLOSE(as_double(y_in), as_double(want), 2e-4, 2e-4);
  }
  // A plane of 256 pixels (16 x 16) keeps packing: its rows would crowd into a few cache sets.
  CHECK_FALSE(kernels::cpu::conv2d_forward_reads_b_in_place(ConvGeometry{1, 8, 16, 16, 8, 1, 1, 16, 16}));
}

TEST_CASE("conv2d forward with the ReLU epilogue passes NaN through on every path, as batch norm's fused ReLU does") {
  // Direct (few taps), GEMM per image, batch folded, Winograd.
  const std::vector<ConvGeometry> gs = {make(2, 3, 7, 13, 5, 3, 3, 1, 1, 1, 1), make(1, 9, 17, 20, 70, 3, 3, 1, 1, 1, 1),
                                        make(3, 9, 7, 7, 70, 3, 3, 1, 1, 1, 1), make(2, 64, 24, 24, 64, 3, 3, 1, 1, 1, 1)};
  const char* wino = std::getenv("CRFSEG_CONV_WINOGRAD");
  if (!(wino && std::string(wino) == "0")) CHECK(kernels::cpu::conv2d_forward_takes_winograd(gs[3]));
  CHECK(kernels::cpu::conv2d_forward_folds_batch(gs[2]));
  for (const ConvGeometry& g : gs) {
    INFO(describe(g));
    auto x = random_values<float>(g.N * g.C * g.hw(), 21);
    x[x.size() / 2] = std::numeric_limits<float>::quiet_NaN();
    const auto w = random_values<float>(g.K * g.crs(), 22);
    std::vector<float> plain(g.N * g.K * g.pq()), relu(plain.size());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), nullptr, plain.data());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), nullptr, relu.data(), true);
    int64_t nan_plain = 0, nan_relu = 0, same = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      nan_plain += std::isnan(plain[i]);
      nan_relu += std::isnan(relu[i]);
      same += std::isnan(plain[i]) == std::isnan(relu[i]);
    }
    CHECK(nan_plain > 0);
    CHECK(nan_relu == nan_plain);
    CHECK(same == static_cast<int64_t>(plain.size()));
  }
}

TEST_CASE("conv2d forward folds the batch into the GEMM's columns for small images only") {
  // The geometries above that the folded path serves (their results are checked there).
  CHECK(kernels::cpu::conv2d_forward_folds_batch(make(3, 9, 7, 7, 70, 3, 3, 1, 1, 1, 1)));
  CHECK(kernels::cpu::conv2d_forward_folds_batch(make(2, 67, 5, 6, 40, 3, 3, 1, 1, 1, 1)));
  CHECK(kernels::cpu::conv2d_forward_folds_batch(make(2, 13, 11, 9, 40, 3, 3, 2, 2, 1, 1)));
  CHECK(kernels::cpu::conv2d_forward_folds_batch(make(3, 20, 9, 8, 36, 3, 3, 1, 1, 2, 2, 2, 2)));
  CHECK(kernels::cpu::conv2d_forward_folds_batch(make(4, 333, 5, 7, 29, 1, 1)));
  // ResNet-50's layer3 3x3 (14^2, batch 8: 128 Winograd tiles) takes
  // Winograd (unless CRFSEG_CONV_WINOGRAD=0); 512 -> 512 at 8^2, batch 2
  // (8 tiles), folds (batch 4, 16 tiles, takes Winograd from 256 channels).
  const ConvGeometry layer3 = make(8, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1);
  const char* wino = std::getenv("CRFSEG_CONV_WINOGRAD");
  if (!(wino && std::string(wino) == "0")) {
    CHECK_FALSE(kernels::cpu::conv2d_forward_folds_batch(layer3));
    CHECK(kernels::cpu::conv2d_forward_takes_winograd(layer3));
  }
  const ConvGeometry few_tiles = make(2, 512, 8, 8, 512, 3, 3, 1, 1, 1, 1);
  CHECK(kernels::cpu::conv2d_forward_folds_batch(few_tiles));
  CHECK_FALSE(kernels::cpu::conv2d_forward_takes_winograd(few_tiles));
  // One image, or 16^2 = 256 pixels and more: one GEMM per image.
  CHECK_FALSE(kernels::cpu::conv2d_forward_folds_batch(make(1, 9, 7, 7, 70, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_forward_folds_batch(make(2, 32, 16, 16, 70, 3, 3, 1, 1, 1, 1)));
}

// True, with a message, on CPUs without AVX-512F, where the direct kernels
// are not compiled in (their tests then skip).
bool direct_kernels_unavailable() {
  if (kernels::cpu::has_avx512f()) return false;
  MESSAGE("SKIPPED: the direct convolution kernels need AVX-512F, which this CPU lacks");
  return true;
}

// CRFSEG_CONV_DIRECT=0 (the A/B switch of kernels/cpu/conv2d.h) keeps every
// call on the GEMM path; the dispatch checks below then do not apply.
bool direct_dispatch_off() {
  const char* v = std::getenv("CRFSEG_CONV_DIRECT");
  return v && std::string(v) == "0";
}

// Shapes for the direct kernels (conv2d_direct.h): 1 and 3 input channels,
// K around the 8-channel register block (1, 7, 8, 9, 13), rows shorter
// than, equal to and just past one 16-pixel vector and past 3 vectors (the
// 3-vector tile plus a tail), padding, dilation, row stride, S of 1..7 (tap
// chunks of 3, 3, 1), and C*R*S up to the limit of 64.
const std::vector<ConvGeometry>& direct_geometries() {
  static const std::vector<ConvGeometry> gs = {
      make(1, 1, 1, 1, 1, 1, 1),                       // everything 1
      make(2, 3, 7, 13, 5, 3, 3, 1, 1, 1, 1),           // primes, Q < 16
      make(1, 3, 5, 16, 8, 3, 3, 1, 1, 1, 1),           // Q = 16, K = one block
      make(2, 3, 6, 17, 9, 3, 3, 1, 1, 1, 1),           // Q = 17, K = one block + 1
      make(1, 3, 4, 67, 13, 3, 3, 1, 1, 1, 1),          // Q = 67: 3-vector tile, then a 2-vector tile
      make(1, 1, 9, 50, 7, 3, 3, 1, 1, 1, 1),           // Q = 50: 3-vector tile + 1
      make(2, 3, 9, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2),     // dilation 2
      make(1, 4, 11, 23, 6, 3, 3, 2, 1, 1, 1),          // row stride 2, column stride 1
      make(1, 2, 8, 20, 3, 3, 3, 1, 1, 4, 4),           // padding past the kernel's reach
      make(1, 1, 12, 40, 10, 1, 7, 1, 1, 0, 3),         // 1x7: tap chunks 3, 3, 1
      make(1, 1, 30, 35, 8, 8, 8, 1, 1, 3, 3),          // C*R*S = 64, the limit; chunks 3, 3, 2
      make(2, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1),            // K = 1
  };
  return gs;
}

TEST_CASE("conv2d direct kernels (few input taps) match the reference; the GEMM path does too") {
  if (direct_kernels_unavailable()) return;
  for (const ConvGeometry& g : direct_geometries()) {
    INFO(describe(g));
    REQUIRE(kernels::cpu::conv2d_direct_weight_grad_applies(g));
    const auto x = random_values<float>(g.N * g.C * g.hw(), 11);
    const auto w = random_values<float>(g.K * g.crs(), 12);
    const auto b = random_values<float>(g.K, 13);
    const auto dy = random_values<float>(g.N * g.K * g.pq(), 14);
    for (const bool with_bias : {true, false}) {
      const float* bias = with_bias ? b.data() : nullptr;
      std::vector<float> want(dy.size()), direct(dy.size(), 7.0f), gemm(dy.size(), 7.0f);
      kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), bias, want.data());
      kernels::cpu::conv2d_direct_forward(g, x.data(), w.data(), bias, direct.data());
      kernels::cpu::conv2d_forward_gemm(g, x.data(), w.data(), bias, gemm.data());
      CHECK_CLOSE(as_double(direct), as_double(want), 2e-4, 2e-4);
      CHECK_CLOSE(as_double(gemm), as_double(want), 2e-4, 2e-4);
      kernels::cpu::conv2d_direct_forward(g, x.data(), w.data(), bias, direct.data(), /*relu=*/true);
      kernels::cpu::conv2d_forward_gemm(g, x.data(), w.data(), bias, gemm.data(), /*relu=*/true);
      CHECK_CLOSE(as_double(direct), as_double(relu_of(want)), 2e-4, 2e-4);
      CHECK_CLOSE(as_double(gemm), as_double(relu_of(want)), 2e-4, 2e-4);
    }
    std::vector<float> want(w.size()), direct(w.size(), 7.0f), gemm(w.size(), 7.0f);
    kernels::ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), want.data());
    kernels::cpu::conv2d_direct_backward_weight(g, dy.data(), x.data(), direct.data());
    kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), gemm.data());
    CHECK_CLOSE(as_double(direct), as_double(want), 2e-4, 2e-4);
    CHECK_CLOSE(as_double(gemm), as_double(want), 2e-4, 2e-4);
    // With the bias gradient from the same pass: dW unchanged, db the plain sum.
    std::vector<float> db_want(g.K), db(g.K, 7.0f), with_db(w.size(), 7.0f);
    kernels::ref::conv2d_backward_bias<float>(g, dy.data(), db_want.data());
    kernels::cpu::conv2d_direct_backward_weight(g, dy.data(), x.data(), with_db.data(), db.data());
    CHECK(with_db == direct);
    CHECK_CLOSE(as_double(db), as_double(db_want), 2e-4, 2e-4);
  }
}

TEST_CASE("conv2d direct forward on deep, wide layers, and the stride-1 backward-input it serves") {
  if (direct_kernels_unavailable()) return;
  // C*R*S past the weight gradient's 64-tap limit; rows of >= 128 pixels so
  // that conv2d_forward and conv2d_backward_input dispatch to the direct kernel.
  const std::vector<ConvGeometry> gs = {
      make(1, 20, 5, 131, 11, 3, 3, 1, 1, 1, 1),      // 180 taps, K = 8 + 3, Q = 131 (8 vectors + 3)
      make(2, 9, 4, 128, 16, 3, 3, 1, 1, 1, 1),       // Q = 128 exactly, 2 blocks of 8
      make(1, 17, 6, 140, 5, 3, 3, 1, 1, 2, 2, 2, 2),  // dilation 2, K < 8
      make(1, 7, 3, 150, 9, 1, 5, 1, 1, 0, 2),        // 1x5, padding on W only
  };
  for (const ConvGeometry& g : gs) {
    INFO(describe(g));
    if (!direct_dispatch_off()) {
      REQUIRE(kernels::cpu::conv2d_forward_takes_direct(g));
      REQUIRE(kernels::cpu::conv2d_backward_input_takes_direct(g));
    }
    const auto x = random_values<float>(g.N * g.C * g.hw(), 31);
    const auto w = random_values<float>(g.K * g.crs(), 32);
    const auto b = random_values<float>(g.K, 33);
    const auto dy = random_values<float>(g.N * g.K * g.pq(), 34);
    std::vector<float> want(dy.size()), got(dy.size(), 7.0f), gemm(dy.size(), 7.0f);
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), b.data(), want.data());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), got.data());
    kernels::cpu::conv2d_forward_gemm(g, x.data(), w.data(), b.data(), gemm.data());
    CHECK_CLOSE(as_double(got), as_double(want), 5e-4, 5e-4);
    CHECK_CLOSE(as_double(gemm), as_double(want), 5e-4, 5e-4);
    std::vector<float> dx_want(x.size()), dx_got(x.size(), 7.0f), dx_gemm(x.size(), 7.0f);
    kernels::ref::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_want.data());
    kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_got.data());
    kernels::cpu::conv2d_backward_input_gemm(g, dy.data(), w.data(), dx_gemm.data());
    CHECK_CLOSE(as_double(dx_got), as_double(dx_want), 5e-4, 5e-4);
    CHECK_CLOSE(as_double(dx_gemm), as_double(dx_want), 5e-4, 5e-4);
    // Each output is one thread's sum in a fixed order: any thread count gives the same bits.
    const int saved = omp_get_max_threads();
    omp_set_num_threads(3);
    std::vector<float> three(dy.size()), dx_three(x.size());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), three.data());
    kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_three.data());
    omp_set_num_threads(saved);
    CHECK(three == got);
    CHECK(dx_three == dx_got);
  }
  // Narrow rows stay on the GEMM when K is large; few output channels go
  // direct from 32 pixels wide (K <= 64) or at any width (K <= 32).
  if (!direct_dispatch_off()) {
    CHECK_FALSE(kernels::cpu::conv2d_forward_takes_direct(make(1, 20, 5, 100, 96, 3, 3, 1, 1, 1, 1)));
    CHECK_FALSE(kernels::cpu::conv2d_forward_takes_direct(make(1, 20, 5, 16, 64, 3, 3, 1, 1, 1, 1)));
    CHECK(kernels::cpu::conv2d_forward_takes_direct(make(1, 20, 5, 32, 64, 3, 3, 1, 1, 1, 1)));
    CHECK(kernels::cpu::conv2d_forward_takes_direct(make(1, 20, 5, 16, 32, 3, 3, 1, 1, 1, 1)));
  }
  // Valid padding (ph = 0): the flipped convolution of the backward-input pads by 2.
  {
    const ConvGeometry v = make(1, 6, 7, 140, 9, 3, 3);
    const auto x = random_values<float>(v.N * v.C * v.hw(), 35);
    const auto w = random_values<float>(v.K * v.crs(), 36);
    const auto dy = random_values<float>(v.N * v.K * v.pq(), 37);
    std::vector<float> want(x.size()), got(x.size(), 7.0f);
    kernels::ref::conv2d_backward_input<float>(v, dy.data(), w.data(), want.data());
    kernels::cpu::conv2d_backward_input<float>(v, dy.data(), w.data(), got.data());
    CHECK_CLOSE(as_double(got), as_double(want), 5e-4, 5e-4);
  }
}

TEST_CASE("conv2d weight gradient with output channels in the lanes (deep layers) matches the reference") {
  if (direct_kernels_unavailable()) return;
  // K of 1, 15, 16, 17, 33 and 70: 1-5 groups of 16 channels, so register
  // tiles of 4 groups and tails of 1-3; C*R*S of 9, 45, 63 and 180 (tap
  // blocks of 5 with padding taps); P past one 32-row slab and odd (a short
  // last chunk of rows); row stride, dilation, padding on one axis.
  const std::vector<ConvGeometry> gs = {
      make(1, 1, 5, 7, 1, 3, 3, 1, 1, 1, 1),
      make(2, 5, 9, 11, 15, 3, 3, 1, 1, 1, 1),
      make(1, 7, 70, 20, 16, 3, 3, 1, 1, 1, 1),       // P = 70: three slabs, the last of 6 rows
      make(1, 20, 13, 9, 17, 3, 3, 2, 1, 1, 1),       // row stride 2
      make(2, 7, 11, 12, 33, 3, 3, 1, 1, 2, 2, 2, 2),  // dilation 2
      make(1, 9, 8, 19, 70, 1, 7, 1, 1, 0, 3),        // 1x7, 63 taps
      make(3, 19, 7, 37, 21, 1, 1),                   // 1x1: 19 taps
      // Strides along W (the input rows stored as sw phases):
      make(2, 3, 23, 37, 17, 7, 7, 2, 2, 3, 3),        // the ResNet stem's 7x7 s2 p3: 147 taps, odd W
      make(1, 6, 9, 31, 5, 2, 2, 2, 2),                // 2x2 s2 (an up-convolution's): 24 taps
      make(1, 4, 11, 43, 9, 3, 3, 1, 3, 1, 2, 1, 2),   // stride 3 along W with dilation 2 and padding 2
      make(2, 40, 14, 15, 24, 1, 1, 2, 2),             // 1x1 s2, odd W: a phase no tap reads
  };
  for (const ConvGeometry& g : gs) {
    INFO(describe(g));
    const auto x = random_values<float>(g.N * g.C * g.hw(), 41);
    const auto dy = random_values<float>(g.N * g.K * g.pq(), 42);
    std::vector<float> want(g.K * g.crs()), got(want.size(), 7.0f);
    kernels::ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), want.data());
    kernels::cpu::conv2d_direct_backward_weight_klanes(g, dy.data(), x.data(), got.data());
    CHECK_CLOSE(as_double(got), as_double(want), 5e-4, 5e-4);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(3);
    std::vector<float> three(want.size());
    kernels::cpu::conv2d_direct_backward_weight_klanes(g, dy.data(), x.data(), three.data());
    omp_set_num_threads(saved);
    CHECK(three == got);
    // The bias as one more tap of ones (a padding slot, or a block of its own when C*R*S % 5 == 0).
    std::vector<float> db_want(g.K), db(g.K, 7.0f), with_db(want.size(), 7.0f);
    kernels::ref::conv2d_backward_bias<float>(g, dy.data(), db_want.data());
    kernels::cpu::conv2d_direct_backward_weight_klanes(g, dy.data(), x.data(), with_db.data(), db.data());
    CHECK(with_db == got);
    CHECK_CLOSE(as_double(db), as_double(db_want), 5e-4, 5e-4);
  }
  // The dispatch: rows of >= 128 pixels (or small dW, below), a dW of at
  // most 2^20 floats, and at most 2^24 floats of per-slab partials.
  if (direct_dispatch_off()) return;
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(1, 64, 4, 256, 64, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 256, 512, 512, 256, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(1, 64, 4, 100, 64, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(1, 512, 4, 128, 512, 3, 3, 1, 1, 1, 1)));
  // Narrower rows: small dW with 4 or more 32-row slabs (batch 4 of 16^2:
  // 4), or C K up to 16384 from 64 pixels wide. (48 channels: 3x3 stride-1
  // weight gradients with C, K >= 64 mostly run Winograd, conv2d_winograd.h.)
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(4, 48, 16, 16, 48, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(3, 48, 16, 16, 48, 3, 3, 1, 1, 1, 1)));
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(4, 128, 64, 64, 48, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(4, 128, 32, 32, 128, 3, 3, 1, 1, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(4, 256, 64, 64, 256, 3, 3, 1, 1, 1, 1)));
  // 1x1 layers by the same rule (and with 32 channels or fewer too).
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 256, 56, 56, 64, 1, 1)));
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(4, 32, 64, 64, 16, 1, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 128, 28, 28, 512, 1, 1)));
  // Strided layers by the same rule: the ResNet stem (7x7 s2 3 -> 64, 147
  // taps), a strided 1x1; not ResNet-50's 3x3 s2 256 -> 256 at 28^2.
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3)));
  CHECK(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 64, 56, 56, 64, 1, 1, 2, 2)));
  CHECK_FALSE(kernels::cpu::conv2d_weight_grad_takes_direct(make(8, 256, 28, 28, 256, 3, 3, 2, 2, 1, 1)));
  // Through conv2d_backward_weight on a dispatched shape.
  const ConvGeometry g = make(1, 40, 6, 130, 20, 3, 3, 1, 1, 1, 1);
  REQUIRE(kernels::cpu::conv2d_weight_grad_takes_direct(g));  // (returned above if switched off)
  const auto x = random_values<float>(g.N * g.C * g.hw(), 43);
  const auto dy = random_values<float>(g.N * g.K * g.pq(), 44);
  std::vector<float> want(g.K * g.crs()), got(want.size(), 7.0f), gemm(want.size(), 7.0f);
  kernels::ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), want.data());
  kernels::cpu::conv2d_backward_weight<float>(g, dy.data(), x.data(), got.data());
  kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), gemm.data());
  CHECK_CLOSE(as_double(got), as_double(want), 5e-4, 5e-4);
  CHECK_CLOSE(as_double(gemm), as_double(want), 5e-4, 5e-4);
}

TEST_CASE("conv2d direct forward with a stride along W (rows stored as stride phases)") {
  if (direct_kernels_unavailable()) return;
  const std::vector<ConvGeometry> gs = {
      make(2, 3, 37, 45, 11, 7, 7, 2, 2, 3, 3),        // the ResNet stem's 7x7 s2 p3, odd sizes, K = 8 + 3
      make(1, 5, 9, 70, 16, 3, 3, 2, 2, 1, 1),         // 3x3 s2: Q = 35 (2 vectors + 3)
      make(1, 4, 7, 61, 9, 2, 3, 1, 3, 0, 2, 1, 2),    // stride 3 along W only, dilation 2, padding on W
      make(1, 6, 8, 40, 5, 2, 2, 2, 2),                // 2x2 s2: windows that do not overlap
      make(2, 40, 14, 15, 24, 1, 1, 2, 2),             // 1x1 s2, odd W: a phase no tap reads
  };
  for (const ConvGeometry& g : gs) {
    INFO(describe(g));
    const auto x = random_values<float>(g.N * g.C * g.hw(), 51);
    const auto w = random_values<float>(g.K * g.crs(), 52);
    const auto b = random_values<float>(g.K, 53);
    std::vector<float> want(g.N * g.K * g.pq()), got(want.size(), 7.0f), three(want.size(), 7.0f);
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), b.data(), want.data());
    kernels::cpu::conv2d_direct_forward(g, x.data(), w.data(), b.data(), got.data());
    CHECK_CLOSE(as_double(got), as_double(want), 5e-4, 5e-4);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(3);
    kernels::cpu::conv2d_direct_forward(g, x.data(), w.data(), b.data(), three.data());
    omp_set_num_threads(saved);
    CHECK(three == got);
  }
  // The dispatch: with a stride, where windows overlap along W and K <= 64
  // (the stem), not the U-Net's 2x2 s2 up-convolutions.
  if (direct_dispatch_off()) return;
  CHECK(kernels::cpu::conv2d_forward_takes_direct(make(8, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3)));
  CHECK_FALSE(kernels::cpu::conv2d_forward_takes_direct(make(4, 64, 256, 256, 128, 2, 2, 2, 2)));
  CHECK_FALSE(kernels::cpu::conv2d_forward_takes_direct(make(4, 32, 256, 256, 64, 2, 2, 2, 2)));  // K <= 64, no overlap
  CHECK_FALSE(kernels::cpu::conv2d_forward_takes_direct(make(8, 64, 112, 112, 128, 3, 3, 2, 2, 1, 1)));
}

TEST_CASE("conv2d direct weight gradient: an Inf that no tap reads does not reach dW") {
  if (direct_kernels_unavailable()) return;
  // Q = 17: the last vector has one real pixel. Tap s = 0 of output 16
  // reads x[15]; x[16] is read only by taps s >= 1. The vector's unused
  // lanes must not multiply x[16] = Inf into tap s = 0.
  const ConvGeometry g = make(1, 1, 1, 17, 1, 1, 3, 1, 1, 0, 1);
  std::vector<float> x(17, 1.0f), dy(17, 1.0f), want(3), got(3, 7.0f);
  x[16] = std::numeric_limits<float>::infinity();
  kernels::ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), want.data());
  kernels::cpu::conv2d_direct_backward_weight(g, dy.data(), x.data(), got.data());
  CHECK(std::isfinite(want[0]));
  CHECK(got[0] == want[0]);
  CHECK(got[1] == want[1]);  // Inf, as the definition has it
  CHECK(got[2] == want[2]);
  // Without padding (W = 19, Q = 17) the unused lanes of tap s = 1 reach
  // x[18], which only tap s = 2 reads: tap 1 needs its mask as well.
  const ConvGeometry valid = make(1, 1, 1, 19, 1, 1, 3);
  std::vector<float> xv(19, 1.0f), want_v(3), got_v(3, 7.0f);
  xv[18] = std::numeric_limits<float>::infinity();
  kernels::ref::conv2d_backward_weight<float>(valid, dy.data(), xv.data(), want_v.data());
  kernels::cpu::conv2d_direct_backward_weight(valid, dy.data(), xv.data(), got_v.data());
  CHECK(std::isfinite(want_v[1]));
  CHECK(got_v[0] == want_v[0]);
  CHECK(got_v[1] == want_v[1]);
  CHECK(got_v[2] == want_v[2]);  // Inf, as the definition has it
}

TEST_CASE("conv2d direct kernels: the streamed forward (outputs over 8 MiB), thread counts, and refusals") {
  if (direct_kernels_unavailable()) return;
  // 2 x 9 x 341 x 347 outputs x 4 bytes = 8.5 MiB: the streaming-store path,
  // including unaligned row starts (Q = 347) that fall back to plain stores.
  // Compared on sampled outputs (the reference is a slow seven-loop sum).
  const ConvGeometry g = make(2, 3, 341, 347, 9, 3, 3, 1, 1, 1, 1);
  REQUIRE(g.N * g.K * g.pq() * 4 > (8 << 20));
  const auto x = random_values<float>(g.N * g.C * g.hw(), 21);
  const auto w = random_values<float>(g.K * g.crs(), 22);
  const auto b = random_values<float>(g.K, 23);
  const auto dy = random_values<float>(g.N * g.K * g.pq(), 24);
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> y(dy.size()), dw(w.size());
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data());
    kernels::cpu::conv2d_backward_weight<float>(g, dy.data(), x.data(), dw.data());
    omp_set_num_threads(saved);
    return std::pair{y, dw};
  };
  const auto one = run(1), two = run(2), three = run(3);
  CHECK(one.first == two.first);
  CHECK(one.first == three.first);
  CHECK(one.second == two.second);
  CHECK(one.second == three.second);
  // y against the definition at a spread of outputs, edges included.
  for (int64_t i = 0; i < g.N * g.K * g.pq(); i += 9973) {
    const int64_t n = i / (g.K * g.pq()), k = (i / g.pq()) % g.K, p = (i % g.pq()) / g.Q, q = i % g.Q;
    double want = b[k];
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s) {
          const int64_t h = p - 1 + r, wc = q - 1 + s;
          if (h >= 0 && h < g.H && wc >= 0 && wc < g.W)
            want += double(w[((k * g.C + c) * g.R + r) * g.S + s]) * x[((n * g.C + c) * g.H + h) * g.W + wc];
        }
    CHECK(one.first[i] == doctest::Approx(want).epsilon(1e-4));
  }
  // The weight gradient against the GEMM path (a different summation order).
  std::vector<float> dw_gemm(w.size());
  kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), dw_gemm.data());
  CHECK_CLOSE(as_double(one.second), as_double(dw_gemm), 1e-3, 1e-4);

  // Geometries outside the direct kernels are refused by name: an empty
  // output; the few-tap weight gradient with a stride along W or more taps.
  const ConvGeometry empty = make(0, 3, 9, 9, 4, 3, 3);
  const ConvGeometry strided = make(1, 3, 9, 9, 4, 3, 3, 1, 2);
  CHECK_FALSE(kernels::cpu::conv2d_direct_forward_applies(empty));
  CHECK(kernels::cpu::conv2d_direct_forward_applies(strided));
  CHECK_FALSE(kernels::cpu::conv2d_direct_weight_grad_applies(strided));
  const ConvGeometry deep = make(1, 8, 9, 9, 4, 3, 3);  // C*R*S = 72
  std::vector<float> buf(1024);
  CHECK_THROWS_WITH_AS(kernels::cpu::conv2d_direct_forward(empty, buf.data(), buf.data(), nullptr, buf.data()),
                       doctest::Contains("conv2d_direct_forward"), NotImplementedError);
  CHECK_THROWS_WITH_AS(kernels::cpu::conv2d_direct_backward_weight(strided, buf.data(), buf.data(), buf.data()),
                       doctest::Contains("stride 1 along W"), NotImplementedError);
  CHECK_THROWS_WITH_AS(kernels::cpu::conv2d_direct_backward_weight(deep, buf.data(), buf.data(), buf.data()),
                       doctest::Contains("C*R*S <= 64"), NotImplementedError);
}

TEST_CASE("conv2d kernels: f64 im2col + dgemm path matches the direct reference") {
  check_against_reference<double>(1e-11);
}

TEST_CASE("conv2d kernels: f32 results do not depend on the thread count") {
  // The second's GEMM weight gradient sums by groups of images (11 images
  // in 6 groups, stride 2; its dispatched one is the k-lanes kernel where
  // AVX-512 is, so the GEMM path is run by name too); in the third (2
  // images; a dW of 60 x 576) the threads split dW's columns; the fourth's
  // strided backward-input is cut into 2 groups of channels, each zeroing
  // its own channels of dx.
  for (const ConvGeometry& g : {make(2, 16, 19, 21, 20, 3, 3, 1, 1, 1, 1), make(11, 3, 30, 41, 10, 7, 7, 2, 2, 3, 3),
                                make(2, 64, 9, 10, 60, 3, 3, 1, 1, 1, 1), make(2, 24, 33, 31, 16, 3, 3, 2, 2, 1, 1)}) {
    INFO(describe(g));
    const auto x = random_values<float>(g.N * g.C * g.hw(), 5);
    const auto w = random_values<float>(g.K * g.crs(), 6);
    const auto dy = random_values<float>(g.N * g.K * g.pq(), 7);
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> y(g.N * g.K * g.pq()), dx(x.size()), dw(w.size());
      kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), nullptr, y.data());
      kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data());
      kernels::cpu::conv2d_backward_weight<float>(g, dy.data(), x.data(), dw.data());
      std::vector<float> dx_gemm(x.size()), dw_gemm(w.size());
      kernels::cpu::conv2d_backward_input_gemm(g, dy.data(), w.data(), dx_gemm.data());
      kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), dw_gemm.data());
      omp_set_num_threads(saved);
      return std::vector<std::vector<float>>{y, dx, dw, dx_gemm, dw_gemm};
    };
    const auto one = run(1), two = run(2), three = run(3);
    for (size_t i = 0; i < one.size(); ++i) {
      CHECK(one[i] == two[i]);
      CHECK(one[i] == three[i]);
    }
  }
}

TEST_CASE("im2col and col2im by hand") {
  // x = [[1 2 3] [4 5 6]] (1 channel, 2x3), 2x2 kernel, padding (0, 1), stride 1 -> P = 1, Q = 4.
  const ConvGeometry g = make(1, 1, 2, 3, 1, 2, 2, 1, 1, 0, 1);
  REQUIRE(g.P == 1);
  REQUIRE(g.Q == 4);
  const std::vector<double> x = {1, 2, 3, 4, 5, 6};
  std::vector<double> col(g.crs() * g.pq());
  kernels::cpu::im2col<double>(g, x.data(), col.data());
  // Rows are the taps (r, s) = (0,0) (0,1) (1,0) (1,1); columns the 4 output pixels.
  const std::vector<double> want = {0, 1, 2, 3,  //
                                    1, 2, 3, 0,  //
                                    0, 4, 5, 6,  //
                                    4, 5, 6, 0};
  CHECK(col == want);
  // col2im of all ones counts how many windows read each pixel: 2 per pixel here.
  std::vector<double> ones(col.size(), 1.0), dx(x.size(), 0.0);
  kernels::cpu::col2im<double>(g, ones.data(), dx.data());
  CHECK(dx == std::vector<double>(6, 2.0));
}

// The CUDA im2col and col2im kernels' per-element rules (host-device code,
// kernels/cuda/im2col_rules.h) against the CPU's im2col and col2im, on
// geometries with padding, strides, dilations, 1x1 and wide kernels, and
// P Q both a multiple of 4 whose rows are not (the vector kernel's quads
// wrap across output rows) and not.
TEST_CASE("im2col and col2im: the CUDA kernels' rules match the CPU") {
  const std::vector<ConvGeometry> geometries = {
      make(1, 3, 7, 5, 1, 3, 3, 1, 1, 1, 1),           // P Q = 35
      make(1, 2, 4, 5, 1, 1, 1),                        // 1x1: P Q = 20, Q = 5
      make(1, 2, 9, 11, 1, 3, 2, 2, 3, 1, 0, 2, 1),     // strides 2, 3; dilation 2 x 1
      make(1, 1, 1, 1, 1, 1, 1),                        // one pixel
      make(1, 2, 8, 8, 1, 3, 3, 1, 1, 1, 1),            // P Q = 64
      make(1, 3, 13, 6, 1, 5, 1, 1, 1, 2, 0, 1, 1),     // tall kernel
      make(1, 2, 12, 12, 1, 2, 2, 2, 2, 0, 0),          // stride-2 2x2
      make(1, 1, 6, 17, 1, 3, 7, 1, 2, 1, 3, 2, 3),     // wide, dilated
  };
  for (const ConvGeometry& g : geometries) {
    INFO("C=", g.C, " H=", g.H, " W=", g.W, " R=", g.R, " S=", g.S, " stride ", g.sh, "x", g.sw, " pad ", g.ph, "x",
         g.pw, " dilation ", g.dh, "x", g.dw);
    const kernels::cuda::Geometry32 g32 = kernels::cuda::narrow(g, "test");
    const std::vector<double> x = values(random_tensor({g.C * g.H * g.W}, 5, DType::f64));
    std::vector<double> want(static_cast<size_t>(g.crs() * g.pq()));
    kernels::cpu::im2col<double>(g, x.data(), want.data());
    // Singles everywhere, and quads wherever P Q allows them.
    std::vector<double> singles(want.size()), quads(want.size(), -1.0);
    for (int64_t row = 0; row < g.crs(); ++row) {
      const kernels::cuda::ColumnRow cr = kernels::cuda::column_row(row, g32);  // the kernels' split of the row
      const double* xc = x.data() + cr.c * g.H * g.W;
      for (int i = 0; i < g.pq(); ++i)
        kernels::cuda::im2col_values(xc, g32, cr.r, cr.s, i, 1, singles.data() + row * g.pq() + i);
      if (g.pq() % 4 == 0)
        for (int i = 0; i < g.pq(); i += 4)
          kernels::cuda::im2col_values(xc, g32, cr.r, cr.s, i, 4, quads.data() + row * g.pq() + i);
    }
    CHECK(singles == want);
    if (g.pq() % 4 == 0) CHECK(quads == want);

    const std::vector<double> col = values(random_tensor({g.crs() * g.pq()}, 6, DType::f64));
    std::vector<double> dx_want(x.size(), 0.0), dx(x.size());
    kernels::cpu::col2im<double>(g, col.data(), dx_want.data());
    for (int64_t c = 0; c < g.C; ++c)
      for (int h = 0; h < g.H; ++h)
        for (int w = 0; w < g.W; ++w)
          dx[(c * g.H + h) * g.W + w] = kernels::cuda::col2im_value(col.data() + c * g.R * g.S * g.pq(), g32, h, w);
    CHECK_CLOSE(dx, dx_want, 1e-14, 1e-14);
  }
}

// The CUDA weight gradient of an image group (kernels/cuda/conv2d.cu), its
// data movements and its GEMM emulated on the CPU with the same rules and
// arguments: the group's columns placed side by side in each row
// (ColumnPlacement), g regrouped channel by channel (regrouped_source),
// then dW = G [K, images PQ] X [CRS, images PQ]^T. It must give the
// reference weight gradient.
TEST_CASE("im2col: the CUDA weight gradient's image-group layout gives the reference dW") {
  for (const ConvGeometry& g : {make(3, 2, 5, 6, 4, 3, 3, 1, 1, 1, 1), make(2, 3, 7, 5, 2, 3, 2, 2, 1, 1, 0, 1, 2),
                                make(4, 1, 4, 4, 3, 1, 1)}) {
    INFO("N=", g.N, " C=", g.C, " K=", g.K, " ", g.R, "x", g.S);
    const std::vector<double> x = values(random_tensor({g.N * g.C * g.H * g.W}, 7, DType::f64));
    const std::vector<double> dy = values(random_tensor({g.N * g.K * g.pq()}, 8, DType::f64));
    std::vector<double> want(static_cast<size_t>(g.K * g.crs()));
    kernels::ref::conv2d_backward_weight<double>(g, dy.data(), x.data(), want.data());
    const int64_t images = g.N, PQ = g.pq(), depth = images * PQ, CRS = g.crs();
    ConvGeometry block = g;
    block.C = images * g.C;
    const kernels::cuda::Geometry32 b32 = kernels::cuda::narrow(block, "test");
    const kernels::cuda::ColumnPlacement place{CRS, PQ, depth};
    std::vector<double> xt(static_cast<size_t>(CRS * depth), -1.0), gt(static_cast<size_t>(g.K * depth), -1.0);
    for (int64_t row = 0; row < images * CRS; ++row) {  // im2col_kernel's rows, placed
      const kernels::cuda::ColumnRow cr = kernels::cuda::column_row(row, b32);
      const double* xc = x.data() + cr.c * g.H * g.W;
      for (int i = 0; i < PQ; ++i)
        kernels::cuda::im2col_values(xc, b32, cr.r, cr.s, i, 1, xt.data() + place.offset(row) + i);
    }
    for (int64_t o = 0; o < g.K * depth; ++o)  // transpose_images
      gt[static_cast<size_t>(o)] = dy[static_cast<size_t>(kernels::cuda::regrouped_source(o, depth, g.K, PQ))];
    std::vector<double> dw(want.size(), 0.0);  // gemm(false, true, K, CRS, depth, gt, depth, xt, depth, dw, CRS)
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t j = 0; j < CRS; ++j)
        for (int64_t l = 0; l < depth; ++l) dw[k * CRS + j] += gt[k * depth + l] * xt[j * depth + l];
    CHECK_CLOSE(from_vector(dw, {g.K * CRS}), want, 1e-12, 1e-12);
  }
}

// The CUDA implicit-GEMM backward-input runs a stride-1 convolution's
// input gradient as the forward of the flipped, transposed filters
// (backward_input_forward_geometry, flipped_filter_source in
// kernels/cuda/im2col_rules.h): the reference forward through that
// geometry and those filters must give the reference backward-input.
TEST_CASE("conv2d: a stride-1 backward-input is the forward of the flipped, transposed filters") {
  for (const ConvGeometry& g : {make(2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1), make(1, 2, 6, 9, 5, 3, 3, 1, 1, 0, 2),
                                make(2, 4, 5, 5, 3, 5, 3, 1, 1, 2, 0), make(3, 5, 4, 3, 2, 1, 1),
                                make(1, 1, 1, 1, 1, 1, 1)}) {
    INFO(describe(g));
    REQUIRE(kernels::cuda::backward_input_as_forward(g));
    const ConvGeometry b = kernels::cuda::backward_input_forward_geometry(g);
    // A consistent forward geometry: its output size follows from the rest.
    CHECK(b.H + 2 * b.ph - b.R + 1 == b.P);
    CHECK(b.W + 2 * b.pw - b.S + 1 == b.Q);
    const std::vector<double> dy = values(random_tensor({g.N * g.K * g.pq()}, 11, DType::f64));
    const std::vector<double> w = values(random_tensor({g.K * g.crs()}, 12, DType::f64));
    std::vector<double> want(static_cast<size_t>(g.N * g.C * g.hw())), got(want.size(), -1.0), flipped(w.size());
    kernels::ref::conv2d_backward_input<double>(g, dy.data(), w.data(), want.data());
    for (int64_t i = 0; i < static_cast<int64_t>(w.size()); ++i) {
      flipped[static_cast<size_t>(i)] = w[static_cast<size_t>(kernels::cuda::flipped_filter_source(i, g.C, g.K, g.R, g.S))];
    }
    kernels::ref::conv2d_forward<double>(b, dy.data(), flipped.data(), nullptr, got.data());
    CHECK_CLOSE(got, want, 1e-13, 1e-13);
  }
  CHECK_FALSE(kernels::cuda::backward_input_as_forward(make(1, 1, 8, 8, 1, 3, 3, 2, 2, 1, 1)));        // stride 2
  CHECK_FALSE(kernels::cuda::backward_input_as_forward(make(1, 1, 8, 8, 1, 3, 3, 1, 1, 2, 2, 2, 2)));  // dilated
  CHECK_FALSE(kernels::cuda::backward_input_as_forward(make(1, 1, 8, 8, 1, 3, 3, 1, 1, 3, 3)));        // pad > R-1
}

// The CUDA implicit-GEMM backward-input of a layer whose windows do not
// overlap (stride >= kernel, no padding) is one GEMM whose products land on
// their own pixels (backward_input_as_scatter, scatter_offset in
// kernels/cuda/im2col_rules.h): the plain GEMM scattered so onto a zeroed
// dx must give the reference backward-input; scatter_covers says when
// there is nothing to zero.
TEST_CASE("conv2d: a backward-input whose windows do not overlap is one GEMM scattered onto dx") {
  // Exactly tiled; a row and a column past the last windows; 1x1 at stride
  // 2 (gaps between windows); 2x3 at stride 3 x 4; one pixel.
  for (const ConvGeometry& g : {make(2, 3, 6, 8, 4, 2, 2, 2, 2), make(1, 2, 7, 9, 3, 3, 2, 3, 2),
                                make(3, 4, 5, 4, 2, 1, 1, 2, 2), make(2, 2, 8, 11, 3, 2, 3, 3, 4),
                                make(1, 1, 1, 1, 1, 1, 1, 1, 1)}) {
    INFO(describe(g));
    REQUIRE(kernels::cuda::backward_input_as_scatter(g));
    const std::vector<double> dy = values(random_tensor({g.N * g.K * g.pq()}, 13, DType::f64));
    const std::vector<double> w = values(random_tensor({g.K * g.crs()}, 14, DType::f64));
    std::vector<double> want(static_cast<size_t>(g.N * g.C * g.hw())), got(want.size(), 0.0);
    std::vector<int> hits(want.size(), 0);
    kernels::ref::conv2d_backward_input<double>(g, dy.data(), w.data(), want.data());
    const kernels::cuda::Geometry32 g32 = kernels::cuda::narrow(g, "test");
    const int64_t PQ = g.pq();
    for (int64_t m = 0; m < g.crs(); ++m) {
      for (int64_t n = 0; n < g.N * PQ; ++n) {
        double v = 0;
        for (int64_t k = 0; k < g.K; ++k) v += w[k * g.crs() + m] * dy[((n / PQ) * g.K + k) * PQ + n % PQ];
        const int64_t at = kernels::cuda::scatter_offset(m, n, g32);
        REQUIRE((at >= 0 && at < static_cast<int64_t>(got.size())));
        got[static_cast<size_t>(at)] = v;
        ++hits[static_cast<size_t>(at)];
      }
    }
    CHECK(*std::max_element(hits.begin(), hits.end()) == 1);  // no pixel twice
    CHECK(kernels::cuda::scatter_covers(g) == (*std::min_element(hits.begin(), hits.end()) == 1));
    CHECK_CLOSE(got, want, 1e-13, 1e-13);
  }
  CHECK_FALSE(kernels::cuda::backward_input_as_scatter(make(1, 1, 8, 8, 1, 3, 3, 2, 2)));        // overlapping
  CHECK_FALSE(kernels::cuda::backward_input_as_scatter(make(1, 1, 8, 8, 1, 2, 2, 2, 2, 1, 1)));  // padded
  CHECK_FALSE(kernels::cuda::backward_input_as_scatter(make(1, 1, 9, 9, 1, 2, 2, 2, 2, 0, 0, 2, 2)));  // dilated
}

TEST_CASE("conv2d op: output shape, bias, strided input") {
  const Tensor x = random_tensor({2, 3, 10, 9}, 11);
  const Tensor w = random_tensor({4, 3, 3, 2}, 12);
  const Tensor b = random_tensor({4}, 13);
  ops::Conv2dArgs a;
  a.stride_h = 2, a.pad_h = 1, a.pad_w = 2, a.dil_w = 2;
  const Tensor y = ops::conv2d(x, w, b, a);
  CHECK(y.shape() == Shape{2, 4, 5, 11});
  // A transposed (non-contiguous) view of the same data gives the same result.
  const Tensor xt = ops::transpose(ops::contiguous(ops::transpose(x, 2, 3)), 2, 3);
  REQUIRE_FALSE(xt.is_contiguous());
  CHECK_CLOSE(ops::conv2d(xt, w, b, a), values(y), 0, 0);
  // Bias adds a per-channel constant.
  const Tensor y0 = ops::conv2d(x, w, Tensor(), a);
  CHECK_CLOSE(ops::sub(y, y0), values(ops::expand(ops::reshape(b, {1, 4, 1, 1}), y.shape())), 1e-5, 1e-5);
}

TEST_CASE("conv_transpose2d op matches its scatter definition") {
  // y[n, k, h*sh - ph + r*dh, w*sw - pw + s*dw] += x[n, c, h, w] * W[c, k, r, s], then + b[k].
  for (const auto& [sh, ph, dh, oph] : std::vector<std::array<int64_t, 4>>{{2, 1, 1, 1}, {1, 0, 1, 0}, {3, 2, 2, 2}}) {
    const int64_t N = 2, C = 3, H = 5, W = 4, K = 2, R = 3, S = 2;
    const Tensor x = random_tensor({N, C, H, W}, 21, DType::f64);
    const Tensor w = random_tensor({C, K, R, S}, 22, DType::f64);
    const Tensor b = random_tensor({K}, 23, DType::f64);
    ops::Conv2dArgs a;
    a.stride_h = sh, a.stride_w = 1, a.pad_h = ph, a.pad_w = 0, a.dil_h = dh, a.dil_w = 1;
    const Tensor y = ops::conv_transpose2d(x, w, b, a, oph, 0);
    const int64_t Ho = (H - 1) * sh - 2 * ph + dh * (R - 1) + oph + 1, Wo = (W - 1) + (S - 1) + 1;
    REQUIRE(y.shape() == Shape{N, K, Ho, Wo});
    std::vector<double> want(static_cast<size_t>(N * K * Ho * Wo));
    const auto xv = values(x), wv = values(w), bv = values(b);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < Ho * Wo; ++i) want[(n * K + k) * Ho * Wo + i] = bv[k];
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t ww = 0; ww < W; ++ww)
            for (int64_t k = 0; k < K; ++k)
              for (int64_t r = 0; r < R; ++r)
                for (int64_t s = 0; s < S; ++s) {
                  const int64_t oh = h * sh - ph + r * dh, ow = ww + s;
                  if (oh < 0 || oh >= Ho || ow < 0 || ow >= Wo) continue;
                  want[((n * K + k) * Ho + oh) * Wo + ow] +=
                      xv[((n * C + c) * H + h) * W + ww] * wv[((c * K + k) * R + r) * S + s];
                }
    CHECK_CLOSE(y, want, 1e-12, 1e-12);
  }
}

TEST_CASE("conv2d ops reject bad input with clear errors") {
  const Tensor x = random_tensor({1, 3, 8, 8}, 1);
  check_throws_with<ShapeError>([&] { ops::conv2d(x, random_tensor({4, 2, 3, 3}, 2), Tensor(), {}); },
                                "expects 2 input channels");
  check_throws_with<ShapeError>([&] { ops::conv2d(random_tensor({3, 8, 8}, 1), random_tensor({4, 3, 3, 3}, 2), Tensor(), {}); },
                                "expected input [N, C, H, W]");
  check_throws_with<ShapeError>([&] { ops::conv2d(x, random_tensor({4, 3, 9, 3}, 2), Tensor(), {}); },
                                "smaller than the dilated kernel");
  check_throws_with<ShapeError>([&] { ops::conv2d(x, random_tensor({4, 3, 3, 3}, 2), random_tensor({3}, 3), {}); },
                                "expected bias [4]");
  ops::Conv2dArgs bad;
  bad.stride_w = 0;
  check_throws_with<ValueError>([&] { ops::conv2d(x, random_tensor({4, 3, 3, 3}, 2), Tensor(), bad); },
                                "expected stride >= 1");
  check_throws_with<DTypeError>(
      [&] { ops::conv2d(x, random_tensor({4, 3, 3, 3}, 2, DType::f64), Tensor(), {}); }, "weight has dtype f64");
  check_throws_with<ShapeError>(
      [&] { ops::conv2d_backward_input(random_tensor({1, 4, 5, 5}, 1), random_tensor({4, 3, 3, 3}, 2), {1, 3, 8, 8}, {}); },
      "expected grad of shape [1, 4, 6, 6]");
  ops::Conv2dArgs s2;
  s2.stride_h = s2.stride_w = 2;
  check_throws_with<ValueError>(
      [&] { ops::conv_transpose2d(x, random_tensor({3, 2, 3, 3}, 2), Tensor(), s2, 2, 0); },
      "output padding < max(stride, dilation)");
}

// The CUDA Winograd F(m x m, 3x3) path (kernels/cuda/conv2d_winograd.cu)
// emulated on the CPU: its per-thread passes (winograd_rules.h) over image
// groups of `group` images, with plain loops for the batched GEMMs.
template <int kM>
std::vector<double> winograd_emulated(const ConvGeometry& g, const std::vector<double>& x, const std::vector<double>& w,
                                      bool backward, const double* bias, int64_t group) {
  constexpr int64_t kPoints = (kM + 2) * (kM + 2);
  const kernels::cuda::WinogradPlan p = kernels::cuda::winograd_plan(g, kM, "test");
  std::vector<double> U(static_cast<size_t>(kPoints * g.K * g.C), NAN);
  for (int64_t o = 0; o < g.K * g.C; ++o)
    kernels::cuda::winograd_filter_element<kM>(o, w.data(), g.K, g.C, backward, U.data());
  std::vector<double> y(static_cast<size_t>(g.N * g.K * g.pq()), NAN);
  for (int64_t n0 = 0; n0 < g.N; n0 += group) {
    const int64_t images = std::min(group, g.N - n0), T = images * p.tiles();
    std::vector<double> V(static_cast<size_t>(kPoints * g.C * T), NAN), M(static_cast<size_t>(kPoints * g.K * T), 0.0);
    for (int64_t o = 0; o < images * g.C * p.tiles(); ++o)
      kernels::cuda::winograd_input_element<kM>(o, x.data() + n0 * g.C * g.hw(), p, images, V.data());
    for (int64_t xi = 0; xi < kPoints; ++xi)  // M[xi] = U[xi] [K, C] V[xi] [C, T]
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t t = 0; t < T; ++t)
            M[(xi * g.K + k) * T + t] += U[(xi * g.K + k) * g.C + c] * V[(xi * g.C + c) * T + t];
    for (int64_t o = 0; o < images * g.K * p.tiles(); ++o)
      kernels::cuda::winograd_output_element<kM>(o, M.data(), p, images, bias, y.data() + n0 * g.K * g.pq());
  }
  return y;
}

// The weight gradient, F(3x3, m x m): Mw[xi] [K, C] summed over the
// groups' GEMMs E'[xi] [K, T] V[xi] [C, T]^T, then dW = G^T Mw G.
template <int kM>
std::vector<double> winograd_weight_grad_emulated(const ConvGeometry& g, const std::vector<double>& dy,
                                                  const std::vector<double>& x, int64_t group) {
  constexpr int64_t kPoints = (kM + 2) * (kM + 2);
  const kernels::cuda::WinogradPlan p = kernels::cuda::winograd_plan(g, kM, "test");
  std::vector<double> Mw(static_cast<size_t>(kPoints * g.K * g.C), 0.0), dw(static_cast<size_t>(g.K * g.C * 9), NAN);
  for (int64_t n0 = 0; n0 < g.N; n0 += group) {
    const int64_t images = std::min(group, g.N - n0), T = images * p.tiles();
    std::vector<double> V(static_cast<size_t>(kPoints * g.C * T), NAN), E(static_cast<size_t>(kPoints * g.K * T), NAN);
    for (int64_t o = 0; o < images * g.C * p.tiles(); ++o)
      kernels::cuda::winograd_input_element<kM>(o, x.data() + n0 * g.C * g.hw(), p, images, V.data());
    for (int64_t o = 0; o < images * g.K * p.tiles(); ++o)
      kernels::cuda::winograd_grad_element<kM>(o, dy.data() + n0 * g.K * g.pq(), p, images, E.data());
    for (int64_t xi = 0; xi < kPoints; ++xi)
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t t = 0; t < T; ++t)
            Mw[(xi * g.K + k) * g.C + c] += E[(xi * g.K + k) * T + t] * V[(xi * g.C + c) * T + t];
  }
  for (int64_t o = 0; o < g.K * g.C; ++o)
    kernels::cuda::winograd_filter_grad_element<kM>(o, Mw.data(), g.K, g.C, dw.data());
  return dw;
}

template <int kM>
void check_winograd_rules(double tol) {
  // Odd and even planes (cut last tiles), padding 0, 1 and 2, a plane of
  // one output, prime channel counts; groups that do not divide N.
  for (const ConvGeometry& g : {make(3, 5, 7, 6, 7, 3, 3, 1, 1, 1, 1), make(2, 3, 8, 9, 2, 3, 3, 1, 1, 0, 0),
                                make(2, 2, 5, 4, 3, 3, 3, 1, 1, 2, 1), make(1, 1, 3, 3, 1, 3, 3),
                                make(4, 13, 4, 11, 5, 3, 3, 1, 1, 1, 2), make(2, 3, 10, 13, 4, 3, 3, 1, 1, 1, 1)}) {
    for (const int64_t group : {int64_t{1}, int64_t{2}, g.N}) {
      INFO("F(", kM, "x", kM, ") ", describe(g), " group ", group);
      REQUIRE(kernels::cuda::winograd_applies(g));
      const std::vector<double> x = values(random_tensor({g.N * g.C * g.hw()}, 11, DType::f64));
      const std::vector<double> w = values(random_tensor({g.K * g.C * 9}, 12, DType::f64));
      const std::vector<double> bias = values(random_tensor({g.K}, 13, DType::f64));
      const std::vector<double> dy = values(random_tensor({g.N * g.K * g.pq()}, 14, DType::f64));

      std::vector<double> want(static_cast<size_t>(g.N * g.K * g.pq()));
      kernels::ref::conv2d_forward<double>(g, x.data(), w.data(), bias.data(), want.data());
      CHECK_CLOSE(winograd_emulated<kM>(g, x, w, false, bias.data(), group), want, tol, tol);

      const ConvGeometry b = kernels::cuda::winograd_backward_input_geometry(g);
      REQUIRE(kernels::cuda::winograd_applies(b));
      std::vector<double> dx_want(x.size());
      kernels::ref::conv2d_backward_input<double>(g, dy.data(), w.data(), dx_want.data());
      CHECK_CLOSE(winograd_emulated<kM>(b, dy, w, true, nullptr, group), dx_want, tol, tol);

      std::vector<double> dw_want(w.size());
      kernels::ref::conv2d_backward_weight<double>(g, dy.data(), x.data(), dw_want.data());
      CHECK_CLOSE(winograd_weight_grad_emulated<kM>(g, dy, x, group), dw_want, tol, tol);
    }
  }
}

TEST_CASE("winograd: the CUDA F(2x2, 3x3) and F(4x4, 3x3) rules give the reference forward, backward-input and "
          "weight gradient") {
  check_winograd_rules<2>(1e-12);
  check_winograd_rules<4>(1e-11);
  // Everything else stays on im2col: stride, dilation, other kernels, padding past 2.
  CHECK_FALSE(kernels::cuda::winograd_applies(make(1, 2, 9, 9, 2, 3, 3, 2, 2, 1, 1)));
  CHECK_FALSE(kernels::cuda::winograd_applies(make(1, 2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 2, 2)));
  CHECK_FALSE(kernels::cuda::winograd_applies(make(1, 2, 9, 9, 2, 5, 5, 1, 1, 2, 2)));
  CHECK_FALSE(kernels::cuda::winograd_applies(make(1, 2, 9, 9, 2, 3, 3, 1, 1, 3, 3)));
  CHECK_FALSE(kernels::cuda::winograd_applies(make(1, 2, 9, 9, 2, 1, 1)));
  CHECK_THROWS_AS(kernels::cuda::winograd_plan(make(1, 2, 9, 9, 2, 3, 3, 2, 2, 1, 1), 2, "test"), NotImplementedError);
  CHECK_THROWS_AS(kernels::cuda::winograd_plan(make(1, 2, 9, 9, 2, 3, 3, 1, 1, 1, 1), 3, "test"), ValueError);
}
