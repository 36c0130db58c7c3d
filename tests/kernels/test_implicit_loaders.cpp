// The implicit-GEMM convolution's loaders and epilogues
// (kernels/cuda/implicit_loaders.h, gemm/tiled_loaders.h), checked on the
// CPU: each pass runs as the CUDA driver in conv2d_implicit.cu sets it up
// (implicit_loaders.h's forward_pass, weight_grad_pass, scatter_pass),
// through an emulation of the tile kernels' data flow (every block's
// every slice loaded by all 256 threads' calls of the loaders, each slot
// placed where the kernels' shared-memory stores place it, the slice's
// product added, then the epilogue), and must give the reference
// convolution's result exactly (small integers). Both kernels' slice
// depths (16: the FP32 tiles; 32: the BF16 tensor-core tiles) and tile
// heights (64, 128). What this leaves to the device tests (tests/cuda):
// the kernels' shared-memory layouts and products themselves (v4's, run on
// an H100; tiled_bf16's, emulated in test_tiled_bf16_rules.cpp), and the
// launches.
#ifdef CRFSEG_WITH_CUDA

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled_bf16_rules.h"
#include "kernels/cuda/gemm/tiled_loaders.h"
#include "kernels/cuda/gemm/tiled_rules.h"
#include "kernels/cuda/im2col_rules.h"
#include "kernels/cuda/implicit_loaders.h"
#include "kernels/ref/conv2d.h"
#include "tests/support/helpers.h"

namespace kc = crfseg::kernels::cuda;
namespace tl = crfseg::kernels::cuda::tiled;
namespace im = crfseg::kernels::cuda::implicit;
using crfseg::kernels::ConvGeometry;

namespace {

// The tile kernels' data flow over an M x N product of depth `depth`, in
// `chunks` chunks of `chunk` (blockIdx.z): out_of(z) is chunk z's epilogue.
template <int kTileM, int BK, class LoadA, class LoadB, class OutOf>
void emulate_tiles(const LoadA& a, const LoadB& b, OutOf out_of, int64_t depth, int64_t chunk, int64_t chunks) {
  constexpr int kN = tl::kTileN, kThreads = tl::kThreads;
  constexpr int kSlotsA = kTileM * BK / 4 / kThreads, kSlotsB = kN * BK / 4 / kThreads;
  const int64_t M = a.rows(), N = b.cols();
  for (int64_t z = 0; z < chunks; ++z) {
    const auto out = out_of(z);
    const int64_t k_begin = z * chunk, k_end = std::min(depth, k_begin + chunk);
    for (int64_t m0 = 0; m0 < M; m0 += kTileM) {
      for (int64_t n0 = 0; n0 < N; n0 += kN) {
        std::vector<double> acc(static_cast<size_t>(kTileM * kN), 0.0);
        for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
          std::vector<float> As(static_cast<size_t>(BK * kTileM)), Bs(static_cast<size_t>(BK * kN));
          std::vector<int> hits_a(As.size(), 0), hits_b(Bs.size(), 0);
          for (int t = 0; t < kThreads; ++t) {
            float4 ra[kSlotsA], rb[kSlotsB];
            a.template load<kTileM, BK, kSlotsA>(m0, k0, t, ra);
            b.template load<kN, BK, kSlotsB>(n0, k0, t, rb);
            // As the kernels store them: slot i's four values from
            // slot_origin(t + i kThreads), along the depth when kContig.
            auto place = [](auto contig, const float4& v, tl::TilePosition o, int rows, std::vector<float>& xs,
                            std::vector<int>& hits) {
              const float e[4] = {v.x, v.y, v.z, v.w};
              for (int j = 0; j < 4; ++j) {
                const int r = decltype(contig)::value ? o.m : o.m + j, k = decltype(contig)::value ? o.n + j : o.n;
                xs[static_cast<size_t>(k * rows + r)] = e[j];
                ++hits[static_cast<size_t>(k * rows + r)];
              }
            };
            for (int i = 0; i < kSlotsA; ++i) {
              place(std::bool_constant<LoadA::kContig>{}, ra[i],
                    tl::slot_origin<LoadA::kContig, kTileM, BK>(t + i * kThreads), kTileM, As, hits_a);
            }
            for (int i = 0; i < kSlotsB; ++i) {
              place(std::bool_constant<LoadB::kContig>{}, rb[i],
                    tl::slot_origin<LoadB::kContig, kN, BK>(t + i * kThreads), kN, Bs, hits_b);
            }
          }
          // Every value of both slices placed exactly once.
          REQUIRE(std::count(hits_a.begin(), hits_a.end(), 1) == static_cast<std::ptrdiff_t>(hits_a.size()));
          REQUIRE(std::count(hits_b.begin(), hits_b.end(), 1) == static_cast<std::ptrdiff_t>(hits_b.size()));
          for (int k = 0; k < BK; ++k) {
            for (int m = 0; m < kTileM; ++m) {
              for (int n = 0; n < kN; ++n) {
                acc[static_cast<size_t>(m * kN + n)] += static_cast<double>(As[static_cast<size_t>(k * kTileM + m)]) *
                                                        Bs[static_cast<size_t>(k * kN + n)];
              }
            }
          }
        }
        for (int m = 0; m < kTileM && m0 + m < M; ++m) {
          for (int n = 0; n < kN && n0 + n < N; ++n) out(m0 + m, n0 + n, static_cast<float>(acc[m * kN + n]));
        }
      }
    }
  }
}

