// Winograd F(m x m, 3x3) convolution, m = 2 or 4 (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2015): the per-tile rules
// of the CUDA path (conv2d_winograd.cu), in host-device code so that
// tests/kernels/test_conv2d.cpp runs the whole algorithm on the CPU against
// the reference convolution, device or not.
//
// A 3x3, stride-1, undilated convolution computes each m x m block of
// outputs from the a x a input tile under it (a = m + 2). In one
// dimension, F(2, 3) gives y0 = d0 g0 + d1 g1 + d2 g2 and
// y1 = d1 g0 + d2 g1 + d3 g2 from four products instead of six:
//   m0 = (d0 - d2) g0           m1 = (d1 + d2) (g0 + g1 + g2) / 2
//   m2 = (d2 - d1) (g0 - g1 + g2) / 2                m3 = (d1 - d3) g2
//   y0 = m0 + m1 + m2           y1 = m1 - m2 - m3
// i.e. y = A^T [(G g) . (B^T d)] with the matrices of winograd_coef (F(4,
// 3): six products for four outputs, interpolation points 0, +-1, +-2 and
// infinity, as the CPU path uses). Nested in two dimensions, a tile's a^2
// products (xi, nu) replace 9 m^2 multiply-adds, and summed over channels
// each (xi, nu) is a matrix product: M[xi nu][k][t] = sum_c U[xi nu][k][c]
// V[xi nu][c][t], where U = G w G^T (per filter), V = B^T d B (per input
// tile t), and the outputs are Y = A^T M A. The a^2 products are one
// batched GEMM with 9 m^2 / a^2 fewer multiply-adds than im2col's (2.25x
// for m = 2, 4x for m = 4), and V holds a^2 / m^2 values per input pixel
// (4 or 2.25) where im2col's columns hold 9.
//
// Backward-input is a forward of the same kind: dx = conv(g, w') with
// w'[c][k][r][s] = w[k][c][2 - r][2 - s] and padding 2 - p
// (winograd_backward_input_geometry).
//
// The weight gradient is F(3x3, m x m), the same identity read another
// way: a tile's contribution dW_t[r][s] = sum_ab E[a][b] D[a + r][b + s]
// (E the tile's m x m block of the output gradient, D its input tile) is
// the gradient of the trilinear form sum_ab y[a][b] E[a][b] with respect
// to the filter, so dW_t = G^T [(A E A^T) . (B^T D B)] G. Summed over tiles
// and images, dW[k][c] = G^T M[k][c] G with M[xi][k][c] = sum_t
// E'[xi][k][t] V[xi][c][t]: again a^2 GEMMs, here reducing over the tiles.
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/ref/conv2d.h"
#include "tensor/error.h"

// Unrolled loops, so that the constant matrices' zero terms drop out:
// nvcc's device pass, plain C++ compilers (the CPU tests); nvcc's host pass
// knows neither spelling and compiles host copies that .cu files never call.
#if defined(__CUDA_ARCH__)
#define CRFSEG_WINOGRAD_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define CRFSEG_WINOGRAD_UNROLL
#else
#define CRFSEG_WINOGRAD_UNROLL _Pragma("GCC unroll 8")
#endif

