// Winograd F(4x4, 3x3) convolution (kernels/cpu/conv2d_winograd.h) against
// the direct loops of kernels::ref, forward and both backwards, on awkward
// shapes: sizes 1 and primes, outputs that are not multiples of the 4x4
// tile, rows of more than 16 tiles (a second group of lanes), paddings 0-3
// (the backward-input's flipped padding 2 - p goes negative at 3), channel
// counts off the 16-lane groups. All passes run in bands of tile rows for
// small C K and over the whole batch in chunks otherwise: both forms are
// covered, the second with several chunks (against the GEMM path), and
// so are the deep layers' fused filter transforms on small images. Also:
// thread-count independence, the dispatch rules, the error on a geometry
// it does not handle.
#include <omp.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/gemm/gemm.h"
#include "kernels/ref/conv2d.h"
#include "tensor/error.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using kernels::ConvGeometry;

namespace {

ConvGeometry make3x3(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad) {
  ConvGeometry g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.K = K, g.R = 3, g.S = 3;
  g.ph = g.pw = pad;
  g.P = H + 2 * pad - 2;
  g.Q = W + 2 * pad - 2;
  return g;
}

std::string describe(const ConvGeometry& g) {
  std::ostringstream out;  // not a chain of string +, on which GCC 12 warns falsely (-Wrestrict)
  out << "N" << g.N << " C" << g.C << " " << g.H << "x" << g.W << " K" << g.K << " pad " << g.ph << "," << g.pw;
  return out.str();
}

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(2.0 * gen.uniform_f64() - 1.0);
  return v;
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

struct Outputs {
  std::vector<float> y, dx, dw;
};

Outputs winograd(const ConvGeometry& g, const std::vector<float>& x, const std::vector<float>& w,
                 const std::vector<float>& b, const std::vector<float>& dy) {
  Outputs o{std::vector<float>(dy.size(), 7.0f), std::vector<float>(x.size(), 7.0f),
            std::vector<float>(w.size(), 7.0f)};
  kernels::cpu::conv2d_winograd_forward(g, x.data(), w.data(), b.empty() ? nullptr : b.data(), o.y.data());
  kernels::cpu::conv2d_winograd_backward_input(g, dy.data(), w.data(), o.dx.data());
  kernels::cpu::conv2d_winograd_backward_weight(g, dy.data(), x.data(), o.dw.data());
  return o;
}

}  // namespace

