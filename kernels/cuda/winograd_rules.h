// Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): the per-tile rules of the CUDA
// path (conv2d_winograd.cu), in host-device code so that
// tests/kernels/test_conv2d.cpp runs the whole algorithm on the CPU against
// the reference convolution, device or not.
//
// A 3x3, stride-1, undilated convolution computes each 2x2 block of outputs
// from the 4x4 input tile under it. In one dimension, F(2, 3) gives
// y0 = d0 g0 + d1 g1 + d2 g2 and y1 = d1 g0 + d2 g1 + d3 g2 from four
// products instead of six:
//   m0 = (d0 - d2) g0           m1 = (d1 + d2) (g0 + g1 + g2) / 2
//   m2 = (d2 - d1) (g0 - g1 + g2) / 2                m3 = (d1 - d3) g2
//   y0 = m0 + m1 + m2           y1 = m1 - m2 - m3
// i.e. y = A^T [(G g) . (B^T d)] with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Nested in two dimensions, a tile's 16 products (xi, nu) replace 36
// multiply-adds, and summed over channels each (xi, nu) is a matrix
// product: M[xi nu][k][t] = sum_c U[xi nu][k][c] V[xi nu][c][t], where
// U = G w G^T (per filter), V = B^T d B (per input tile t), and the
// outputs are Y = A^T M A. The 16 products are one batched GEMM with
// 2.25x fewer multiply-adds than im2col's, and V holds 4 values per input
// pixel where im2col's columns hold 9.
//
// Backward-input is a forward of the same kind: dx = conv(g, w') with
// w'[c][k][r][s] = w[k][c][2 - r][2 - s] and padding 2 - p
// (winograd_backward_input_geometry).
//
// The weight gradient is F(3x3, 2x2), the same identity read another way:
// a tile's contribution dW_t[r][s] = sum_ab E[a][b] D[a + r][b + s] (E the
// tile's 2x2 block of the output gradient, D its 4x4 input tile) is the
// gradient of the trilinear form sum_ab y[a][b] E[a][b] with respect to
// the filter, so dW_t = G^T [(A E A^T) . (B^T D B)] G. Summed over tiles
// and images, dW[k][c] = G^T M[k][c] G with M[xi][k][c] = sum_t
// E'[xi][k][t] V[xi][c][t]: again 16 GEMMs, here reducing over the tiles.
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/ref/conv2d.h"
#include "tensor/error.h"