namespace crfseg::kernels::cuda {

// A geometry's Winograd tiling, per image, in 32 bits: TP x TQ tiles of
// m x m outputs (the last row or column of tiles is cut where m does not
// divide P or Q).
struct WinogradPlan {
  int C, K, H, W, P, Q, ph, pw, TP, TQ;
  CRFSEG_HD int tiles() const { return TP * TQ; }
};

// Which convolutions the Winograd path takes: 3x3, stride 1, no
// dilation, padding at most 2 (so that backward-input's padding 2 - p is
// one too), planes within 32-bit indices.
inline bool winograd_applies(const ConvGeometry& g) {
  constexpr int64_t kLimit = int64_t{1} << 30;
  return g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.ph >= 0 && g.ph <= 2 &&
         g.pw >= 0 && g.pw <= 2 && g.P == g.H + 2 * g.ph - 2 && g.Q == g.W + 2 * g.pw - 2 && g.P >= 1 &&
         g.Q >= 1 && g.C >= 1 && g.K >= 1 && g.C < kLimit && g.K < kLimit && g.hw() < kLimit &&
         g.pq() < kLimit;
}

// The tiling with m x m output tiles (m = 2 or 4).
inline WinogradPlan winograd_plan(const ConvGeometry& g, int m, const char* what) {
  CRFSEG_CHECK(m == 2 || m == 4, ValueError, what, ": Winograd output tiles are 2x2 or 4x4, got ", m, "x", m);
  CRFSEG_CHECK(winograd_applies(g), NotImplementedError, what, ": Winograd F(", m, "x", m, ", 3x3) takes 3x3 ",
               "kernels at stride 1 without dilation and padding up to 2, got ", g.R, "x", g.S, " stride ", g.sh, "x",
               g.sw, " dilation ", g.dh, "x", g.dw, " padding ", g.ph, "x", g.pw, " on ", g.H, "x", g.W, " -> ", g.P,
               "x", g.Q);
  const auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {i32(g.C),  i32(g.K),  i32(g.H),  i32(g.W),           i32(g.P),
          i32(g.Q),  i32(g.ph), i32(g.pw), i32((g.P + m - 1) / m), i32((g.Q + m - 1) / m)};
}

// The forward convolution whose output is g's input gradient: g's output
// gradient [N, K, P, Q] convolved with the flipped, transposed filters.
inline ConvGeometry winograd_backward_input_geometry(const ConvGeometry& g) {
  ConvGeometry b;
  b.N = g.N, b.C = g.K, b.H = g.P, b.W = g.Q;
  b.K = g.C, b.R = 3, b.S = 3, b.P = g.H, b.Q = g.W;
  b.ph = 2 - g.ph, b.pw = 2 - g.pw;
  return b;
}

// The transforms' constant matrices: B^T [a x a], G [a x 3], A^T [m x a].
enum class WinogradMatrix { BT, G, AT };
template <int kM>
CRFSEG_HD constexpr double winograd_coef(WinogradMatrix matrix, int i, int j) {
  if constexpr (kM == 2) {
    constexpr double bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    constexpr double g[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    constexpr double at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
    return matrix == WinogradMatrix::BT ? bt[i][j] : matrix == WinogradMatrix::G ? g[i][j] : at[i][j];
  } else {
    static_assert(kM == 4, "Winograd tiles are 2x2 or 4x4");
    constexpr double bt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                 {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
    constexpr double g[6][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    constexpr double at[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
    return matrix == WinogradMatrix::BT ? bt[i][j] : matrix == WinogradMatrix::G ? g[i][j] : at[i][j];
  }
}

// out [Ro x Ro] = L d L^T for the matrix L [Ro x Ci], or, when
// kTransposed, out = L^T d L for L [Ci x Ro]. Every transform is one of
// these; L's entries are compile-time constants, so with the loops
// unrolled its zero terms drop out (x * 0 is not 0 for NaN and infinity,
// so the compiler could not drop them itself).
template <int kM, WinogradMatrix kL, bool kTransposed>
CRFSEG_HD constexpr double winograd_l(int i, int j) {
  return kTransposed ? winograd_coef<kM>(kL, j, i) : winograd_coef<kM>(kL, i, j);
}
template <int kM, WinogradMatrix kL, bool kTransposed, int Ro, int Ci, typename T>
CRFSEG_HD inline void winograd_sandwich(const T (&d)[Ci][Ci], T (&out)[Ro][Ro]) {
  T t[Ro][Ci];
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < Ro; ++i) {
    CRFSEG_WINOGRAD_UNROLL for (int j = 0; j < Ci; ++j) {
      T s = T(0);
      CRFSEG_WINOGRAD_UNROLL for (int q = 0; q < Ci; ++q) {
        const double c = winograd_l<kM, kL, kTransposed>(i, q);
        if (c != 0) s += T(c) * d[q][j];
      }
      t[i][j] = s;
    }
  }
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < Ro; ++i) {
    CRFSEG_WINOGRAD_UNROLL for (int j = 0; j < Ro; ++j) {
      T s = T(0);
      CRFSEG_WINOGRAD_UNROLL for (int q = 0; q < Ci; ++q) {
        const double c = winograd_l<kM, kL, kTransposed>(j, q);
        if (c != 0) s += t[i][q] * T(c);
      }
      out[i][j] = s;
    }
  }
}

// The three passes around the GEMM and the weight gradient's two, one call
// per thread (conv2d_winograd.cu runs them as for_each kernels; the CPU
// test runs the same loops). With a = m + 2 and T = images * TP * TQ tiles
// of an image group (tile t of image n at n TP TQ + tp TQ + tq):
//   U  [a^2][K][C]   transformed filters            (winograd_filter_element)
//   V  [a^2][C][T]   transformed input tiles        (winograd_input_element)
//   M  [a^2][K][T] = U[xi] V[xi] for each xi: one batched GEMM
//   y  [images][K][P][Q] from M                     (winograd_output_element)
//   E' [a^2][K][T]   transformed gradient tiles     (winograd_grad_element)
//   Mw [a^2][K][C] = sum over groups of E'[xi] V[xi]^T
//   dw [K][C][3][3] from Mw                         (winograd_filter_grad_element)
// so each thread's a^2 reads or writes are T (or K C) apart, and
// neighbouring threads touch neighbouring addresses.

// Thread o's tile among an image group's `channels` planes of TP x TQ
// tiles: o = (n channels + ch) TP TQ + tile, tile = tp TQ + tq; `at` is its
// column in the [channels][T] matrices (T = images TP TQ).
struct WinogradTileIndex {
  int64_t plane, ch, at;
  int tp, tq;
};
CRFSEG_HD inline WinogradTileIndex winograd_tile_index(int64_t o, const WinogradPlan& p, int64_t channels,
                                                       int64_t images) {
  const int tiles = p.tiles();
  const int64_t plane = o / tiles;
  const int tile = static_cast<int>(o - plane * tiles);
  const int64_t n = plane / channels, ch = plane - n * channels;
  const int tp = tile / p.TQ;
  return {plane, ch, ch * images * tiles + n * tiles + tile, tp, tile - tp * p.TQ};
}

// Filter o = (k, c) of a K x C bank: U[xi][k][c] from w[k][c] (w is [K][C][3][3]),
// or, when `backward` (backward-input's bank: K here is the forward's C,
// C the forward's K), from w[c][k] rotated 180 degrees.
template <int kM, typename T>
CRFSEG_HD inline void winograd_filter_element(int64_t o, const T* w, int64_t K, int64_t C, bool backward, T* U) {
  constexpr int a = kM + 2;
  const int64_t k = o / C, c = o - k * C;
  const T* f = w + (backward ? c * K + k : o) * 9;
  T d[3][3], u[a][a];
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < 9; ++i) d[i / 3][i % 3] = f[backward ? 8 - i : i];
  winograd_sandwich<kM, WinogradMatrix::G, false>(d, u);
  CRFSEG_WINOGRAD_UNROLL for (int xi = 0; xi < a * a; ++xi) U[xi * K * C + o] = u[xi / a][xi % a];
}

// Input tile o = (n, c, tile) of an image group starting at x:
// V[xi][c][n TP TQ + tile] = B^T d B, d the a x a input tile at rows
// m tp - ph .., columns m tq - pw .. (zero outside the plane).
template <int kM, typename T>
CRFSEG_HD inline void winograd_input_element(int64_t o, const T* x, const WinogradPlan& p, int64_t images, T* V) {
  constexpr int a = kM + 2;
  const WinogradTileIndex t = winograd_tile_index(o, p, p.C, images);
  const T* xc = x + t.plane * p.H * p.W;
  const int h0 = kM * t.tp - p.ph, w0 = kM * t.tq - p.pw;
  T d[a][a], v[a][a];
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < a; ++i) {
    const int h = h0 + i;
    const bool row_in = static_cast<unsigned>(h) < static_cast<unsigned>(p.H);
    CRFSEG_WINOGRAD_UNROLL for (int j = 0; j < a; ++j) {
      const int w = w0 + j;
      d[i][j] = row_in && static_cast<unsigned>(w) < static_cast<unsigned>(p.W) ? xc[h * p.W + w] : T(0);
    }
  }
  winograd_sandwich<kM, WinogradMatrix::BT, false>(d, v);
  const int64_t stride = p.C * images * p.tiles();  // one xi's [C][T] matrix
  CRFSEG_WINOGRAD_UNROLL for (int xi = 0; xi < a * a; ++xi) V[xi * stride + t.at] = v[xi / a][xi % a];
}

// Output tile o = (n, k, tile) of an image group: y = A^T M A, its m x m
// outputs (those inside P x Q) into y, the group's [images][K][P][Q], plus
// bias[k] (bias may be null).
template <int kM, typename T>
CRFSEG_HD inline void winograd_output_element(int64_t o, const T* M, const WinogradPlan& p, int64_t images,
                                              const T* bias, T* y) {
  constexpr int a = kM + 2;
  const WinogradTileIndex t = winograd_tile_index(o, p, p.K, images);
  const int64_t stride = p.K * images * p.tiles();  // one xi's [K][T] matrix
  T m[a][a], out[kM][kM];
  CRFSEG_WINOGRAD_UNROLL for (int xi = 0; xi < a * a; ++xi) m[xi / a][xi % a] = M[xi * stride + t.at];
  winograd_sandwich<kM, WinogradMatrix::AT, false>(m, out);
  const T b = bias != nullptr ? bias[t.ch] : T(0);
  T* yp = y + t.plane * p.P * p.Q;
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < kM; ++i) {
    const int row = kM * t.tp + i;
    if (row >= p.P) break;
    CRFSEG_WINOGRAD_UNROLL for (int j = 0; j < kM; ++j) {
      const int col = kM * t.tq + j;
      if (col < p.Q) yp[row * p.Q + col] = out[i][j] + b;
    }
  }
}