TEST_CASE("conv2d Winograd F(4x4, 3x3): forward and both backwards match the reference on awkward shapes") {
  const std::vector<ConvGeometry> gs = {
      make3x3(1, 1, 3, 3, 1, 0),     // one output pixel: a single tile, 15 of its outputs discarded
      make3x3(1, 1, 1, 1, 1, 1),     // a 1x1 image, padded
      make3x3(2, 3, 7, 13, 5, 1),    // primes; Q = 13 = 3 tiles + 1
      make3x3(1, 2, 5, 6, 3, 2),     // padding 2: the flipped backward-input pads 0
      make3x3(1, 2, 5, 6, 3, 3),     // padding 3: the flipped one pads -1
      make3x3(3, 17, 9, 71, 19, 1),  // 18 tiles per row (a second lane group of 2), C, K = 16 + 1, 16 + 3
      make3x3(2, 20, 37, 19, 7, 0),  // valid padding, P = 35, Q = 17
      make3x3(1, 33, 8, 8, 1, 1),    // K = 1, C past two lane groups
      make3x3(1, 5, 35, 64, 6, 1),   // 16 tiles per row: bands of 4 tile rows, 9 rows = 4 + 4 + 1
      make3x3(2, 7, 35, 64, 6, 1),   // 6 bands: the weight gradient in bands, groups of 1, 2, 1, 2
      make3x3(2, 37, 35, 64, 29, 1),  // in bands with K = 2 MR + 5 (a part-filled block of packed Z)
                                      // and C = 2 x 16 + 5 (V^T's staging blocks)
      make3x3(4, 3, 2, 4101, 13, 1),  // bands of 1026 tiles, deeper than KC (1024 on v4, less
                                      // elsewhere): packed Z in two depth slices or more
      make3x3(1, 3, 2, 4101, 13, 1),  // one band: the whole-batch weight gradient, its GEMMs 1026 tiles
                                      // deep, in two depth slices
      make3x3(2, 260, 6, 7, 257, 1),  // C K > 256^2: the whole-batch forward instead of bands
      make3x3(1, 530, 6, 5, 521, 1),  // C, K > KC (512 on Intel): packed filters in two depth slices;
                                      // depth steps streamed 4 at a time, the last 2 (530) and 1 (521) copied
      make3x3(1, 1030, 4, 5, 13, 1),  // C > KC of 1024 (v4 on AMD): the forward's depth in two slices
      make3x3(1, 13, 4, 5, 1027, 1),  // K > 1024: the backward-input's flipped filters in two slices
      make3x3(1, 8, 24, 60, 8, 1),    // 15 tiles per row: flat groups of 5 tile rows, then 1 (bands; the
                                      // weight gradient over the whole batch, 2 bands)
      make3x3(2, 3, 37, 29, 5, 1),    // 8 tiles per row, 10 tile rows: flat groups of 8 and 2 rows, whole
                                      // vectors (no zero fill); P = 37 leaves the last tile row 1 row deep
      make3x3(1, 2, 9, 60, 3, 4),     // padding 4: the flipped backward-input pads -2 over 66 columns, so
                                      // its flat staging loads 64 whole columns unmasked
      make3x3(1, 3, 6, 128, 2, 1),    // 32 tiles per row: the second 16-tile group's patches end in
                                      // the row's last column and then the right padding
      make3x3(1, 3, 6, 70, 4, 2),     // 18 tiles per row, padding 2 (the flipped backward-input pads
                                      // 0): the first group's columns 4 and 5 of tile 15 are columns
                                      // 62 and 63, the second group's run past the row
      make3x3(1, 2, 5, 66, 3, 3),     // 18 tiles per row, padding 3; the flipped backward-input pads
                                      // -1 over 17 tiles per row: its groups start inside the row
  };
  for (const ConvGeometry& g : gs) {
    INFO(describe(g));
    REQUIRE(kernels::cpu::conv2d_winograd_applies(g));
    const auto x = random_floats(g.N * g.C * g.hw(), 1), w = random_floats(g.K * g.crs(), 2),
               b = random_floats(g.K, 3), dy = random_floats(g.N * g.K * g.pq(), 4);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data());
    kernels::ref::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data());
    kernels::ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), dw.data());
    const Outputs got = winograd(g, x, w, b, dy);
    // Rounding: each output sums `terms` products of magnitude <= 1, and
    // the transforms amplify f32's rounding (a row of B^T has absolute sum
    // 10, so transformed inputs reach 100x the data; A^T's entries reach 8):
    // an absolute error that grows like a random walk, 2e-4 per
    // sqrt(term) (measured: at most 2.1e-5 per sqrt(term) here). A wrong transform is off by O(1).
    const auto atol = [](int64_t terms) { return 2e-4 * std::sqrt(static_cast<double>(terms)); };
    CHECK_CLOSE(as_double(got.y), as_double(y), atol(g.C * 9), 2e-4);
    CHECK_CLOSE(as_double(got.dx), as_double(dx), atol(g.K * 9), 2e-4);
    CHECK_CLOSE(as_double(got.dw), as_double(dw), atol(g.N * g.pq()), 2e-4);
    // Without a bias.
    std::vector<float> y0(dy.size()), got0(dy.size(), 7.0f);
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), nullptr, y0.data());
    kernels::cpu::conv2d_winograd_forward(g, x.data(), w.data(), nullptr, got0.data());
    CHECK_CLOSE(as_double(got0), as_double(y0), atol(g.C * 9), 2e-4);
    // With the ReLU epilogue.
    std::vector<float> relu_want = y, got_relu(dy.size(), -7.0f);
    for (float& v : relu_want) v = std::max(v, 0.0f);
    kernels::cpu::conv2d_winograd_forward(g, x.data(), w.data(), b.data(), got_relu.data(), /*relu=*/true);
    CHECK_CLOSE(as_double(got_relu), as_double(relu_want), atol(g.C * 9), 2e-4);
  }
}

// Bitwise equal results on 3 and 5 threads and on the default count (5
// does not divide the 36 point products: the whole-batch form then cuts
// them into row blocks too).
void check_thread_independence(const ConvGeometry& g, const Outputs& got, const std::vector<float>& x,
                               const std::vector<float>& w, const std::vector<float>& b,
                               const std::vector<float>& dy) {
  const int saved = omp_get_max_threads();
  for (const int threads : {3, 5}) {
    INFO(threads, " threads");
    omp_set_num_threads(threads);
    const Outputs other = winograd(g, x, w, b, dy);
    omp_set_num_threads(saved);
    CHECK(other.y == got.y);
    CHECK(other.dx == got.dx);
    CHECK(other.dw == got.dw);
  }
}