std::vector<float> small_ints(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint32_t s = seed;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int>(s >> 29) - 4);  // -4 .. 3
  }
  return v;
}

int count_wrong(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  int wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != want[i];
  return wrong;
}

// The forward as tiled_forward sets it up (forward_pass).
template <int kTileM, int BK>
std::vector<float> forward(const ConvGeometry& g, const std::vector<float>& x, const std::vector<float>& w,
                           const float* bias) {
  std::vector<float> y(static_cast<size_t>(g.N * g.K * g.pq()), 1e9f);
  const im::ForwardPass p = im::forward_pass(g, x.data(), w.data(), bias, y.data(), "test");
  CHECK((p.M == g.K && p.N == g.N * g.pq() && p.depth == g.crs()));
  CHECK((p.M == p.a.rows() && p.N == p.b.cols()));  // the kernels bound their stores by the loaders' sizes
  emulate_tiles<kTileM, BK>(p.a, p.b, [&](int64_t) { return p.out; }, p.depth, tl::whole_slices(p.depth, BK), 1);
  return y;
}

// The weight gradient as tiled_weight_grad sets it up (weight_grad_pass),
// its depth (N P Q) split as weight_grad_split splits it, or (wanted_chunks
// > 0) in about that many chunks of whole slices of either kernel; chunk
// z's sums at sums + z K C R S (on the device PartialOut finds z in
// blockIdx.z), added in chunk order.
template <int kTileM, int BK>
std::vector<float> weight_grad(const ConvGeometry& g, const std::vector<float>& dy, const std::vector<float>& x,
                               int64_t wanted_chunks) {
  const int64_t per = g.K * g.crs(), depth = g.N * g.pq();
  const im::WeightGradSplit split = im::weight_grad_split(g);
  const int64_t chunk = wanted_chunks > 0
                            ? tl::whole_slices((depth + wanted_chunks - 1) / wanted_chunks, tl::kBf16Depth)
                            : split.chunk;
  const int64_t chunks = wanted_chunks > 0 ? std::max<int64_t>((depth + chunk - 1) / chunk, 1) : split.chunks;
  CHECK(chunk % BK == 0);                                      // no slice straddles two chunks
  CHECK((chunks * chunk >= depth && (chunks - 1) * chunk < std::max<int64_t>(depth, 1)));  // no chunk empty
  std::vector<float> sums(static_cast<size_t>(chunks * per), 1e9f);
  const im::WeightGradPass p = im::weight_grad_pass(g, dy.data(), x.data(), sums.data(), "test");
  CHECK((p.M == g.K && p.N == g.crs() && p.depth == depth));
  CHECK((p.M == p.a.rows() && p.N == p.b.cols()));
  emulate_tiles<kTileM, BK>(p.a, p.b, [&](int64_t z) { return im::PartialOut{p.out.out + z * p.out.stride, p.out.ld, p.out.stride}; },
                            p.depth, chunk, chunks);
  std::vector<float> dw(static_cast<size_t>(per), 0.0f);
  for (int64_t z = 0; z < chunks; ++z) {
    for (size_t i = 0; i < dw.size(); ++i) dw[i] += sums[static_cast<size_t>(z * per) + i];
  }
  return dw;
}

// The scattered backward-input as tiled_backward_input_scatter sets it up
// (scatter_pass; dx zeroed first unless the windows cover it).
template <int kTileM, int BK>
std::vector<float> backward_input_scatter(const ConvGeometry& g, const std::vector<float>& dy,
                                          const std::vector<float>& w) {
  std::vector<float> dx(static_cast<size_t>(g.N * g.C * g.hw()), kc::scatter_covers(g) ? 1e9f : 0.0f);
  const im::ScatterPass p = im::scatter_pass(g, dy.data(), w.data(), dx.data(), "test");
  CHECK((p.M == g.crs() && p.N == g.N * g.pq() && p.depth == g.K));
  CHECK((p.M == p.a.rows() && p.N == p.b.cols()));
  emulate_tiles<kTileM, BK>(p.a, p.b, [&](int64_t) { return p.out; }, p.depth, tl::whole_slices(p.depth, BK), 1);
  return dx;
}

