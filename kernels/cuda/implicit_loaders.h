// The implicit-GEMM convolution's operands and epilogues for the tile
// kernels (conv2d_implicit.cu): the im2col matrix gathered from the input
// slice by slice, the output gradient as the weight gradient's A, and the
// stores of the forward, the weight gradient's chunks and the scattered
// backward-input. Host-device code, so the CPU test
// (tests/kernels/test_implicit_loaders.cpp) runs these same loaders and
// stores through an emulation of the kernels' data flow against the
// reference convolution.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled_bf16_rules.h"
#include "kernels/cuda/gemm/tiled_loaders.h"
#include "kernels/cuda/gemm/tiled_rules.h"
#include "kernels/cuda/im2col_rules.h"
#include "kernels/hd.h"

namespace crfseg::kernels::cuda::implicit {

// The im2col matrix X [C R S, N P Q] of a convolution, row (c, r, s),
// column (image, p, q), gathered from x as the tiled kernel loads each
// slice, never stored. Each slot is four consecutive pixels of one row:
// where P Q is a multiple of 4 they lie in one image (slots start at
// multiples of 4) and one im2col_values call gathers them; otherwise each
// pixel finds its image. kPixelsAlongK: X is the GEMM's B [depth, N] with
// its pixels along the depth (the weight gradient: store_slice<true>);
// else its rows along the depth (the forward: store_slice<false>).
template <bool kPixelsAlongK>
struct GatherColumns {
  static constexpr bool kContig = kPixelsAlongK;
  const float* __restrict__ x;
  Geometry32 g;                         // one image: C channels of H x W, the kernel, stride, padding, dilation
  int64_t rows, pixels, pq, plane;      // C R S, N P Q, P Q, H W
  bool quads;                           // P Q % 4 == 0
  CRFSEG_HD int64_t cols() const { return kPixelsAlongK ? rows : pixels; }
  // Four consecutive pixels from `pixel`, located once for all of a
  // thread's slots (they share them: tiled_rules.h, slots_share_position):
  // where P Q % 4 == 0 (the four in one image) their image and the first's
  // output row and column.
  struct Pixels {
    int64_t pixel, image;
    int p, q;
  };
  CRFSEG_HD_INLINE Pixels locate(int64_t pixel) const {
    Pixels at{pixel, 0, 0, 0};
    if (quads && pixel < pixels) {
      at.image = quotient(pixel, pq);
      const int i = static_cast<int>(pixel - at.image * pq);
      at.p = i / g.Q, at.q = i - at.p * g.Q;
    }
    return at;
  }
  // X[row, at.pixel .. + 3] (zeros past the matrix).
  CRFSEG_HD_INLINE float4 four(int64_t row, const Pixels& at) const {
    float e[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (row < rows && at.pixel < pixels) {
      const ColumnRow cr = column_row(row, g);
      if (quads) {
        im2col_values_at(x + (at.image * g.C + cr.c) * plane, g, cr.r, cr.s, at.p, at.q, 4, e);
      } else {
        for (int j = 0; j < 4 && at.pixel + j < pixels; ++j) {
          const int64_t image = quotient(at.pixel + j, pq);
          im2col_values(x + (image * g.C + cr.c) * plane, g, cr.r, cr.s, static_cast<int>(at.pixel + j - image * pq),
                        1, e + j);
        }
      }
    }
    return make_float4(e[0], e[1], e[2], e[3]);
  }
  // The slots of tiled_rules.h's slot_origin: four pixels along the depth
  // (kContig) or along the GEMM's columns, from (column n0 + m, depth k0 +
  // n); the depth is X's rows unless kPixelsAlongK.
  template <int kTile, int BK, int kSlots>
  CRFSEG_HD_INLINE void load(int64_t n0, int64_t k0, int t, float4 (&reg)[kSlots]) const {
    static_assert(tiled::slots_share_position<kPixelsAlongK, kTile, BK>(), "a thread's slots share their pixels");
    const tiled::TilePosition first = tiled::slot_origin<kPixelsAlongK, kTile, BK>(t);
    const Pixels at = locate(kPixelsAlongK ? k0 + first.n : n0 + first.m);
CRFSEG_UNROLL
    for (int i = 0; i < kSlots; ++i) {
      const tiled::TilePosition o = tiled::slot_origin<kPixelsAlongK, kTile, BK>(t + i * tiled::kThreads);
      reg[i] = four(kPixelsAlongK ? n0 + o.m : k0 + o.n, at);
    }
  }
};

// The output gradient as the weight gradient's A [K, N P Q]: row k, depth
// (image, pq) at g[image, k, pq]; slots of four pixels (store_slice<true>),
// 16-byte loads where P Q is a multiple of 4 and g is aligned.
struct GatherGrad {
  static constexpr bool kContig = true;
  const float* __restrict__ grad;
  int64_t K, pixels, pq;
  bool vec;
  CRFSEG_HD int64_t rows() const { return K; }
  template <int kTile, int BK, int kSlots>
  CRFSEG_HD_INLINE void load(int64_t m0, int64_t k0, int t, float4 (&reg)[kSlots]) const {
    // A thread's slots share their four pixels (slots_share_position):
    // their image is found once.
    static_assert(tiled::slots_share_position<kContig, kTile, BK>(), "a thread's slots share their pixels");
    const int64_t pixel = k0 + tiled::slot_origin<kContig, kTile, BK>(t).n;
    const int64_t image = vec && pixel < pixels ? quotient(pixel, pq) : 0;
CRFSEG_UNROLL
    for (int i = 0; i < kSlots; ++i) {
      const int64_t k = m0 + tiled::slot_origin<kContig, kTile, BK>(t + i * tiled::kThreads).m;
      float e[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (k < K && pixel < pixels) {
        if (vec) {
          reg[i] = tiled::load_ro(reinterpret_cast<const float4*>(grad + (image * K + k) * pq + (pixel - image * pq)));
          continue;
        }
        for (int j = 0; j < 4 && pixel + j < pixels; ++j) {
          const int64_t image = quotient(pixel + j, pq);
          e[j] = tiled::load_ro(grad + (image * K + k) * pq + (pixel + j - image * pq));
        }
      }
      reg[i] = make_float4(e[0], e[1], e[2], e[3]);
    }
  }
};

// Chunk z's sums of the weight gradient: out[z stride + k ld + crs] (the
// gradient itself when there is one chunk).
// The chunk is blockIdx.z on the device; on the host (the CPU emulation of
// the kernels in tests/kernels/test_implicit_loaders.cpp), chunk 0: the
// emulation hands each chunk a copy with `out` moved to that chunk's sums.
struct PartialOut {
  float* __restrict__ out;
  int64_t ld, stride;
  CRFSEG_HD_INLINE void operator()(int64_t k, int64_t crs, float v) const {
#ifdef __CUDA_ARCH__
    const int64_t z = blockIdx.z;
#else
    const int64_t z = 0;
#endif
    out[z * stride + k * ld + crs] = v;
  }
};

// y[image, k, pq] = v (+ bias[k]) for GEMM row k and column n = (image, pq).
struct ConvOut {
  float* __restrict__ y;
  const float* __restrict__ bias;
  int64_t K, pq;
  CRFSEG_HD_INLINE void operator()(int64_t k, int64_t n, float v) const {
    const int64_t image = quotient(n, pq);
    y[(image * K + k) * pq + (n - image * pq)] = bias != nullptr ? v + bias[k] : v;
  }
};

// dx at scatter_offset(m, n) = v: a backward-input whose windows do not
// overlap (im2col_rules.h, backward_input_as_scatter).
struct ScatterOut {
  float* __restrict__ dx;
  Geometry32 g;
  CRFSEG_HD_INLINE void operator()(int64_t m, int64_t n, float v) const { dx[scatter_offset(m, n, g)] = v; }
};

constexpr int kDepthStep = 16;  // the FP32 tile kernel's slice depth (BK); the BF16 one's is tiled::kBf16Depth

// Rows of the output-channel tiles: 64 when there are at most 64 channels
// (a 128-row tile would idle half its threads), else 128.
constexpr int64_t tile_rows(int64_t K) { return K <= 64 ? 64 : 128; }

// The weight gradient's split of its depth (N P Q pixels, often a million)
// into chunks of whole slices of either kernel (kSplitStep, a multiple of
// both kernels' slice depths): enough chunks for about kWeightGradBlocks
// blocks in all, each at least kMinChunk deep. A function of the geometry
// alone (not of the device), so the sums' order, and the result, are the
// same everywhere.
constexpr int64_t kWeightGradBlocks = 264, kMinChunk = 1024, kSplitStep = tiled::kBf16Depth;
static_assert(kSplitStep % kDepthStep == 0);
struct WeightGradSplit {
  int64_t chunk, chunks;
};
inline WeightGradSplit weight_grad_split(const ConvGeometry& g) {
  const int64_t depth = g.N * g.pq(), rows = tile_rows(g.K);
  const int64_t tiles = ((g.K + rows - 1) / rows) * ((g.crs() + tiled::kTileN - 1) / tiled::kTileN);
  const int64_t wanted = std::clamp<int64_t>((kWeightGradBlocks + tiles - 1) / std::max<int64_t>(tiles, 1), 1,
                                             std::max<int64_t>(depth / kMinChunk, 1));
  int64_t chunk = (depth + wanted - 1) / wanted;
  chunk = tiled::whole_slices(chunk, kSplitStep);
  return {chunk, std::max<int64_t>((depth + chunk - 1) / chunk, 1)};
}

// Each tiled pass as conv2d_implicit.cu launches it (and the CPU test
// emulates it): the product M x N of depth `depth`, its loaders and its
// epilogue. Host code.
template <class LoadA, class LoadB, class Out>
struct Pass {
  LoadA a;
  LoadB b;
  Out out;
  int64_t M, N, depth;
};

// The forward: M = K output channels, N = N P Q pixels, depth C R S; A the
// weights [K][C R S], B the im2col matrix gathered from x.
using ForwardPass = Pass<tiled::Stored<true>, GatherColumns<false>, ConvOut>;
inline ForwardPass forward_pass(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                                const char* name) {
  const int64_t CRS = g.crs(), PQ = g.pq(), cols = g.N * PQ;
  return {{{w, CRS, g.K, CRS, CRS % 4 == 0 && aligned16(w)}},
          {x, narrow(g, name), CRS, cols, PQ, g.hw(), PQ % 4 == 0},
          {y, bias, g.K, PQ},
          g.K,
          cols,
          CRS};
}

// The weight gradient: dW [K, C R S] = G [K, N P Q] X^T, M = K, N = C R S,
// depth N P Q; A the output gradient, B the im2col matrix with its pixels
// along the depth; chunk z's sums at sums + z K C R S.
using WeightGradPass = Pass<GatherGrad, GatherColumns<true>, PartialOut>;
inline WeightGradPass weight_grad_pass(const ConvGeometry& g, const float* grad, const float* x, float* sums,
                                       const char* name) {
  const int64_t CRS = g.crs(), PQ = g.pq(), depth = g.N * PQ;
  return {{grad, g.K, depth, PQ, PQ % 4 == 0 && aligned16(grad)},
          {x, narrow(g, name), CRS, depth, PQ, g.hw(), PQ % 4 == 0},
          {sums, CRS, g.K * CRS},
          g.K,
          CRS,
          depth};
}

// The backward-input of a layer whose windows do not overlap
// (backward_input_as_scatter): dx rows (c, r, s) by columns (image, p, q)
// = W^T G, M = C R S, N = N P Q, depth K, each product scattered to its
// own pixel; G read as a 1x1 convolution's im2col matrix.
using ScatterPass = Pass<tiled::Stored<false>, GatherColumns<false>, ScatterOut>;  // A(m, k) = W[k, m]
inline ScatterPass scatter_pass(const ConvGeometry& g, const float* grad, const float* w, float* dx,
                                const char* name) {
  const int64_t CRS = g.crs(), PQ = g.pq(), cols = g.N * PQ;
  const ConvGeometry pointwise{g.N, g.K, g.P, g.Q, 1, 1, 1, g.P, g.Q};  // G as a 1x1 convolution's input
  return {{{w, CRS, CRS, g.K, CRS % 4 == 0 && aligned16(w)}},
          {grad, narrow(pointwise, name), g.K, cols, PQ, PQ, PQ % 4 == 0},
          {dx, narrow(g, name)},
          CRS,
          cols,
          g.K};
}

}  // namespace crfseg::kernels::cuda::implicit