// The whole-batch form (C K > 256^2 for the weight gradient, and C K >=
// 256^2 for the forward; not in bands) against the GEMM path,
// with the random-walk bound of the test above (2e-4 per sqrt(term));
// then across thread counts.
void check_whole_batch_against_gemm(const ConvGeometry& g, uint64_t seed) {
  INFO(describe(g));
  REQUIRE_FALSE(kernels::cpu::conv2d_winograd_weight_grad_in_bands(g));
  const auto x = random_floats(g.N * g.C * g.hw(), seed), w = random_floats(g.K * g.crs(), seed + 1),
             b = random_floats(g.K, seed + 2), dy = random_floats(g.N * g.K * g.pq(), seed + 3);
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
  kernels::cpu::conv2d_forward_gemm(g, x.data(), w.data(), b.data(), y.data());
  kernels::cpu::conv2d_backward_input_gemm(g, dy.data(), w.data(), dx.data());
  kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), dw.data());
  const Outputs got = winograd(g, x, w, b, dy);
  const auto bound = [](double terms) { return 2e-4 * std::sqrt(terms); };
  CHECK_CLOSE(as_double(got.y), as_double(y), bound(g.C * 9.0), 1e-4);
  CHECK_CLOSE(as_double(got.dx), as_double(dx), bound(g.K * 9.0), 1e-4);
  CHECK_CLOSE(as_double(got.dw), as_double(dw), bound(static_cast<double>(g.N * g.pq())), 1e-4);
  check_thread_independence(g, got, x, w, b, dy);
}

TEST_CASE("conv2d Winograd: the whole-batch form in several chunks, against the GEMM path") {
  // 2 images of 260 -> 260 channels at 92^2: 23^2 tiles per image, whose
  // transforms (36 x 520 floats per tile) overflow one 2^24-float chunk, so
  // the images go one per chunk (the weight gradient adds the second
  // chunk's product into the first's).
  check_whole_batch_against_gemm(make3x3(2, 260, 92, 92, 260, 1), 5);
}

TEST_CASE("conv2d Winograd: the whole batch in flat groups of tile rows, against the GEMM path") {
  // 15 tiles per row: groups of 5 tile rows and a last one of 1, 16 tiles
  // a vector across row ends, a partial last vector.
  check_whole_batch_against_gemm(make3x3(1, 260, 24, 60, 257, 1), 35);
}

TEST_CASE("conv2d Winograd: whole-batch transforms streamed out, against the GEMM path") {
#if !defined(__AVX512F__)
  MESSAGE("built without AVX-512: the transforms store plainly, so this runs no streaming stores");
#endif
  // 256 -> 256, 16 images of 16^2 (256 tiles; 16 per image, so the
  // weight gradient too goes whole-batch): V (36 x 256 x 272 floats) and Z
  // (36 x (256 x 256 + 16)) are 8 MiB or more, so the input and
  // output-gradient transforms write them with streaming stores, every
  // 16-tile vector of the flat groups (4 tile rows of 4 tiles) 64-byte
  // aligned; so is the forward's and backward-input's M (as Z), which the
  // 36 products stream out (blis_block's stream_c) across threads.
  check_whole_batch_against_gemm(make3x3(16, 256, 16, 16, 256, 1), 41);
  // Rows of 16 tiles (loaded row by row straight into registers): 16
  // images of 4 x 64, one tile row each, streamed alike.
  check_whole_batch_against_gemm(make3x3(16, 256, 4, 64, 256, 1), 43);
}