ConvGeometry geometry(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh,
                      int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  ConvGeometry g{N, C, H, W, K, R, S, (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, (W + 2 * pw - dw * (S - 1) - 1) / sw + 1};
  g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  return g;
}

template <int kTileM, int BK>
void check_passes(const ConvGeometry& g) {
  CAPTURE(kTileM);
  CAPTURE(BK);
  const std::vector<float> x = small_ints(g.N * g.C * g.hw(), 3), w = small_ints(g.K * g.crs(), 5),
                           dy = small_ints(g.N * g.K * g.pq(), 7), bias = small_ints(g.K, 11);
  namespace ref = crfseg::kernels::ref;

  std::vector<float> want(static_cast<size_t>(g.N * g.K * g.pq()));
  ref::conv2d_forward<float>(g, x.data(), w.data(), bias.data(), want.data());
  CHECK(count_wrong(forward<kTileM, BK>(g, x, w, bias.data()), want) == 0);

  std::vector<float> want_dw(static_cast<size_t>(g.K * g.crs()));
  ref::conv2d_backward_weight<float>(g, dy.data(), x.data(), want_dw.data());
  for (int64_t chunks : {0, 1, 3}) {  // 0: the driver's own split
    CAPTURE(chunks);
    CHECK(count_wrong(weight_grad<kTileM, BK>(g, dy, x, chunks), want_dw) == 0);
  }

  std::vector<float> want_dx(static_cast<size_t>(g.N * g.C * g.hw()));
  ref::conv2d_backward_input<float>(g, dy.data(), w.data(), want_dx.data());
  if (kc::backward_input_as_forward(g)) {  // the forward of the flipped, transposed filters
    std::vector<float> flipped(w.size());
    for (int64_t k = 0; k < g.K; ++k) {
      for (int64_t c = 0; c < g.C; ++c) {
        for (int64_t rs = 0; rs < g.R * g.S; ++rs) {
          flipped[static_cast<size_t>((c * g.K + k) * g.R * g.S + (g.R * g.S - 1 - rs))] =
              w[static_cast<size_t>((k * g.C + c) * g.R * g.S + rs)];
        }
      }
    }
    CHECK(count_wrong(forward<kTileM, BK>(kc::backward_input_forward_geometry(g), dy, flipped, nullptr), want_dx) == 0);
  }
  if (kc::backward_input_as_scatter(g)) {
    CHECK(count_wrong(backward_input_scatter<kTileM, BK>(g, dy, w), want_dx) == 0);
  }
}

}  // namespace

TEST_CASE("implicit conv loaders: every pass through the emulated tile kernels gives the reference") {
  const ConvGeometry shapes[] = {
      geometry(2, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1),      // P Q = 49: pixels located one by one
      geometry(3, 2, 8, 6, 70, 3, 3, 1, 1, 1, 1, 1, 1),     // P Q = 48: four at a time; 70 rows of tiles
      geometry(2, 17, 13, 13, 9, 3, 3, 1, 1, 1, 1, 1, 1),   // C R S = 153: several slices
      geometry(2, 3, 11, 9, 4, 3, 2, 2, 1, 2, 0, 2, 1),     // strides, dilations, uneven padding
      geometry(2, 5, 8, 6, 3, 2, 2, 2, 2, 0, 0, 1, 1),      // 2x2 stride 2: the scattered backward-input
      geometry(1, 6, 9, 7, 2, 2, 2, 2, 2, 0, 0, 1, 1),      // ... whose windows miss the last row and column
      geometry(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1),      // one pixel
      geometry(1, 4, 5, 3, 131, 1, 1, 1, 1, 0, 0, 1, 1),    // 1x1, 131 output channels (a partial 128-row tile)
      geometry(2, 2, 40, 41, 3, 3, 3, 1, 1, 1, 1, 1, 1),    // N P Q = 3280: the driver splits the weight gradient
  };
  for (const ConvGeometry& g : shapes) {
    CAPTURE(g.N);
    CAPTURE(g.C);
    CAPTURE(g.H);
    CAPTURE(g.W);
    CAPTURE(g.K);
    CAPTURE(g.R);
    CAPTURE(g.S);
    CAPTURE(g.sh);
    if (g.N * g.pq() >= 2 * im::kMinChunk) CHECK(im::weight_grad_split(g).chunks > 1);  // the split is exercised
    check_passes<64, 16>(g);
    check_passes<128, 16>(g);
    check_passes<64, tl::kBf16Depth>(g);
    check_passes<128, tl::kBf16Depth>(g);
  }
}

#endif  // CRFSEG_WITH_CUDA
