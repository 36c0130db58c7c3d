// The per-element rules of the CUDA im2col and col2im (conv2d.cu), in
// host-device code so that tests/kernels/test_conv2d.cpp checks them on the
// CPU against kernels::cpu's im2col and col2im, device or not. Both index
// one image in 32 bits (Geometry32, checked by narrow on the host): on an
// H200 the first, 64-bit versions did six divisions per element and took
// 35% of a U-Net training step (bench/NOTES.md, change 27).
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/ref/conv2d.h"
#include "tensor/error.h"

namespace crfseg::kernels::cuda {

// The sizes the im2col / col2im kernels index with, narrowed to 32 bits
// once on the host (narrow checks that they, and what the kernels compute
// from them, fit).
struct Geometry32 {
  int64_t C;  // channels stay 64-bit: the kernels' outer loops stride over them
  int H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw;
};

// narrow()'s two NotImplementedError conditions, named so that callers with
// another path can ask first (fits_32bit_indices). kIndexLimit = 2^30: the
// grid-stride loops' int counters may step up to 2^18 past the end.
constexpr int64_t kIndexLimit = int64_t{1} << 30;
inline bool planes_fit_32bit(const ConvGeometry& g) { return g.pq() < kIndexLimit && g.hw() < kIndexLimit; }
inline bool window_fits_32bit(const ConvGeometry& g) {
  return g.H + 2 * g.ph < kIndexLimit && g.W + 2 * g.pw < kIndexLimit && g.R * g.S < kIndexLimit &&
         g.sh < kIndexLimit && g.sw < kIndexLimit && g.dh < kIndexLimit && g.dw < kIndexLimit;
}
// Whether narrow() accepts g's sizes: the 32-bit kernels' precondition.
inline bool fits_32bit_indices(const ConvGeometry& g) { return planes_fit_32bit(g) && window_fits_32bit(g); }

// The kernels' int values (h = p sh + r dh - ph, hp = h + ph - r dh,
// r S + s, and each field) stay within H + 2 ph, W + 2 pw, R S and the
// strides and dilations, which are bounded too, for a geometry whose
// output size follows from the rest (checked first: im2col and col2im are
// callable without the ops' own checks).
inline Geometry32 narrow(const ConvGeometry& g, const char* what) {
  // (Empty outputs and kernels pass: the callers return before any launch.)
  const bool rows_follow = g.P == 0 || g.R == 0 || (g.P - 1) * g.sh + (g.R - 1) * g.dh < g.H + 2 * g.ph;
  const bool cols_follow = g.Q == 0 || g.S == 0 || (g.Q - 1) * g.sw + (g.S - 1) * g.dw < g.W + 2 * g.pw;
  CRFSEG_CHECK(g.ph >= 0 && g.pw >= 0 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && g.P >= 0 && g.Q >= 0 &&
                   g.R >= 0 && g.S >= 0 && rows_follow && cols_follow,
               ValueError, what, ": expected padding >= 0, stride and dilation >= 1 and a ", g.P, "x", g.Q,
               " output that a ", g.R, "x", g.S, " kernel with stride ", g.sh, "x", g.sw, ", padding ", g.ph, "x",
               g.pw, " and dilation ", g.dh, "x", g.dw, " can produce from ", g.H, "x", g.W, " inputs");
  CRFSEG_CHECK(planes_fit_32bit(g), NotImplementedError, what, ": a plane of ", g.hw(), " inputs or ", g.pq(),
               " outputs does not fit 32-bit indices");
  CRFSEG_CHECK(window_fits_32bit(g), NotImplementedError, what, ": a ", g.R, "x", g.S, " kernel, stride ", g.sh, "x",
               g.sw, ", padding ", g.ph, "x", g.pw, ", dilation ", g.dh, "x", g.dw, " on ", g.H, "x", g.W,
               " inputs does not fit 32-bit indices");
  const auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {g.C,       i32(g.H),  i32(g.W),  i32(g.P),  i32(g.Q),  i32(g.R), i32(g.S),
          i32(g.sh), i32(g.sw), i32(g.ph), i32(g.pw), i32(g.dh), i32(g.dw)};
}

// Where column row `row` of an image block goes: rows of image i = row /
// rows_per_image (its C R S rows) start at i image_stride, each row_stride
// after the last. One image, or the forward's images one after another:
// image_stride = C R S P Q, row_stride = P Q, i.e. row P Q. The weight
// gradient lays the images side by side in each row instead (image_stride
// = P Q, row_stride = images P Q), so that one GEMM sums over all of them.
struct ColumnPlacement {
  int64_t rows_per_image, image_stride, row_stride;
  CRFSEG_HD int64_t offset(int64_t row) const {
    const int64_t i = quotient(row, rows_per_image);
    return i * image_stride + (row - i * rows_per_image) * row_stride;
  }
};

// The weight gradient's regrouping of [images, channels, plane] data as
// [channels, images, plane]: the source index of result element o, with
// per_channel = images plane.
CRFSEG_HD inline int64_t regrouped_source(int64_t o, int64_t per_channel, int64_t channels, int64_t plane) {
  const int64_t c = quotient(o, per_channel), rest = o - c * per_channel, i = quotient(rest, plane);
  return (i * channels + c) * plane + (rest - i * plane);
}

// Column-matrix row `row` as (channel c, tap r, s): row = (c R + r) S + s.
// Once per row of outputs in the kernels, in 32 bits where it fits.
struct ColumnRow {
  int64_t c;
  int r, s;
};
CRFSEG_HD inline ColumnRow column_row(int64_t row, const Geometry32& g) {
  const int64_t cr = quotient(row, g.S), c = quotient(cr, g.R);
  return {c, static_cast<int>(cr - c * g.R), static_cast<int>(row - cr * g.S)};
}

// The `count` column values at positions i .. i + count - 1 of
// column-matrix row (c, r, s), in order (i + count <= P Q): xc is channel
// c's [H, W] plane. One division for them all (the vector kernel takes four
// and stores them as one 16-byte vector); positions wrap from one output
// row to the next. im2col_values_at takes position i as its output row and
// column (p, q), for callers that found them once for several rows.
template <typename T>
CRFSEG_HD inline void im2col_values_at(const T* xc, const Geometry32& g, int r, int s, int p, int q, int count,
                                       T* out) {
  const int h0 = r * g.dh - g.ph, w0 = s * g.dw - g.pw;
  for (int e = 0; e < count; ++e) {
    const int h = p * g.sh + h0, w = q * g.sw + w0;
    const bool inside = static_cast<unsigned>(h) < static_cast<unsigned>(g.H) &&  // h >= 0 too
                        static_cast<unsigned>(w) < static_cast<unsigned>(g.W);
    out[e] = inside ? xc[h * g.W + w] : T(0);
    if (++q == g.Q) {
      q = 0;
      ++p;
    }
  }
}
template <typename T>
CRFSEG_HD inline void im2col_values(const T* xc, const Geometry32& g, int r, int s, int i, int count, T* out) {
  const int p = i / g.Q;
  im2col_values_at(xc, g, r, s, p, i - p * g.Q, count, out);
}

// The output position a tap reads from along one dimension: x = h + pad -
// tap dil (x >= 0) is o stride exactly for an output o < out, else -1. At
// stride 1 no division.
CRFSEG_HD inline int tap_output(int x, int stride, int out) {
  if (stride != 1) {
    if (x % stride != 0) return -1;
    x /= stride;
  }
  return x < out ? x : -1;
}

// dx at input (h, w) of one channel: the sum, over taps (r, s) in order, of
// the column entry that read (h, w). cc is the channel's R S column rows of
// P Q entries. Tap (r, s) read (h, w) from output (p, q) when
// h = p sh - ph + r dh exactly (tap_output); likewise q. h + ph - r dh
// falls as r grows, so the first negative one ends the loop.
template <typename T>
CRFSEG_HD inline T col2im_value(const T* cc, const Geometry32& g, int h, int w) {
  const int64_t PQ = static_cast<int64_t>(g.P) * g.Q;
  T acc = T(0);
  for (int r = 0; r < g.R; ++r) {
    const int hp = h + g.ph - r * g.dh;
    if (hp < 0) break;
    const int p = tap_output(hp, g.sh, g.P);
    if (p < 0) continue;
    for (int s = 0; s < g.S; ++s) {
      const int wq = w + g.pw - s * g.dw;
      if (wq < 0) break;
      const int q = tap_output(wq, g.sw, g.Q);
      if (q >= 0) acc += cc[(r * g.S + s) * PQ + p * g.Q + q];
    }
  }
  return acc;
}

// The backward-input of a stride-1, undilated convolution g as a forward
// convolution: g's output gradient [N, K, P, Q] convolved with the flipped,
// transposed filters W'[c, k, r, s] = W[k, c, R-1-r, S-1-s] at padding
// (R-1-ph, S-1-pw) gives dx [N, C, H, W] (each input pixel gathers the
// outputs whose windows covered it). Needs ph <= R-1 and pw <= S-1.
inline ConvGeometry backward_input_forward_geometry(const ConvGeometry& g) {
  ConvGeometry b;
  b.N = g.N, b.C = g.K, b.H = g.P, b.W = g.Q;
  b.K = g.C, b.R = g.R, b.S = g.S, b.P = g.H, b.Q = g.W;
  b.ph = g.R - 1 - g.ph, b.pw = g.S - 1 - g.pw;
  return b;
}
inline bool backward_input_as_forward(const ConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.ph <= g.R - 1 && g.pw <= g.S - 1 && g.R >= 1 &&
         g.S >= 1 && fits_32bit_indices(g) && fits_32bit_indices(backward_input_forward_geometry(g));
}
// The backward-input of a layer whose windows do not overlap (stride at
// least the kernel, no padding or dilation: the U-Net's 2x2 stride-2
// up-convolutions run their forwards as this) has no sums over windows:
// dx[n, c, p sh + r, q sw + s] = sum_k W[k, (c, r, s)] g[n, k, p, q], one
// GEMM with rows (c, r, s) = C R S, columns (n, p, q) = N P Q and depth K
// whose every product lands on its own pixel of dx (scatter_offset).
// Pixels no window reaches get none: dx is zeroed first unless the windows
// cover it (scatter_covers).
inline bool backward_input_as_scatter(const ConvGeometry& g) {
  return g.sh >= g.R && g.sw >= g.S && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1 && g.R >= 1 && g.S >= 1 &&
         fits_32bit_indices(g);
}
inline bool scatter_covers(const ConvGeometry& g) {
  return g.sh == g.R && g.sw == g.S && g.P * g.R == g.H && g.Q * g.S == g.W;
}
// Where product (row m = (c, r, s), column n = (image, p, q)) lands in dx,
// for g narrowed to 32 bits.
CRFSEG_HD inline int64_t scatter_offset(int64_t m, int64_t n, const Geometry32& g) {
  const ColumnRow cr = column_row(m, g);
  const int64_t pq = static_cast<int64_t>(g.P) * g.Q, image = quotient(n, pq);
  const int pixel = static_cast<int>(n - image * pq), p = pixel / g.Q, q = pixel - p * g.Q;
  return ((image * g.C + cr.c) * g.H + p * g.sh + cr.r) * g.W + q * g.sw + cr.s;
}

// The source index in W [K, C, R, S] of element i of W' [C, K, R, S].
CRFSEG_HD inline int64_t flipped_filter_source(int64_t i, int64_t C, int64_t K, int64_t R, int64_t S) {
  const int64_t ck = quotient(i, R * S), rs = i - ck * R * S, c = quotient(ck, K), k = ck - c * K;
  const int64_t r = quotient(rs, S), s = rs - r * S;
  return ((k * C + c) * R + (R - 1 - r)) * S + (S - 1 - s);
}

}  // namespace crfseg::kernels::cuda