TEST_CASE("conv2d Winograd: deep layers on small images, filter transforms fused, against the GEMM path") {
  // C K >= 512^2 on few tiles: the forward and backward-input transform
  // their filters in blocks of 96 rows by 128 deep inside the products,
  // and the weight gradient (16 tiles at most) untransforms its products
  // in blocks of 96 x 96. 517 -> 515 channels: the last row block ends in
  // a partial micro-panel (515 = 5 x 96 + 35, 35 = 2 x 12 + 11; 517 =
  // 5 x 96 + 37 for the flipped form), the last depth slice is 5 or 3
  // deep (517 = 4 x 128 + 5; 515 = 4 x 128 + 3), so the filter taps' last
  // run of 16 steps is partial. One 10 x 14 image: 12 tiles, under one
  // 32-column panel.
  const ConvGeometry g = make3x3(1, 517, 10, 14, 515, 1);
  ConvGeometry flipped = g;  // the backward-input's forward (padding 1: the same tiles)
  flipped.C = g.K, flipped.K = g.C;
  REQUIRE(kernels::cpu::conv2d_winograd_forward_fused(g));
  REQUIRE(kernels::cpu::conv2d_winograd_forward_fused(flipped));
  REQUIRE(kernels::cpu::conv2d_winograd_weight_grad_fused(g));
  check_whole_batch_against_gemm(g, 51);
  // 4 images of 16^2: 64 tiles, two full panels read in place; the
  // weight gradient unfused. 530 -> 520 channels.
  const ConvGeometry h = make3x3(4, 530, 16, 16, 520, 1);
  REQUIRE(kernels::cpu::conv2d_winograd_forward_fused(h));
  REQUIRE_FALSE(kernels::cpu::conv2d_winograd_weight_grad_fused(h));
  check_whole_batch_against_gemm(h, 55);
  // Neither where C K is under 512^2 or the batch has more tiles.
  CHECK_FALSE(kernels::cpu::conv2d_winograd_forward_fused(make3x3(1, 256, 16, 16, 256, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_winograd_forward_fused(make3x3(8, 1024, 16, 16, 1024, 1)));
  CHECK_FALSE(kernels::cpu::conv2d_winograd_weight_grad_fused(make3x3(2, 1024, 16, 16, 1024, 1)));
}

TEST_CASE("conv2d Winograd: from C K of 128 x 256 the weight gradient takes 4 bands or at least 8") {
  // One 64^2 image: 16 tiles per row, bands of 4 tile rows, 4 bands, one
  // per group. A 32^2 image is one band of 64 tiles: 5 to 7 images run
  // over the whole batch from C K of 128 x 256.
  using kernels::cpu::conv2d_winograd_weight_grad_in_bands;
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(1, 128, 64, 64, 128, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(1, 128, 64, 64, 256, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(1, 256, 64, 64, 256, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(2, 256, 64, 64, 256, 1)));  // 8 bands, 2 per group
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(4, 256, 32, 32, 256, 1)));
  for (const int64_t n : {5, 6, 7}) CHECK_FALSE(conv2d_winograd_weight_grad_in_bands(make3x3(n, 256, 32, 32, 256, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(8, 256, 32, 32, 256, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(5, 128, 32, 32, 128, 1)));  // smaller C K: any 4 bands
  // The shapes of the reference test that exercise the banded packing.
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(2, 37, 35, 64, 29, 1)));
  CHECK(conv2d_winograd_weight_grad_in_bands(make3x3(4, 3, 2, 4101, 13, 1)));
  CHECK_FALSE(conv2d_winograd_weight_grad_in_bands(make3x3(1, 3, 2, 4101, 13, 1)));
}

TEST_CASE("conv2d Winograd: the GEMMs read transformed inputs in place, with packing's bits") {
  // Whole batch (C K > 256^2); T = 66 tiles (2 full 32-tile panels read in
  // place, 2 packed); C = 1030 > KC = 1024 (v4), so the in-place pointer
  // moves on by a slice; and K = 1030 for the backward-input's flipped form.
  // Then in bands (C K < 256^2): 15 tiles per row, bands of 5, 5 and 3
  // tile rows (75, 75 and 45 tiles: a packed tail of 11 or 13 columns);
  // there the weight gradient reads V^T in place too (C = 48: one full
  // 32-column panel, a packed tail of 16).
  if (kernels::cpu::sgemm_blis_config().ukernel_b_in_place == nullptr) {
    MESSAGE("this CPU's GEMM config has no in-place micro-kernel: both runs pack, the comparison is vacuous");
  }
  for (const ConvGeometry& g :
       {make3x3(1, 1030, 5, 130, 70, 1), make3x3(1, 70, 5, 130, 1030, 1), make3x3(2, 48, 52, 60, 40, 1)}) {
    INFO(describe(g));
    const auto x = random_floats(g.N * g.C * g.hw(), 25), w = random_floats(g.K * g.crs(), 26),
               dy = random_floats(g.N * g.K * g.pq(), 27);
    std::vector<float> y_in(dy.size()), dx_in(x.size()), dw_in(w.size()), y_packed(dy.size()),
        dx_packed(x.size()), dw_packed(w.size());
    const bool was = kernels::cpu::set_conv_b_in_place(true);
    kernels::cpu::conv2d_winograd_forward(g, x.data(), w.data(), nullptr, y_in.data());
    kernels::cpu::conv2d_winograd_backward_input(g, dy.data(), w.data(), dx_in.data());
    kernels::cpu::conv2d_winograd_backward_weight(g, dy.data(), x.data(), dw_in.data());
    kernels::cpu::set_conv_b_in_place(false);
    kernels::cpu::conv2d_winograd_forward(g, x.data(), w.data(), nullptr, y_packed.data());
    kernels::cpu::conv2d_winograd_backward_input(g, dy.data(), w.data(), dx_packed.data());
    kernels::cpu::conv2d_winograd_backward_weight(g, dy.data(), x.data(), dw_packed.data());
    kernels::cpu::set_conv_b_in_place(was);
    CHECK(y_in == y_packed);
    CHECK(dx_in == dx_packed);
    CHECK(dw_in == dw_packed);
  }
}

TEST_CASE("conv2d Winograd: in bands, any thread count gives the same bits") {
  // 3 images of 64 -> 48 channels at 60^2: 15 tiles per row, bands of 5
  // tile rows, 3 per image: 9 bands in weight-gradient groups of 2, 2, 2, 3.
  const ConvGeometry g = make3x3(3, 64, 60, 60, 48, 1);
  REQUIRE(kernels::cpu::conv2d_winograd_weight_grad_in_bands(g));
  const auto x = random_floats(g.N * g.C * g.hw(), 15), w = random_floats(g.K * g.crs(), 16),
             b = random_floats(g.K, 17), dy = random_floats(g.N * g.K * g.pq(), 18);
  check_thread_independence(g, winograd(g, x, w, b, dy), x, w, b, dy);
}

TEST_CASE("conv2d Winograd: where conv2d dispatches to it, and the error where it does not apply") {
  namespace kc = kernels::cpu;
  const char* v = std::getenv("CRFSEG_CONV_WINOGRAD");
  if (!(v && std::string(v) == "0")) {
    // The U-Net's 64-channel and deeper 3x3 layers, batch 4.
    CHECK(kc::conv2d_forward_takes_winograd(make3x3(4, 64, 256, 256, 64, 1)));
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(4, 1024, 16, 16, 1024, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 128, 128, 128, 128, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_direct(make3x3(4, 64, 256, 256, 64, 1)));
    // Too few channels, too small an output, too little work; the weight
    // gradient in bands from 64 channels, over the whole batch from 128
    // channels and 16 x 16 outputs.
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(4, 3, 256, 256, 64, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(1, 64, 24, 24, 64, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(1, 512, 7, 7, 512, 1)));
    // Small images, batched: 32 tiles over the batch or more (7^2 batch 8),
    // or 16 from 256 channels (7^2 batch 4: 512 yes, 128 no), at most a
    // quarter of their outputs discarded (10^2 computes 12^2: no); the
    // weight gradient only over the whole batch.
    CHECK(kc::conv2d_forward_takes_winograd(make3x3(8, 512, 7, 7, 512, 1)));
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(8, 512, 7, 7, 512, 1)));
    CHECK(kc::conv2d_forward_takes_winograd(make3x3(4, 512, 7, 7, 512, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(4, 128, 7, 7, 128, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(2, 512, 7, 7, 512, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 2048, 8, 8, 1024, 1)));
    CHECK_FALSE(kc::conv2d_forward_takes_winograd(make3x3(4, 256, 10, 10, 256, 1)));
    // The backward-input pays from 128 channels and 16 tiles (conv2d.cpp,
    // winograd_backward_input_wins), and unbatched from 10 x 10 outputs;
    // not on 8 x 8 outputs of one image, nor on few tiles of 64 channels.
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(4, 256, 10, 10, 256, 1)));
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(4, 256, 7, 7, 256, 1)));
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(1, 128, 14, 14, 128, 1)));
    CHECK(kc::conv2d_backward_input_takes_winograd(make3x3(1, 64, 16, 16, 64, 1)));
    CHECK_FALSE(kc::conv2d_backward_input_takes_winograd(make3x3(1, 64, 8, 8, 128, 1)));
    CHECK_FALSE(kc::conv2d_backward_input_takes_winograd(make3x3(4, 64, 8, 8, 64, 1)));
    // The weight gradient over the whole batch below 2^28 multiply-adds:
    // from 128 channels at 16 x 16 outputs; 64 channels with 32 tiles, at
    // most a quarter of their outputs discarded; folded from 14 x 14.
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 128, 16, 16, 128, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(1, 128, 16, 16, 128, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(1, 64, 32, 32, 64, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(1, 64, 16, 16, 64, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(1, 64, 17, 17, 64, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(2, 64, 14, 14, 64, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 128, 14, 14, 128, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 128, 12, 12, 128, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(1, 128, 14, 14, 128, 1)));
    CHECK(kc::conv2d_forward_takes_winograd(make3x3(8, 256, 14, 14, 256, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(8, 512, 14, 14, 512, 1)));  // whole batch
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(8, 256, 14, 14, 256, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(8, 256, 8, 8, 256, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(8, 512, 8, 8, 512, 1)));
    // Bands need 32 tiles per image: 14^2 (16) and 16^2 run over the whole batch, 28^2 (49) in bands.
    CHECK_FALSE(kc::conv2d_winograd_weight_grad_in_bands(make3x3(8, 256, 14, 14, 256, 1)));
    CHECK_FALSE(kc::conv2d_winograd_weight_grad_in_bands(make3x3(4, 256, 16, 16, 256, 1)));
    CHECK(kc::conv2d_winograd_weight_grad_in_bands(make3x3(8, 128, 28, 28, 128, 1)));
    CHECK(kc::conv2d_winograd_weight_grad_in_bands(make3x3(8, 64, 16, 16, 64, 1)));  // 64 channels keep bands
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 256, 16, 16, 256, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 512, 8, 8, 512, 1)));
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 64, 256, 256, 64, 1)));     // in bands
    CHECK(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 512, 32, 32, 512, 1)));     // whole batch
    CHECK(kc::conv2d_winograd_weight_grad_in_bands(make3x3(4, 256, 64, 64, 256, 1)));
    CHECK_FALSE(kc::conv2d_winograd_weight_grad_in_bands(make3x3(4, 512, 32, 32, 512, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(8, 512, 7, 7, 512, 1)));
    CHECK_FALSE(kc::conv2d_weight_grad_takes_winograd(make3x3(4, 48, 64, 64, 48, 1)));
    // Through conv2d_forward / conv2d_backward_* on a dispatched shape.
    const ConvGeometry g = make3x3(1, 128, 24, 20, 128, 1);
    REQUIRE(kc::conv2d_forward_takes_winograd(g));
    const auto x = random_floats(g.N * g.C * g.hw(), 9), w = random_floats(g.K * g.crs(), 10),
               b = random_floats(g.K, 11), dy = random_floats(g.N * g.K * g.pq(), 12);
    std::vector<float> y(dy.size()), got(dy.size(), 7.0f), dx(x.size()), dx_got(x.size(), 7.0f);
    kernels::ref::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data());
    kc::conv2d_forward<float>(g, x.data(), w.data(), b.data(), got.data());
    CHECK_CLOSE(as_double(got), as_double(y), 1e-3, 1e-4);
    kernels::ref::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data());
    kc::conv2d_backward_input<float>(g, dy.data(), w.data(), dx_got.data());
    CHECK_CLOSE(as_double(dx_got), as_double(dx), 1e-3, 1e-4);
  }
  ConvGeometry five = make3x3(1, 2, 9, 9, 2, 1);
  five.R = five.S = 5;
  five.P = five.Q = 7;
  std::vector<float> x(2 * 81), w(2 * 2 * 25), y(2 * 49);
  CHECK_FALSE(kc::conv2d_winograd_applies(five));
  CHECK_THROWS_WITH_AS(kc::conv2d_winograd_forward(five, x.data(), w.data(), nullptr, y.data()),
                       doctest::Contains("conv2d_winograd_forward: expected a 3x3 kernel"), NotImplementedError);
  ConvGeometry strided = make3x3(1, 2, 9, 9, 2, 1);
  strided.sh = strided.sw = 2;
  strided.P = strided.Q = 5;
  CHECK_THROWS_WITH_AS(kc::conv2d_winograd_backward_weight(strided, y.data(), x.data(), w.data()),
                       doctest::Contains("got 3x3, stride 2x2"), NotImplementedError);
}