// Output-gradient tile o = (n, k, tile) of an image group dy ([images][K][P][Q]):
// E'[xi][k][n TP TQ + tile] = A e A^T, e the tile's m x m block (zero past P, Q).
template <int kM, typename T>
CRFSEG_HD inline void winograd_grad_element(int64_t o, const T* dy, const WinogradPlan& p, int64_t images, T* E) {
  constexpr int a = kM + 2;
  const WinogradTileIndex t = winograd_tile_index(o, p, p.K, images);
  const T* dp = dy + t.plane * p.P * p.Q;
  T e[kM][kM], u[a][a];
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < kM; ++i) {
    CRFSEG_WINOGRAD_UNROLL for (int j = 0; j < kM; ++j) {
      const int row = kM * t.tp + i, col = kM * t.tq + j;
      e[i][j] = row < p.P && col < p.Q ? dp[row * p.Q + col] : T(0);
    }
  }
  winograd_sandwich<kM, WinogradMatrix::AT, true>(e, u);  // (A^T)^T e A^T
  const int64_t stride = p.K * images * p.tiles();  // one xi's [K][T] matrix
  CRFSEG_WINOGRAD_UNROLL for (int xi = 0; xi < a * a; ++xi) E[xi * stride + t.at] = u[xi / a][xi % a];
}

// Filter-gradient element o = (k, c) of a K x C bank: dw[k][c] (3x3) =
// G^T Mw[xi][k][c] G.
template <int kM, typename T>
CRFSEG_HD inline void winograd_filter_grad_element(int64_t o, const T* Mw, int64_t K, int64_t C, T* dw) {
  constexpr int a = kM + 2;
  T m[a][a], f[3][3];
  CRFSEG_WINOGRAD_UNROLL for (int xi = 0; xi < a * a; ++xi) m[xi / a][xi % a] = Mw[xi * K * C + o];
  winograd_sandwich<kM, WinogradMatrix::G, true>(m, f);
  CRFSEG_WINOGRAD_UNROLL for (int i = 0; i < 9; ++i) dw[o * 9 + i] = f[i / 3][i % 3];
}

// Elements of V and M (or V and E') for an image group.
inline int64_t winograd_workspace_elems(const WinogradPlan& p, int m, int64_t images) {
  const int64_t a = m + 2;
  return a * a * (static_cast<int64_t>(p.C) + p.K) * images * p.tiles();
}

}  // namespace crfseg::kernels::cuda

#undef CRFSEG_WINOGRAD_UNROLL