namespace crfseg::kernels::cuda {

// A geometry's Winograd tiling, per image, in 32 bits: TP x TQ tiles of
// 2x2 outputs (the last row or column of tiles is cut where P or Q is odd).
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

inline WinogradPlan winograd_plan(const ConvGeometry& g, const char* what) {
  CRFSEG_CHECK(winograd_applies(g), NotImplementedError, what, ": Winograd F(2x2, 3x3) takes 3x3 kernels at stride ",
               "1 without dilation and padding up to 2, got ", g.R, "x", g.S, " stride ", g.sh, "x", g.sw,
               " dilation ", g.dh, "x", g.dw, " padding ", g.ph, "x", g.pw, " on ", g.H, "x", g.W, " -> ", g.P,
               "x", g.Q);
  const auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {i32(g.C),  i32(g.K),  i32(g.H),  i32(g.W),           i32(g.P),
          i32(g.Q),  i32(g.ph), i32(g.pw), i32((g.P + 1) / 2), i32((g.Q + 1) / 2)};
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

// u = G w G^T for one 3x3 filter w (row-major), or for its 180-degree
// rotation when `flipped`. u[4 xi + nu].
template <typename T>
CRFSEG_HD inline void winograd_filter(const T* w, bool flipped, T* u) {
  T f[9];
  for (int i = 0; i < 9; ++i) f[i] = w[flipped ? 8 - i : i];
  T t[4][3];  // G f
  for (int j = 0; j < 3; ++j) {
    const T f0 = f[j], f1 = f[3 + j], f2 = f[6 + j];
    t[0][j] = f0;
    t[1][j] = (f0 + f1 + f2) / T(2);
    t[2][j] = (f0 - f1 + f2) / T(2);
    t[3][j] = f2;
  }
  for (int i = 0; i < 4; ++i) {  // (G f) G^T
    u[4 * i + 0] = t[i][0];
    u[4 * i + 1] = (t[i][0] + t[i][1] + t[i][2]) / T(2);
    u[4 * i + 2] = (t[i][0] - t[i][1] + t[i][2]) / T(2);
    u[4 * i + 3] = t[i][2];
  }
}

// v = B^T d B for the input tile of output tile (tp, tq) of channel plane
// xc [H, W]: rows 2 tp - ph .. + 3, columns 2 tq - pw .. + 3, zero outside.
template <typename T>
CRFSEG_HD inline void winograd_input_tile(const T* xc, const WinogradPlan& p, int tp, int tq, T* v) {
  const int h0 = 2 * tp - p.ph, w0 = 2 * tq - p.pw;
  T d[4][4];
  for (int i = 0; i < 4; ++i) {
    const int h = h0 + i;
    const bool row_in = static_cast<unsigned>(h) < static_cast<unsigned>(p.H);
    for (int j = 0; j < 4; ++j) {
      const int w = w0 + j;
      d[i][j] = row_in && static_cast<unsigned>(w) < static_cast<unsigned>(p.W) ? xc[h * p.W + w] : T(0);
    }
  }
  T t[4][4];  // B^T d
  for (int j = 0; j < 4; ++j) {
    t[0][j] = d[0][j] - d[2][j];
    t[1][j] = d[1][j] + d[2][j];
    t[2][j] = d[2][j] - d[1][j];
    t[3][j] = d[1][j] - d[3][j];
  }
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    v[4 * i + 0] = t[i][0] - t[i][2];
    v[4 * i + 1] = t[i][1] + t[i][2];
    v[4 * i + 2] = t[i][2] - t[i][1];
    v[4 * i + 3] = t[i][1] - t[i][3];
  }
}

// y = A^T m A: the 2x2 outputs of one tile from its 16 products m[4 xi + nu];
// y[2 a + b] is output (2 tp + a, 2 tq + b).
template <typename T>
CRFSEG_HD inline void winograd_output_tile(const T* m, T* y) {
  T s[2][4];  // A^T m
  for (int j = 0; j < 4; ++j) {
    s[0][j] = m[j] + m[4 + j] + m[8 + j];
    s[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
  }
  for (int a = 0; a < 2; ++a) {  // (A^T m) A
    y[2 * a + 0] = s[a][0] + s[a][1] + s[a][2];
    y[2 * a + 1] = s[a][1] - s[a][2] - s[a][3];
  }
}

// The three passes around the GEMM, one call per thread (conv2d_winograd.cu
// runs them as for_each kernels; the CPU test runs the same loops). The
// layouts, with T = images * TP * TQ tiles of an image group (tile t of
// image n at n TP TQ + tp TQ + tq):
//   U [16][K][C]   transformed filters      (winograd_filter_element)
//   V [16][C][T]   transformed input tiles  (winograd_input_element)
//   M [16][K][T] = U[xi] V[xi] for each of the 16 xi: one batched GEMM
//   y [images][K][P][Q] from M              (winograd_output_element)
// so each thread's 16 reads or writes are T (or K C) apart, and
// neighbouring threads touch neighbouring addresses.

// Filter o = (k, c) of a K x C bank: U[xi][k][c] from w[k][c] (w is [K][C][3][3]),
// or, when `backward` (backward-input's bank: K here is the forward's C,
// C the forward's K), from w[c][k] rotated 180 degrees.
template <typename T>
CRFSEG_HD inline void winograd_filter_element(int64_t o, const T* w, int64_t K, int64_t C, bool backward, T* U) {
  const int64_t k = o / C, c = o - k * C;
  T u[16];
  winograd_filter(w + (backward ? c * K + k : o) * 9, backward, u);
  for (int xi = 0; xi < 16; ++xi) U[xi * K * C + o] = u[xi];
}

// Input tile o = (n, c, tile) of an image group starting at x: V[xi][c][n TP TQ + tile].
template <typename T>
CRFSEG_HD inline void winograd_input_element(int64_t o, const T* x, const WinogradPlan& p, int64_t images, T* V) {
  const int tiles = p.tiles();
  const int64_t plane = o / tiles;  // n C + c
  const int tile = static_cast<int>(o - plane * tiles);
  const int64_t n = plane / p.C, c = plane - n * p.C;
  const int tp = tile / p.TQ, tq = tile - tp * p.TQ;
  T v[16];
  winograd_input_tile(x + plane * p.H * p.W, p, tp, tq, v);
  const int64_t T_all = images * tiles, at = c * T_all + n * tiles + tile;
  for (int xi = 0; xi < 16; ++xi) V[xi * p.C * T_all + at] = v[xi];
}

// Output tile o = (n, k, tile) of an image group: its 2x2 outputs (those
// inside P x Q) into y, the group's [images][K][P][Q], plus bias[k] (bias
// may be null).
template <typename T>
CRFSEG_HD inline void winograd_output_element(int64_t o, const T* M, const WinogradPlan& p, int64_t images,
                                              const T* bias, T* y) {
  const int tiles = p.tiles();
  const int64_t plane = o / tiles;  // n K + k
  const int tile = static_cast<int>(o - plane * tiles);
  const int64_t n = plane / p.K, k = plane - n * p.K;
  const int tp = tile / p.TQ, tq = tile - tp * p.TQ;
  const int64_t T_all = images * tiles, at = k * T_all + n * tiles + tile;
  T m[16], out[4];
  for (int xi = 0; xi < 16; ++xi) m[xi] = M[xi * p.K * T_all + at];
  winograd_output_tile(m, out);
  const T b = bias != nullptr ? bias[k] : T(0);
  T* yp = y + plane * p.P * p.Q;
  for (int a = 0; a < 2; ++a) {
    const int row = 2 * tp + a;
    if (row >= p.P) break;
    for (int c = 0; c < 2; ++c) {
      const int col = 2 * tq + c;
      if (col < p.Q) yp[row * p.Q + col] = out[2 * a + c] + b;
    }
  }
}

// Output-gradient tile o = (n, k, tile) of an image group dy ([images][K][P][Q]):
// E'[xi][k][n TP TQ + tile] = A E A^T, E the tile's 2x2 block (zero past P, Q).
template <typename T>
CRFSEG_HD inline void winograd_grad_element(int64_t o, const T* dy, const WinogradPlan& p, int64_t images, T* E) {
  const int tiles = p.tiles();
  const int64_t plane = o / tiles;  // n K + k
  const int tile = static_cast<int>(o - plane * tiles);
  const int64_t n = plane / p.K, k = plane - n * p.K;
  const int tp = tile / p.TQ, tq = tile - tp * p.TQ;
  const T* dp = dy + plane * p.P * p.Q;
  T e[2][2];
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int row = 2 * tp + a, col = 2 * tq + b;
      e[a][b] = row < p.P && col < p.Q ? dp[row * p.Q + col] : T(0);
    }
  T t[4][2];  // A e, A = [1 0; 1 1; 1 -1; 0 -1]
  for (int b = 0; b < 2; ++b) {
    t[0][b] = e[0][b];
    t[1][b] = e[0][b] + e[1][b];
    t[2][b] = e[0][b] - e[1][b];
    t[3][b] = -e[1][b];
  }
  const int64_t T_all = images * tiles, at = k * T_all + n * tiles + tile;
  for (int i = 0; i < 4; ++i) {  // (A e) A^T
    const T u[4] = {t[i][0], t[i][0] + t[i][1], t[i][0] - t[i][1], -t[i][1]};
    for (int j = 0; j < 4; ++j) E[(4 * i + j) * p.K * T_all + at] = u[j];
  }
}

// Filter-gradient element o = (k, c) of a K x C bank: dw[k][c] (3x3) =
// G^T M[xi][k][c] G, with G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1].
template <typename T>
CRFSEG_HD inline void winograd_filter_grad_element(int64_t o, const T* M, int64_t K, int64_t C, T* dw) {
  T m[16];
  for (int xi = 0; xi < 16; ++xi) m[xi] = M[xi * K * C + o];
  T s[3][4];  // G^T m
  for (int j = 0; j < 4; ++j) {
    s[0][j] = m[j] + (m[4 + j] + m[8 + j]) / T(2);
    s[1][j] = (m[4 + j] - m[8 + j]) / T(2);
    s[2][j] = (m[4 + j] + m[8 + j]) / T(2) + m[12 + j];
  }
  for (int i = 0; i < 3; ++i) {  // (G^T m) G
    dw[o * 9 + 3 * i + 0] = s[i][0] + (s[i][1] + s[i][2]) / T(2);
    dw[o * 9 + 3 * i + 1] = (s[i][1] - s[i][2]) / T(2);
    dw[o * 9 + 3 * i + 2] = (s[i][1] + s[i][2]) / T(2) + s[i][3];
  }
}

// Elements of V and M (or V and E') for an image group.
inline int64_t winograd_workspace_elems(const WinogradPlan& p, int64_t images) {
  return 16 * (static_cast<int64_t>(p.C) + p.K) * images * p.tiles();
}

}  // namespace crfseg::kernels::cuda
