// CPU convolution kernels; the algorithm is described in conv2d.h.
#include "kernels/cpu/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <atomic>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/conv2d_direct.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"
#include "kernels/cpu/gemm/transpose_pack.h"

namespace crfseg::kernels::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Column-block width of the per-thread GEMMs: a KC x 256 packed B block,
// 256 KiB at KC = 256 and 1 MiB at v4's KC = 1024 (see kL2Columns in
// kernels/cpu/gemm/blis_loops.cpp).
constexpr int64_t kConvCols = 256;
// NR of every registered micro-kernel is at most this (sizes stack arrays).
constexpr int64_t kMaxNr = 64;

// ---------------------------------------------------------------------------
// Implicit-im2col B packers (f32). Each writes one KC x NR micro-panel of the
// packed B block, dst[k * nr + c], reading the image directly.

// Forward: op(B) = col(x_n), rows k = (c, r, s), columns j = (p, q).
// pack_forward_block also takes the columns of several images side by side
// (the batch folded into the GEMM's columns, forward_folded): column j is
// pixel j % PQ of image j / PQ, the images following x_img in memory.
struct ForwardPackCtx {
  const ConvGeometry* g;
  const float* x_img;  // [C, H, W] (then the next images, for folded columns)
};

// A short copy (the pieces are up to NR = 32 floats): 16 floats at a time
// through fixed-size memcpy, which the compiler turns into one vector load
// and store; std::copy here became a call of libc's memmove per piece, 11%
// of the backward-weight pass.
inline void copy_floats(const float* src, int64_t len, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) std::memcpy(dst + i, src + i, 16 * sizeof(float));
  for (; i < len; ++i) dst[i] = src[i];
}

// Sixteen floats in one vector (GCC's vector extension, like the Winograd
// transforms): with AVX-512 one zmm register.
using Vec16 = float __attribute__((vector_size(64)));

// dst[c] = src[2 c] for c < 16, from the 32 floats src[0 .. 31]: two vector
// loads and one two-source shuffle instead of 16 scalar copies.
inline void gather_even16(const float* src, float* dst) {
  Vec16 lo, hi;
  std::memcpy(&lo, src, sizeof lo);
  std::memcpy(&hi, src + 16, sizeof hi);
  const Vec16 even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  std::memcpy(dst, &even, sizeof even);
}

// One piece of a packed row: `len` output pixels of one output row, whose
// windows start at input (h0, w0), (h0, w0 + sw), ...; tap (dh, dw) of them
// goes to out[0 .. len). Rows above or below the image, and pixels left or
// right of it, read as zero (padding).
inline void copy_tap(const ConvGeometry& g, const float* xc, int64_t h, int64_t w, int64_t len, float* out) {
  if (h < 0 || h >= g.H) {  // the whole piece reads padding
    for (int64_t c = 0; c < len; ++c) out[c] = 0.0f;
    return;
  }
  const float* row = xc + h * g.W;
  if (w >= 0 && w + (len - 1) * g.sw < g.W) {
    int64_t c = 0;
    if (g.sw == 1) {
      copy_floats(row + w, len, out);
      return;
    }
    if (g.sw == 2) {  // the ResNet stem and downsampling layers: 16 at a time while 32 inputs lie in the row
      for (; c + 16 <= len && w + 2 * c + 32 <= g.W; c += 16) gather_even16(row + w + 2 * c, out + c);
    }
    for (; c < len; ++c) out[c] = row[w + c * g.sw];
    return;
  }
  for (int64_t c = 0; c < len; ++c) {
    const int64_t ww = w + c * g.sw;
    out[c] = (ww >= 0 && ww < g.W) ? row[ww] : 0.0f;
  }
}

// Packs a whole KC x n block (ceil(n / nr) micro-panels) at once: rows k
// outer, the block's columns inner. A single panel (n <= nr) is the same
// call, so this also serves as the per-panel packer.
// Why rows outer: panel by panel, each row k of a panel reads 128 bytes
// (NR = 32) of one input row, and consecutive rows step through channel
// planes H*W*4 bytes apart (256 KiB at 256^2): the same cache sets, and too
// many short streams for the prefetchers. perf on the U-Net 64->64 256^2
// layer put that packer level with the micro-kernel. Row by row, a tap reads
// one contiguous run of the input row for the whole block, the R*S taps of
// a channel reuse its rows from L1, and the prefetchers see long streams.
void pack_forward_block(const void* ctx_ptr, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr,
                        float* dst) {
  const auto& ctx = *static_cast<const ForwardPackCtx*>(ctx_ptr);
  const ConvGeometry& g = *ctx.g;
  // The block's columns cut where an output row or a micro-panel ends (an
  // image ends with its last output row): within a piece a tap reads input
  // pixels w0, w0 + sw, ... of a single input row of one image.
  struct Piece {
    int64_t off, len, h0, w0;  // offset of its row-0 entries in dst, length, top-left input pixel
    const float* img;          // its image, [C, H, W]
  };
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  for (int64_t c = 0; c < n;) {
    const int64_t pixel = (j0 + c) % g.pq(), p = pixel / g.Q, q = pixel % g.Q;
    const int64_t panel = c / nr, in_panel = c % nr;
    const int64_t len = std::min({g.Q - q, nr - in_panel, n - c});
    pieces.push_back({panel * kc * nr + in_panel, len, p * g.sh - g.ph, q * g.sw - g.pw,
                      ctx.x_img + (j0 + c) / g.pq() * g.C * g.hw()});
    c += len;
  }
  // Input rows the block reads, one span per output row it covers.
  struct Span {
    int64_t h0, w_lo, w_hi;  // input row of tap r = 0, first and one-past-last input column of all taps
    const float* img;
  };
  thread_local std::vector<Span> spans;
  spans.clear();
  for (const Piece& piece : pieces) {
    const int64_t lo = std::max<int64_t>(piece.w0, 0);
    const int64_t hi = std::min(g.W, piece.w0 + (piece.len - 1) * g.sw + (g.S - 1) * g.dw + 1);
    if (!spans.empty() && spans.back().h0 == piece.h0 && spans.back().img == piece.img) {
      spans.back().w_lo = std::min(spans.back().w_lo, lo);
      spans.back().w_hi = std::max(spans.back().w_hi, hi);
    } else {
      spans.push_back({piece.h0, lo, hi, piece.img});
    }
  }
  // Software prefetch of the rows kAhead channels ahead: a block reads 3
  // rows of every channel plane, planes H*W*4 bytes apart, which is too many
  // short streams for the hardware prefetchers (measured on the 64->64 256^2
  // layer: forward 17.9 -> 16.4 ms; 1 and 4 channels ahead did no better).
  constexpr int64_t kAhead = 2;
  // The last panel's columns past n are zero.
  const int64_t tail = n % nr;
  float* tail_dst = tail > 0 ? dst + (n / nr) * kc * nr : nullptr;
  // (channel, r, s) of row p0, then stepped along with k (no divisions in the loop).
  const int64_t rs = g.R * g.S;
  int64_t ch = p0 / rs, r = (p0 / g.S) % g.R, s = p0 % g.S;
  for (int64_t k = 0; k < kc; ++k) {
    if (k > 0 && ++s == g.S) {
      s = 0;
      if (++r == g.R) {
        r = 0;
        ++ch;
      }
    }
    const int64_t plane = ch * g.hw();
    float* d = dst + k * nr;
    const int64_t dh = r * g.dh, dw = s * g.dw;
    if (s == 0 && ch + kAhead < g.C) {
      for (const Span& span : spans) {
        const int64_t h = span.h0 + dh;
        if (h < 0 || h >= g.H || span.w_hi <= span.w_lo) continue;  // all padding
        const float* xp = span.img + plane + kAhead * g.hw() + h * g.W;
        for (int64_t w = span.w_lo; w < span.w_hi; w += 16) __builtin_prefetch(xp + w);
        __builtin_prefetch(xp + span.w_hi - 1);
      }
    }
    for (const Piece& piece : pieces)
      copy_tap(g, piece.img + plane, piece.h0 + dh, piece.w0 + dw, piece.len, d + piece.off);
    if (tail_dst != nullptr) std::fill(tail_dst + k * nr + tail, tail_dst + (k + 1) * nr, 0.0f);
  }
}

// Backward-weight: op(B) = col(x_n)^T, rows k = (p, q), columns j = (c, r, s).
// The panel is a transpose: each column reads a contiguous run of pixels (for
// stride 1) but lands with stride NR. Rows go in chunks of 16 pixels, and
// the columns in groups of 16: one transposing copy (transpose_pack.h) per
// 16 x 16 tile. A column whose 16 pixels are not one contiguous in-image run
// (padding, a chunk that wraps to the next output row, stride > 1) is first
// gathered into a scratch row (copy_tap; the plain loop where it wraps).
void pack_weight_grad_panel(const void* ctx_ptr, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                            float* dst) {
  constexpr int64_t kRows = 16;
  // Prefetch distance in floats, two chunks ahead (measured: backward-weight
  // of the 64->64 256^2 layer 10% faster; 64 and 128 floats gained less).
  constexpr int64_t kPf = 32;
  const auto& ctx = *static_cast<const ForwardPackCtx*>(ctx_ptr);
  const ConvGeometry& g = *ctx.g;
  const int64_t rs = g.R * g.S;
  // Per column: its channel plane and the tap's offset from the window corner.
  const float* plane[kMaxNr];
  int64_t h_off[kMaxNr], w_off[kMaxNr];
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t crs = j0 + c;
    const int64_t ch = crs / rs, r = (crs / g.S) % g.R, s = crs % g.S;
    plane[c] = ctx.x_img + ch * g.hw();
    h_off[c] = r * g.dh - g.ph;
    w_off[c] = s * g.dw - g.pw;
  }
  alignas(64) float scratch[kMaxNr][kRows];
  const float* src[kMaxNr];
  int64_t p = p0 / g.Q, q = p0 % g.Q;  // output pixel of the chunk's first row
  for (int64_t k0 = 0; k0 < kc; k0 += kRows) {
    const int64_t len = std::min(kRows, kc - k0);
    float* d = dst + k0 * nr;
    const bool one_row = q + len <= g.Q;  // the chunk's pixels share output row p
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t h = p * g.sh + h_off[c], w = q * g.sw + w_off[c];
      if (one_row && g.sw == 1 && h >= 0 && h < g.H && w >= 0 && w + len - 1 < g.W) {
        src[c] = plane[c] + h * g.W + w;
        __builtin_prefetch(src[c] + kPf);
        continue;
      }
      if (one_row) {  // one input row, partly in the padding, or strided (the ResNet stem: 16 at a time)
        copy_tap(g, plane[c], h, w, len, scratch[c]);
        src[c] = scratch[c];
        continue;
      }
      int64_t pp = p, qq = q;  // general case: the chunk wraps to the next output row
      for (int64_t i = 0; i < len; ++i) {
        const int64_t hh = pp * g.sh + h_off[c], ww = qq * g.sw + w_off[c];
        scratch[c][i] = (hh >= 0 && hh < g.H && ww >= 0 && ww < g.W) ? plane[c][hh * g.W + ww] : 0.0f;
        if (++qq == g.Q) {
          qq = 0;
          ++pp;
        }
      }
      src[c] = scratch[c];
    }
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      transpose_pack(src + c0, static_cast<int>(std::min<int64_t>(16, cols - c0)), len, 1.0f, d + c0, nr);
    }
    for (int64_t i = 0; i < len; ++i)
      for (int64_t c = cols; c < nr; ++c) d[i * nr + c] = 0.0f;
    q += len;
    p += q / g.Q;
    q %= g.Q;
  }
}

// Backward-weight through a channels-last copy of the image, for C >= 16.
// The weight gradient's depth is the pixels, the contiguous axis of x, so
// col(x)^T packs as a transpose (above). Transposed once per image into
// xt [Hp, Wp, C] (zero border, Hp x Wp the padded extent the windows
// reach), the C channels of one pixel are adjacent: with the columns of dW
// taken in (r, s, c) order instead of (c, r, s), a packed row (one output
// pixel) is R*S contiguous runs of C floats, plain copies. The GEMM writes
// dW in that order; one pass permutes it back at the end.
struct ChannelsLastCtx {
  const ConvGeometry* g;
  const float* xt;  // [Hp, Wp, C]
  int64_t wp;       // Wp
};

int64_t padded_rows(const ConvGeometry& g) { return (g.P - 1) * g.sh + (g.R - 1) * g.dh + 1; }
int64_t padded_cols(const ConvGeometry& g) { return (g.Q - 1) * g.sw + (g.S - 1) * g.dw + 1; }

// xt[hp, wp, c] = x[c, hp - ph, wp - pw], zero outside the image; 16
// channels at a time through transpose_pack, rows in parallel.
void to_channels_last(const ConvGeometry& g, const float* x_img, float* xt) {
  const int64_t hp_rows = padded_rows(g), wp_cols = padded_cols(g), C = g.C;
  const int64_t w_lo = std::min(g.pw, wp_cols), w_hi = std::clamp<int64_t>(g.pw + g.W, w_lo, wp_cols);
#pragma omp parallel for schedule(static) if (hp_rows * wp_cols * C >= (int64_t{1} << 16) && !omp_in_parallel())
  for (int64_t hp = 0; hp < hp_rows; ++hp) {
    float* row = xt + hp * wp_cols * C;
    const int64_t h = hp - g.ph;
    if (h < 0 || h >= g.H) {
      std::fill(row, row + wp_cols * C, 0.0f);
      continue;
    }
    std::fill(row, row + w_lo * C, 0.0f);
    std::fill(row + w_hi * C, row + wp_cols * C, 0.0f);
    if (w_hi == w_lo) continue;  // the windows never reach the image's columns
    const float* src[16];
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t rows = std::min<int64_t>(16, C - c0);
      for (int64_t r = 0; r < rows; ++r) src[r] = x_img + (c0 + r) * g.hw() + h * g.W + (w_lo - g.pw);
      transpose_pack(src, static_cast<int>(rows), w_hi - w_lo, 1.0f, row + w_lo * C + c0, C);
    }
  }
}

// Packs a KC x n block of op(B)(pixel, (r, s, c)) = xt[p sh + r dh, q sw + s dw, c].
void pack_channels_last_block(const void* ctx_ptr, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr,
                              float* dst) {
  const auto& ctx = *static_cast<const ChannelsLastCtx*>(ctx_ptr);
  const ConvGeometry& g = *ctx.g;
  const int64_t C = g.C;
  // The block's columns cut where a tap's C channels or a micro-panel end.
  struct Piece {
    int64_t dst_off, src_off, len;  // in dst (row 0), from the window corner's pixel in xt, length
  };
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  for (int64_t col = 0; col < n;) {
    const int64_t j = j0 + col, tap = j / C, c = j % C, r = tap / g.S, s = tap % g.S;
    const int64_t panel = col / nr, in_panel = col % nr;
    const int64_t len = std::min({C - c, nr - in_panel, n - col});
    pieces.push_back({panel * kc * nr + in_panel, (r * g.dh * ctx.wp + s * g.dw) * C + c, len});
    col += len;
  }
  const int64_t tail = n % nr;
  float* tail_dst = tail > 0 ? dst + (n / nr) * kc * nr : nullptr;
  int64_t p = p0 / g.Q, q = p0 % g.Q;  // output pixel of row k
  for (int64_t k = 0; k < kc; ++k) {
    const float* corner = ctx.xt + (p * g.sh * ctx.wp + q * g.sw) * C;
    float* d = dst + k * nr;
    for (const Piece& piece : pieces) copy_floats(corner + piece.src_off, piece.len, d + piece.dst_off);
    if (tail_dst != nullptr) std::fill(tail_dst + k * nr + tail, tail_dst + (k + 1) * nr, 0.0f);
    if (++q == g.Q) {
      q = 0;
      ++p;
    }
  }
}

// The output gradients of all images side by side as one [K, N*PQ] matrix:
// op(B)(k, j) = dy[n, k, pq] with j = n*PQ + pq. One GEMM then serves every
// image, so the weights are packed once, not once per image.
struct BatchedDyCtx {
  const ConvGeometry* g;
  const float* dy;
};

// Packs a whole KC x n block (as pack_forward_block; a single panel,
// n <= NR, is the same call): row k of dy outer, so each row is read as
// long runs. Panel by panel, each row k read 32 floats from a row PQ
// floats from the last (64 KiB at 128^2: the same L1 sets), a sixth of a
// 2x2 stride-2 up-convolution's time.
void pack_batched_dy_block(const void* ctx_ptr, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr,
                           float* dst) {
  const auto& ctx = *static_cast<const BatchedDyCtx*>(ctx_ptr);
  const ConvGeometry& g = *ctx.g;
  // Pieces: within one image and one micro-panel, consecutive pixels of dy.
  struct Piece {
    int64_t off, len, base;  // offset of its row-0 entries in dst, length, offset of (n, 0, pq) in dy
  };
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  for (int64_t c = 0; c < n;) {
    const int64_t j = j0 + c, img = j / g.pq(), pq = j % g.pq();
    const int64_t len = std::min({n - c, g.pq() - pq, nr - c % nr});
    pieces.push_back({c / nr * kc * nr + c % nr, len, img * g.K * g.pq() + pq});
    c += len;
  }
  const int64_t tail = n % nr;
  float* tail_dst = tail > 0 ? dst + (n / nr) * kc * nr : nullptr;
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = ctx.dy + (p0 + k) * g.pq();
    for (const Piece& piece : pieces) copy_floats(src + piece.base, piece.len, dst + piece.off + k * nr);
    if (tail_dst != nullptr) std::fill(tail_dst + k * nr + tail, tail_dst + (k + 1) * nr, 0.0f);
  }
}

// Whether the strides step the image exactly: no padding, and the output
// positions times the strides cover the input (the two cases below).
bool strides_tile_image(const ConvGeometry& g) {
  return g.ph == 0 && g.pw == 0 && g.P * g.sh == g.H && g.Q * g.sw == g.W;
}

// Whether col2im gives every element of dx exactly one term: windows that
// tile the image without overlap or gaps (kernel = stride, no dilation), as
// in the U-Net's 2x2 stride-2 up-convolutions. Then dx needs no zeroing and
// the terms are stored, not added.
bool col2im_covers_once(const ConvGeometry& g) {
  return g.R == g.sh && g.S == g.sw && g.dh == 1 && g.dw == 1 && strides_tile_image(g);
}

// A 1x1 convolution whose stride tiles the image exactly (ResNet's
// downsampling layers: 56^2 -> 28^2 at stride 2): each pixel of dx gets at
// most one term, and the pixels between the strided ones none. Then
// col2im writes every pixel of dx once, its terms and the zeros between
// them, and dx is not zeroed first (that, then adding 1 of every 4 pixels
// in scalars, was a fifth of the layer's backward-input).
bool col2im_spreads_once(const ConvGeometry& g) {
  return g.R == 1 && g.S == 1 && (g.sh > 1 || g.sw > 1) && strides_tile_image(g);
}

// dst[sw q] = src[q] and the sw - 1 pixels after it 0, for q < len.
inline void spread_row(const float* src, int64_t len, int64_t sw, float* dst) {
  int64_t q = 0;
  if (sw == 2) {
    const Vec16 zero = {};
    for (; q + 16 <= len; q += 16) {
      Vec16 a;
      std::memcpy(&a, src + q, sizeof a);
      const Vec16 lo = __builtin_shufflevector(a, zero, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const Vec16 hi = __builtin_shufflevector(a, zero, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      std::memcpy(dst + 2 * q, &lo, sizeof lo);
      std::memcpy(dst + 2 * q + 16, &hi, sizeof hi);
    }
    // The tail (or a row under 16 pixels: 7^2 and 14^2 outputs) without a call per pixel.
    for (; q < len; ++q) {
      dst[2 * q] = src[q];
      dst[2 * q + 1] = 0.0f;
    }
    return;
  }
  for (; q < len; ++q) {
    dst[q * sw] = src[q];
    std::fill(dst + q * sw + 1, dst + (q + 1) * sw, 0.0f);
  }
}

// dst[2 q + s] (+)= src_s[q] for s = 0, 1 and q < len: two taps of one
// row interleaved, 16 pairs through two vector shuffles at a time.
template <bool Add>
inline void interleave2(const float* src0, const float* src1, int64_t len, float* dst) {
  int64_t q = 0;
  for (; q + 16 <= len; q += 16) {
    Vec16 a, b;
    std::memcpy(&a, src0 + q, sizeof a);
    std::memcpy(&b, src1 + q, sizeof b);
    Vec16 lo = __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    Vec16 hi = __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    if constexpr (Add) {
      Vec16 d0, d1;
      std::memcpy(&d0, dst + 2 * q, sizeof d0);
      std::memcpy(&d1, dst + 2 * q + 16, sizeof d1);
      lo += d0;
      hi += d1;
    }
    std::memcpy(dst + 2 * q, &lo, sizeof lo);
    std::memcpy(dst + 2 * q + 16, &hi, sizeof hi);
  }
  for (; q < len; ++q) {
    if constexpr (Add) {
      dst[2 * q] += src0[q];
      dst[2 * q + 1] += src1[q];
    } else {
      dst[2 * q] = src0[q];
      dst[2 * q + 1] = src1[q];
    }
  }
}

// col2im of a chunk: dx[n, c0 + ...] += scatter of buf (= where
// col2im_covers_once; every pixel written, zeros between the terms, where
// col2im_spreads_once), where buf [rows, cols] holds rows c0*RS.. of the
// batched col matrix and its columns j0..j0+cols (column j = n*PQ + p*Q + q).
// Each row's columns go in runs along one output row p, whose in-image
// taps [q_lo, q_hi) are found once per run; with S = stride 2 (the
// up-convolutions) the rows of taps s = 0 and 1 are interleaved in pairs.
void col2im_chunk(const ConvGeometry& g, const float* buf, int64_t c0, int64_t rows, int64_t j0, int64_t cols,
                  float* dx) {
  if (col2im_spreads_once(g)) {
    // Row c0 + i of buf is channel c0 + i; each run of columns along output
    // row p fills input rows p sh .. p sh + sh - 1 over its pixels.
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols;) {
        const int64_t col = j0 + j, n = col / g.pq(), p = col % g.pq() / g.Q, q0 = col % g.Q;
        const int64_t len = std::min(cols - j, g.Q - q0);
        float* row = dx + ((n * g.C + c0 + i) * g.H + p * g.sh) * g.W + q0 * g.sw;
        spread_row(buf + i * cols + j, len, g.sw, row);
        for (int64_t r = 1; r < g.sh; ++r) std::fill_n(row + r * g.W, len * g.sw, 0.0f);
        j += len;
      }
    }
    return;
  }
  const int64_t rs = g.R * g.S;
  // Pairs need the same in-image range for both taps: no padding on W, W even.
  const bool once = col2im_covers_once(g), pairs = g.S == 2 && g.sw == 2 && g.dw == 1 && g.pw == 0 && g.W % 2 == 0;
  for (int64_t i = 0; i < rows; i += pairs ? 2 : 1) {
    const int64_t crs = c0 * rs + i;
    const int64_t ch = crs / rs, r = (crs / g.S) % g.R, s = crs % g.S;
    const float* b = buf + i * cols;
    // First in-image q of tap s: q sw - pw + s dw >= 0; last: < W.
    const int64_t w_off = s * g.dw - g.pw;
    const int64_t q_lo = std::clamp<int64_t>(ceil_div(-w_off, g.sw), 0, g.Q);
    const int64_t q_hi = std::clamp<int64_t>(ceil_div(g.W - w_off, g.sw), q_lo, g.Q);
    for (int64_t j = 0; j < cols;) {
      const int64_t col = j0 + j, n = col / g.pq(), p = col % g.pq() / g.Q, q0 = col % g.Q;
      const int64_t len = std::min(cols - j, g.Q - q0);  // the run: columns j.. on output row p
      const int64_t h = p * g.sh - g.ph + r * g.dh;
      const int64_t a = std::max(q0, q_lo), e = std::min(q0 + len, q_hi);  // its in-image taps
      if (h >= 0 && h < g.H && a < e) {
        float* row = dx + ((n * g.C + ch) * g.H + h) * g.W;  // tap (q, s) lands on row[q sw + w_off]
        const float* src = b + j + (a - q0);
        if (pairs) {  // taps s = 0 and 1 (w_off 0 and 1): pixels 2q and 2q + 1
          if (once) {
            interleave2<false>(src, src + cols, e - a, row + 2 * a);
          } else {
            interleave2<true>(src, src + cols, e - a, row + 2 * a);
          }
        } else if (once) {
          for (int64_t q = a; q < e; ++q) row[q * g.sw + w_off] = src[q - a];
        } else {
          for (int64_t q = a; q < e; ++q) row[q * g.sw + w_off] += src[q - a];
        }
      }
      j += len;
    }
  }
}

int thread_count(const ConvGeometry& g) {
  // ~1 MFLOP per thread at least, or the parallel region costs more than it saves.
  const int64_t flops = 2 * g.N * g.K * g.pq() * g.crs();
  return flops >= (int64_t(1) << 21) ? omp_get_max_threads() : 1;
}

// ---------------------------------------------------------------------------
// f32 paths.

// Where the direct kernels (conv2d_direct.h) beat the implicit GEMM, from
// bench_conv and a driver on this VM (2 threads, batch 4, 3x3, same
// padding; the GEMM's time over the direct kernel's):
//   forward, 27 taps (3 -> 64 at 256^2): 1.7x; there the GEMM's packing
//     costs as much as its arithmetic;
//   forward, deep layers by output width Q: 256 -> 1.2-1.4x (64 -> 64),
//     1.15x (128 -> 64); 128 -> 1.1x; 64 and 32 -> 1.0x; 16 -> 0.7x
//     (one 16-pixel vector per row: 8 FMAs per 9 loads);
//   forward, few output channels K (the GEMM's A has K rows, so each packed
//     im2col element serves only K of them and the packing weighs more):
//     a grid of C 16-128 x K 16-128 x 16^2-96^2, batch 4 (session 23):
//     K = 16 1.2-1.8x at every width; K = 32 1.1-1.4x (0.98-1.28 at 16^2);
//     K = 64 1.0-1.2x from 32^2 on (0.9-1.04 at 16^2); K = 128 0.86-1.15x;
//   weight gradient, 27 taps: 3x (pixels in the lanes; its register tile
//     needs C*R*S <= 64);
//   weight gradient, deeper (output channels in the lanes): 64 -> 64 at
//     256^2 and at 128^2 1.4x, 128 -> 64 at 256^2 1.35x, 256 -> 128 at
//     128^2 1.2x, 128 -> 128, 128 -> 256 and 256 -> 256 at 128^2 1.1x;
//     with narrower rows it ties or loses (128 -> 256 at 64^2 1.0x,
//     256 -> 256 at 64^2 0.9x, 512 -> 512 at 32^2 0.64x, 512 -> 1024 at
//     16^2 0.44x, where its per-slab partial of dW, taps x K floats, is
//     19 MB). So: rows of >= 128 pixels and a partial of at most 4 MiB;
//     and for narrower rows, small dW (klanes_weight_grad_wins).
// Pointwise forwards stay plain GEMMs (nothing to pack but operands); their
// weight gradients may take the k-lanes kernel (klanes_weight_grad_wins).
// CRFSEG_CONV_DIRECT=0 in the environment keeps every convolution on the
// GEMM path (for A/B timing of whole models; read once).
bool direct_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("CRFSEG_CONV_DIRECT");
    return !(v && std::string(v) == "0");
  }();
  return enabled;
}
std::atomic<bool> g_b_in_place{[] {
  const char* v = std::getenv("CRFSEG_CONV_B_IN_PLACE");
  return !(v && std::string(v) == "0");
}()};

// A 1x1 convolution's image is a plain [C, H W] matrix: its GEMM can read it
// in place instead of packing it (blis_loops.h), unless its rows lie a
// multiple of 1 KiB apart, where a B micro-panel's rows would crowd into a
// few cache sets (the U-Net's 64^2 .. 16^2 planes; ResNet-50's 56^2, 28^2,
// 14^2 and 7^2 are not). bench/NOTES.md, change 28.
bool b_in_place_suits(int64_t row_floats) { return g_b_in_place.load() && row_floats % 256 != 0; }

// Strided along W (session 34: the kernel reads its rows as stride phases;
// batch 8, 2 threads, the GEMM's time / the direct kernel's): the ResNet
// stem (7x7 s2, 3 -> 64 at 224^2) 8.3-8.6 / 6.4-6.7 ms; 3x3 s2 32 -> 32 at
// 128^2 (batch 4) 1.2x; 64 -> 64 at 112^2 1.0x; but 2x2 s2 64 -> 128 at
// 256^2 (the U-Net's up-convolution, whose windows do not overlap: the
// GEMM's im2col is a plain reshuffle there) 0.85x. So with a stride only
// where windows overlap along W and K <= 64.
bool direct_forward_wins(const ConvGeometry& g) {
  const bool wins = g.crs() <= 32 || g.Q >= 128 || g.K <= 32 || (g.K <= 64 && g.Q >= 32);
  const bool stride_ok = g.sw == 1 || (g.S * g.dw > g.sw && g.K <= 64);
  return direct_enabled() && !g.is_pointwise() && wins && stride_ok && conv2d_direct_forward_applies(g);
}
bool direct_weight_grad_wins(const ConvGeometry& g) {
  return direct_enabled() && !g.is_pointwise() && g.crs() <= 32 && conv2d_direct_weight_grad_applies(g);
}
bool klanes_weight_grad_wins(const ConvGeometry& g) {
  // Narrower rows: where dW is small (C K <= 4096 for 3x3: 1.1-2.2x in
  // session 23's grid, batch 4, 16^2 to 96^2; C K = 8192-16384 from 64
  // wide: 1.1-1.35x; deeper, it ties or loses, above), and with at least 4
  // slabs (its unit of work, 32 rows of one image) to share among threads.
  // Not "one per thread": the result must not depend on the thread count.
  // The same rule holds for 1x1 layers (session 33, batch 8, 2 threads,
  // against the GEMM, whose transposed B pack is half its time): 56^2
  // 64 -> 256 1.4-1.5x, 256 -> 64 1.3x, 256 -> 128 1.2x; 28^2 128 -> 512
  // 0.9x, 512 -> 128 0.9x, 14^2 0.6-0.8x, 7^2 0.3x. A 1x1 layer of at most
  // 32 channels gets it too (the few-tap kernel wants R*S > 1): 32 -> 16
  // at 64^2, batch 4, 0.24 against 1.9-3.0 ms, whose B rows 16 KiB apart
  // share a few L1 sets.
  // And strided layers (session 34, its input rows stored as stride
  // phases; batch 8, 2 threads, against the GEMM): the ResNet stem (7x7 s2,
  // 3 -> 64 at 224^2) 6.5 against 10.5 ms; the U-Net's 2x2 s2
  // up-convolutions' convs 64 -> 128 at 256^2 16.8 against 20.6 (batch 4)
  // and 128 -> 256 at 128^2 13.1 against 16.5; where the rule says GEMM it
  // ties or loses (3x3 s2 256 -> 256 at 28^2 8.8 against 6.2, 2x2 s2 512 ->
  // 1024 at 32^2 21.5 against 13.1), missing two small wins (3x3 s2 128 at
  // 56^2 6.1 against 7.1, 1x1 s2 256 -> 512 at 56^2 6.9 against 7.8).
  const int64_t taps_k = g.crs() * g.K;
  const bool narrow_wins =
      (taps_k <= 36864 || (g.Q >= 64 && taps_k <= 147456)) && conv2d_direct_weight_grad_klanes_slabs(g) >= 4;
  // Its scratch holds one partial per 32-row slab of every image: at most
  // 2^24 floats (64 MiB) in all, else the GEMM (it needs none).
  return direct_enabled() && (g.crs() > 32 || g.is_pointwise()) && (g.Q >= 128 || narrow_wins) &&
         taps_k <= (1 << 20) && conv2d_direct_weight_grad_klanes_partials(g) <= (int64_t{1} << 24) &&
         conv2d_direct_weight_grad_klanes_applies(g);
}

// Small images (ResNet-50's layer3 and layer4: 14^2 and 7^2 output
// pixels) make thin GEMMs when each image is its own: 49 columns fill 49 of
// the 64 in two 32-column panels, each thread gets only a few blocks, and
// the packed weights (9.4 MB for 512 -> 512 3x3) stream from memory once
// per image for 49 columns of work. With the batch folded into the GEMM's
// columns, j = n P Q + p, the whole batch is one [K, N P Q] product: the
// weights are read once per block of columns, not once per image. It goes
// through a temporary and is then laid out NCHW (plus bias).
constexpr int64_t kFoldPixels = 256;
bool fold_batch(const ConvGeometry& g) { return g.N > 1 && g.pq() < kFoldPixels; }

// Winograd F(4x4, 3x3) (conv2d_winograd.h) before both, for 3x3 stride-1
// layers with enough channels. On images small enough to fold (fold_batch)
// a call transforms 36 K C filter values for few tiles, so there it needs
// 32 tiles over the batch (small_images_pay_winograd, session 35), or 16
// from 256 channels (few_tiles_pay_winograd, session 41). The lines below
// are session 24's and 35's; session 41 moved several (the measurements
// before winograd_backward_input_wins).
// Measured in session 24 against the paths
// above, batch 4 (ResNet shapes batch 8), 2 threads, time before / after:
//   forward and backward-input, C and K >= 64: 64 -> 64 at 256^2 1.2x,
//     64 -> 128 at 128^2 1.4-1.5x, 128 -> 128 at 128^2 and 128 -> 256 at
//     64^2 1.9x, 256 -> 256 at 64^2 2.1x, 512 -> 512 at 32^2 2.0x,
//     1024 -> 512 at 32^2 2.3x, 1024 -> 1024 at 16^2 1.4-1.6x; ResNet 64 at
//     56^2 1.4x, 256 at 14^2 1.1x, but 512 at 7^2 0.9-1.0x (7 = 4 + 3: a
//     quarter of the tiles' outputs are discarded; superseded for batches
//     of small images, below); 32 -> 32 at 64^2 0.7x,
//     3 -> 64 0.4x. So: C, K >= 64, outputs of 8 x 8 or more, and at least
//     2^25 multiply-adds (a 64 -> 64 layer at 64^2 of one image ties).
//   weight gradient, in bands (C K <= 256^2, conv2d_winograd.h): 64 -> 64
//     at 256^2 1.6x, 128 -> 64 at 256^2 1.7x, 64 -> 128 at 128^2 1.9x,
//     128 -> 128 at 128^2 2.2x, 256 -> 128 at 128^2 2.5x, 128 -> 256 and
//     256 -> 256 at 64^2 1.3-1.6x; ResNet batch 8: 64 at 56^2 1.5x, 128
//     at 28^2 1.6x, 256 at 14^2 1.1x; small: 64 at 64^2 one image 2x, 64
//     at 32^2 batch 4 1.2x. So: C, K >= 64 wherever it runs in bands.
//   weight gradient, whole batch (deeper): 512 -> 512 at 32^2 2.0x,
//     512 -> 1024 at 16^2 1.8x, but 512 at 7^2 batch 8 0.9x. So: C, K >=
//     128, outputs of 16 x 16 or more and at least 2^28 multiply-adds.
// CRFSEG_CONV_WINOGRAD=0 in the environment turns it off (read once).
bool winograd_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("CRFSEG_CONV_WINOGRAD");
    return !(v && std::string(v) == "0");
  }();
  return enabled;
}
int64_t multiply_adds(const ConvGeometry& g) { return g.N * g.pq() * g.crs() * g.K; }
// Small images, batched (session 35, Zen 5 VM, 2 threads; ms before /
// Winograd, medians of 21 calls alternated; tiles = N ceil(P / 4)
// ceil(Q / 4), 4 x 4 outputs each):
//   forward, backward-input: 256 -> 256 at 14^2 batch 8 (128 tiles)
//     5.31 / 3.16, 5.31 / 3.07; 512 at 14^2 batch 2 6.87 / 5.06, 12.3 /
//     5.10; 512 at 7^2 batch 8 (32 tiles) 6.30 / 5.35, 7.31 / 5.90; 512 at
//     8^2 batch 8 7.12 / 6.31, 8.60 / 6.74; 64 at 14^2 batch 8 0.49 /
//     0.47, 0.53 / 0.46. But 512 at 7^2 and 8^2 batch 4 (16 tiles, where
//     the filter transform dominates) 0.73-0.93x, and 10^2 (12^2 computed:
//     31% of the outputs discarded) 0.73-0.88x: 256 batch 4, 128 batch 8.
//   weight gradient, over the whole batch (small images of 128 channels
//     and more are never in bands, conv2d_winograd_weight_grad_in_bands;
//     the bands of folded 64-channel images are not taken: bands of 4 and
//     9 tiles lost 0.48-0.51x to the GEMM at 8^2 and 10^2, and 64 at 14^2
//     batch 8 gained 1.06x): 512 at 14^2 batch 4
//     9.88 / 7.90, 256 at 14^2 batch 8 5.18 / 4.32; at 8^2 1024 batch 8
//     28.0 / 19.3 and 512 batch 16 14.6 / 10.3, but 256 and 512 batch 8
//     0.86x and 0.93x, 512 at 7^2 batch 8 0.97x.
// So, where the batch folds: 32 tiles or more, at most a quarter of their
// outputs discarded; for the weight gradient also 12 x 12 outputs. (The
// old paths: the folded GEMM, or the direct kernels.) Session 41's
// kernels won at 16 tiles too (512 at 7^2 and 8^2 batch 4 0.87, 0.79):
// few_tiles_pay_winograd.
// At most a quarter of the tiles' 4 x 4 outputs fall outside the image.
bool discards_at_most_a_quarter(const ConvGeometry& g) {
  return 4 * g.N * g.pq() >= 3 * 16 * conv2d_winograd_tiles(g);
}
bool small_images_pay_winograd(const ConvGeometry& g) {
  return conv2d_winograd_tiles(g) >= 32 && discards_at_most_a_quarter(g);
}
// Session 41 (Zen 5 VM, 2 threads, alternated medians, Winograd's time
// over the folded GEMM's): 16 tiles pay from 256 channels too, forward
// 256 at 8^2 batch 4 0.81, 512 0.79, 1024 0.70, 2048 -> 1024 0.72, 512 at
// 7^2 0.87; not at 128 channels (1.13). The weight gradient takes them
// from 1024 channels, the backward-input has its own rule (both below).
bool few_tiles_pay_winograd(const ConvGeometry& g, int64_t min_channels) {
  return std::min(g.C, g.K) >= min_channels && conv2d_winograd_tiles(g) >= 16 && discards_at_most_a_quarter(g);
}
bool winograd_forward_wins(const ConvGeometry& g) {
  if (!winograd_enabled() || !conv2d_winograd_applies(g) || std::min(g.C, g.K) < 64 ||
      multiply_adds(g) < (int64_t{1} << 25))
    return false;
  if (fold_batch(g)) {
    return std::min(g.P, g.Q) >= 7 && (small_images_pay_winograd(g) || few_tiles_pay_winograd(g, 256));
  }
  return std::min(g.P, g.Q) >= 8;
}
// Small layers (session 41, Zen 5 VM, 2 threads; Winograd's time over
// the old path's, medians of 9-15 alternated pairs, each call with its
// scratch from the allocator's cache). The thresholds above were set by
// session 24's kernels; today's Winograd wins far below them:
//   backward-input, where the forward rule says no (its 2^25
//     multiply-adds): 64 at 16^2 one image 0.73, two 0.63; 64 at 24^2 0.76;
//     128 at 12^2 0.68, at 14^2 0.64; 128 -> 64 at 16^2 0.80; 64 at 10^2
//     and 12^2 0.87-0.89; folded: 64 at 14^2 batch 2 0.67, 128 at 12^2
//     batch 2 (18 tiles) 0.81, 128 at 10^2 batch 2 0.84, 256 at 7^2 batch 4
//     (16 tiles) 0.70, 128 at 7^2 and 8^2 batch 4 (16 tiles) 0.76, 0.89,
//     128 -> 256 and 256 -> 128 at 8^2 batch 4 0.81, 0.66. But 8 x 8
//     outputs of one image lose (64 -> 128 1.32, 128 1.14), and folded
//     64-channel images of 8 or 16 tiles (1.14-1.20). The forward stays on
//     its rule: on the same layers it ties (0.96-1.10) except at 14^2
//     (0.73-0.75).
//   weight gradient, whole batch, under 2^28 multiply-adds or 128
//     channels: 128 at 16^2 batch 1, 2, 4 0.70, 0.55, 0.48; 128 at 24^2
//     0.73, at 32^2 0.54; 256 at 16^2 0.67; 64 at 32^2 0.56, at 48^2 0.60,
//     at 16^2 batch 2 and 3 0.75, 0.69; 64 -> 256 and 256 -> 64 at 32^2
//     0.71, 0.65; and past the 2^28 line on images that discard a quarter
//     of the computed outputs, from 256 channels: 256 at 17^2 batch 2 and
//     4 0.86, 0.80; 512 at 17^2 0.96. With 64 channels such images lose
//     (64 at 17^2 1.32), as do images of fewer than 32 tiles (64 at 16^2
//     one image 0.98, at 20^2 1.07); from 128 channels they are level
//     (128 at 17^2 batch 2 1.03). Folded: 128 at 14^2 batch 4 and 8 0.73,
//     0.61; 256 at 14^2 batch 2 0.75; 64 at 14^2 batch 2 0.73 (batch 4 and
//     up would run in bands, which lost at these sizes, so they stay on
//     the GEMM); at 12^2 256 and 512 channels 0.70-0.82 (the old line, 128
//     channels and 2^28 multiply-adds, stays: 128 at 12^2 batch 4 1.24).
bool winograd_backward_input_wins(const ConvGeometry& g) {
  if (winograd_forward_wins(g)) return true;
  if (!winograd_enabled() || !conv2d_winograd_applies(g) || std::min(g.C, g.K) < 64) return false;
  if (fold_batch(g)) {
    return std::min(g.P, g.Q) >= 7 &&
           (small_images_pay_winograd(g) || (std::min(g.C, g.K) >= 128 && conv2d_winograd_tiles(g) >= 16));
  }
  return std::min(g.P, g.Q) >= 10;
}
bool winograd_weight_grad_wins(const ConvGeometry& g) {
  if (!winograd_enabled() || !conv2d_winograd_applies(g) || std::min(g.C, g.K) < 64) return false;
  if (fold_batch(g)) {
    if (conv2d_winograd_weight_grad_in_bands(g)) return false;
    // 16 tiles of 8 x 8 images only from 1024 channels: 2048 -> 1024 batch 4
    // 0.66, 1024 0.79, 512 0.93, 256 1.15.
    if (std::min(g.P, g.Q) >= 8 && few_tiles_pay_winograd(g, 1024)) return true;
    if (!small_images_pay_winograd(g)) return false;
    return std::min(g.P, g.Q) >= 14 ||
           (std::min(g.P, g.Q) >= 12 && std::min(g.C, g.K) >= 128 && multiply_adds(g) >= (int64_t{1} << 28));
  }
  if (conv2d_winograd_weight_grad_in_bands(g)) return true;
  if (std::min(g.P, g.Q) < 16) return false;
  return std::min(g.C, g.K) >= 128 || small_images_pay_winograd(g);
}

// The forward pass with the weights already packed (prepack_a's layout of
// the K x CRS weight matrix): they are the A operand of every block.
void forward_f32_packed(const ConvGeometry& g, const float* x, const CpuArray<float>& w_packed, const float* bias,
                        bool relu, float* y) {
  const BlisConfig& cfg = sgemm_blis_config();
  const int threads = thread_count(g);
  const BlockGrid grid = choose_block_grid(cfg, g.K, g.pq(), ceil_div(threads, g.N), kConvCols, /*a_prepacked=*/true);
  const int64_t blocks = grid.row_blocks * grid.col_blocks;
  const int64_t w_rows = ceil_div(g.K, cfg.mr) * cfg.mr;
#pragma omp parallel num_threads(threads)
  {
    const BlisWorkspace ws(cfg, g.crs(), grid.nb);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < g.N * blocks; ++t) {
      const int64_t n = t / blocks, b = t % blocks;
      const int64_t i0 = (b / grid.col_blocks) * grid.mb, j0 = (b % grid.col_blocks) * grid.nb;
      const int64_t m = std::min(grid.mb, g.K - i0), cols = std::min(grid.nb, g.pq() - j0);
      float* yb = y + (n * g.K + i0) * g.pq() + j0;
      // conv + bias fused: the block starts as the bias and the GEMM adds to it (beta = 1).
      if (bias) {
        for (int64_t i = 0; i < m; ++i) std::fill(yb + i * g.pq(), yb + i * g.pq() + cols, bias[i0 + i]);
      }
      const float beta = bias ? 1.0f : 0.0f;
      const float* x_img = x + n * g.C * g.hw();
      const AOperand a{w_packed.get(), 0, false, 1.0f, w_rows, i0};
      if (g.is_pointwise()) {
        const MatrixOperand op{x_img, g.hw(), false};
        blis_block(cfg, m, cols, g.crs(), a, matrix_packer(op, b_in_place_suits(g.hw())), j0, beta, yb, g.pq(), ws);
      } else {
        const ForwardPackCtx ctx{&g, x_img};
        blis_block(cfg, m, cols, g.crs(), a, {pack_forward_block, &ctx, pack_forward_block}, j0, beta, yb, g.pq(), ws);
      }
      if (relu) {  // while the block is still in cache
        for (int64_t i = 0; i < m; ++i)
          for (float& v : std::span(yb + i * g.pq(), static_cast<size_t>(cols))) v = std::max(v, 0.0f);
      }
    }
  }
}

struct FoldedPointwiseCtx {
  const float* x;  // [N, C, P Q]
  int64_t C, pq;
};
// op(B)[c][j] = x[j / PQ, c, j % PQ]: contiguous runs within each image.
void pack_folded_pointwise(const void* ctx_ptr, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                           float* dst) {
  const auto& ctx = *static_cast<const FoldedPointwiseCtx*>(ctx_ptr);
  for (int64_t k = 0; k < kc; ++k) {
    float* d = dst + k * nr;
    for (int64_t j = j0; j < j0 + cols;) {
      const int64_t n = j / ctx.pq, p = j % ctx.pq, len = std::min(ctx.pq - p, j0 + cols - j);
      copy_floats(ctx.x + (n * ctx.C + p0 + k) * ctx.pq + p, len, d + (j - j0));
      j += len;
    }
    std::fill(d + cols, d + nr, 0.0f);
  }
}

void forward_folded(const ConvGeometry& g, const float* x, const CpuArray<float>& w_packed, const float* bias,
                    bool relu, float* y) {
  const int threads = thread_count(g);
  const int64_t cols_total = g.N * g.pq();
  const CpuArray<float> tmp = cpu_array<float>(g.K * cols_total);
  const FoldedPointwiseCtx pointwise{x, g.C, g.pq()};
  const ForwardPackCtx windows{&g, x};
  const BPanelPacker packer = g.is_pointwise() ? BPanelPacker{pack_folded_pointwise, &pointwise}
                                               : BPanelPacker{pack_forward_block, &windows, pack_forward_block};
  blis_sgemm_packed_a(sgemm_blis_config(), threads, w_packed.get(), g.K, cols_total, g.crs(), packer, 0.0f,
                      tmp.get(), cols_total);
  // tmp [K, N PQ] -> y [N, K, PQ], the bias added (and ReLU applied) on the way.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < g.N * g.K; ++t) {
    const int64_t n = t / g.K, k = t % g.K;
    const float* src = tmp.get() + k * cols_total + n * g.pq();
    float* dst = y + t * g.pq();
    const float b = bias ? bias[k] : 0.0f;
    if (relu) {
      for (int64_t p = 0; p < g.pq(); ++p) dst[p] = std::max(src[p] + b, 0.0f);
    } else {
      for (int64_t p = 0; p < g.pq(); ++p) dst[p] = src[p] + b;
    }
  }
}

// The forward from weights already packed as the GEMM's A (prepack_a's layout).
void forward_prepacked(const ConvGeometry& g, const float* x, const CpuArray<float>& w_packed, const float* bias,
                       bool relu, float* y) {
  if (fold_batch(g)) {
    forward_folded(g, x, w_packed, bias, relu, y);
  } else {
    forward_f32_packed(g, x, w_packed, bias, relu, y);
  }
}

void forward_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, bool relu, float* y) {
  if (g.N == 0) return;
  forward_prepacked(g, x, prepack_a(sgemm_blis_config(), false, w, g.crs(), g.K, g.crs(), 1.0f), bias, relu, y);
}

// Stride 1: dx is itself a stride-1 convolution of dy with the kernel
// flipped in space and transposed in channels,
//   dx[n,c,h,w] = sum_{k,r,s} W[k,c,R-1-r,S-1-s] dy[n,k, h - dh(R-1) + ph + r dh, ...],
// i.e. padding dh(R-1) - ph. It then runs on the forward path (implicit
// im2col, no col2im). Needs that padding >= 0 (true for "same" convs).
// Flipping copies the weights once more, which costs more than it saves
// when the images are tiny (N P Q < 64, e.g. ResNet's layer4 on small
// inputs, where the layer is bound by reading its 2M weights).
bool backward_input_as_conv(const ConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.dh * (g.R - 1) >= g.ph && g.dw * (g.S - 1) >= g.pw && g.N * g.pq() >= 64;
}

// The weights of backward_input_flipped's convolution,
//   Wf[c, (k, r, s)] = W[k, c, R-1-r, S-1-s]   (C x K*R*S),
// packed straight into prepack_a's layout (blis_loops.h) without building
// Wf (which cost a full strided copy plus prepack_a's transpose). Every
// registered MR is at most 16, what transpose_pack takes.
CpuArray<float> prepack_flipped_weights(const ConvGeometry& g, const float* w) {
  const BlisConfig& cfg = sgemm_blis_config();
  const int64_t rs = g.R * g.S, depth = g.K * rs, mr = cfg.mr;
  const int64_t panels = ceil_div(g.C, mr), mpad = panels * mr, kc_step = cfg.kc;
  CpuArray<float> packed = cpu_array<float>(mpad * depth);
  const int64_t tasks = ceil_div(depth, kc_step) * panels;
  const bool parallel = mpad * depth >= (int64_t{1} << 16) && !omp_in_parallel();
  const CpuArray<float> scratch = cpu_array<float>((parallel ? omp_get_max_threads() : 1) * mr * kc_step);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t pc = (t / panels) * kc_step, c0 = (t % panels) * mr;
    const int64_t kc = std::min(kc_step, depth - pc), rows = std::min(mr, g.C - c0);
    float* dst = packed.get() + pc * mpad + c0 * kc;
    // Rows of Wf first (row c: the taps of each k, reversed), in a scratch
    // block that stays in L1, then one transposing copy into the panel.
    float* rows_buf = scratch.get() + omp_get_thread_num() * mr * kc_step;
    const float* src[16];
    for (int64_t r = 0; r < rows; ++r) {
      float* out = rows_buf + r * kc;
      int64_t k = pc / rs, tap = pc % rs;  // column pc + kk of Wf is (k, tap), stepped along
      const float* wk = w + (k * g.C + c0 + r) * rs;
      for (int64_t kk = 0; kk < kc; ++kk) {
        out[kk] = wk[rs - 1 - tap];
        if (++tap == rs) {
          tap = 0;
          wk += g.C * rs;
        }
      }
      src[r] = out;
    }
    transpose_pack(src, static_cast<int>(rows), kc, 1.0f, dst, mr);
    for (int64_t kk = 0; kk < kc; ++kk)
      for (int64_t r = rows; r < mr; ++r) dst[kk * mr + r] = 0.0f;
  }
  return packed;
}

// The convolution backward_input_flipped runs: dy as its input, dx as its output.
ConvGeometry flipped_geometry(const ConvGeometry& g) {
  ConvGeometry f = g;
  f.C = g.K, f.H = g.P, f.W = g.Q;
  f.K = g.C, f.P = g.H, f.Q = g.W;
  f.ph = g.dh * (g.R - 1) - g.ph;
  f.pw = g.dw * (g.S - 1) - g.pw;
  return f;
}

void backward_input_flipped(const ConvGeometry& g, const float* dy, const float* w, float* dx, bool allow_direct) {
  const ConvGeometry f = flipped_geometry(g);
  if (allow_direct && direct_forward_wins(f)) {
    // The direct kernel takes the flipped weights as a plain [C, K R S] matrix.
    const int64_t rs = g.R * g.S;
    const CpuArray<float> wf = cpu_array<float>(g.C * g.K * rs);
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t t = 0; t < rs; ++t) wf[(c * g.K + k) * rs + t] = w[(k * g.C + c) * rs + rs - 1 - t];
    conv2d_direct_forward(f, dy, wf.get(), nullptr, dx);
    return;
  }
  forward_prepacked(f, dy, prepack_flipped_weights(g, w), nullptr, false, dx);
}

void backward_input_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx, bool allow_direct) {
  if (g.N == 0 || g.C == 0) return;
  if (backward_input_as_conv(g)) {
    backward_input_flipped(g, dy, w, dx, allow_direct);
    return;
  }
  // Strided (or tiny) convolutions: dcol = W^T . [dy_0 | dy_1 | ...] one
  // column chunk at a time, col2im-added into dx (stored where the windows
  // tile the image, col2im_covers_once, or spread with zeros between them,
  // col2im_spreads_once). Tasks are groups of
  // channels: a group's rows of W^T scatter only into its own channels, so
  // tasks never collide. W^T is packed once; group boundaries fall on
  // multiples of MR rows so each group starts on a packed micro-panel.
  const BlisConfig& cfg = sgemm_blis_config();
  const int threads = thread_count(g);
  const int64_t rs = g.R * g.S;
  const int64_t align = cfg.mr / std::gcd(rs, cfg.mr);  // channels per MR-aligned row boundary
  const int64_t per_group = ceil_div(ceil_div(g.C, threads), align) * align;
  const int64_t groups = ceil_div(g.C, per_group);
  const int64_t cols_total = g.N * g.pq();
  const int64_t chunk = std::min(kConvCols, cols_total);
  const CpuArray<float> wt_packed = prepack_a(cfg, true, w, g.crs(), g.crs(), g.K, 1.0f);
  const int64_t wt_rows = ceil_div(g.crs(), cfg.mr) * cfg.mr;
  const BatchedDyCtx ctx{&g, dy};
  const bool zero_first = !col2im_covers_once(g) && !col2im_spreads_once(g);
#pragma omp parallel num_threads(threads)
  {
    const BlisWorkspace ws(cfg, g.K, chunk);
    const CpuArray<float> buf = cpu_array<float>(per_group * rs * chunk);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < groups; ++t) {
      const int64_t c0 = t * per_group, c1 = std::min(g.C, c0 + per_group);
      const int64_t rows = (c1 - c0) * rs;
      // The group zeroes its own channels: on every thread, not one
      // thread's pass over all of dx before the region.
      if (zero_first) {
        for (int64_t n = 0; n < g.N; ++n) std::fill_n(dx + (n * g.C + c0) * g.hw(), (c1 - c0) * g.hw(), 0.0f);
      }
      const AOperand a{wt_packed.get(), 0, false, 1.0f, wt_rows, c0 * rs};
      for (int64_t j0 = 0; j0 < cols_total; j0 += chunk) {
        const int64_t cols = std::min(chunk, cols_total - j0);
        blis_block(cfg, rows, cols, g.K, a, {pack_batched_dy_block, &ctx, pack_batched_dy_block}, j0, 0.0f, buf.get(),
                   cols, ws);
        col2im_chunk(g, buf.get(), c0, rows, j0, cols, dx);
      }
    }
  }
}

// One image's term of the weight gradient: out [K, ldc] = dy_n . op(B) +
// beta * out, op(B) [PQ, ldc] given by `b`. dy_n is packed once (prepack_a)
// and shared, so a block may hold all K rows and the threads split the
// columns: every packed entry of op(B) is packed once.
void weight_grad_image(const ConvGeometry& g, const float* dy_n, const BPanelPacker& b, const BlockGrid& grid,
                       int threads, float beta, float* out, int64_t ldc) {
  const BlisConfig& cfg = sgemm_blis_config();
  const int64_t dy_rows = ceil_div(g.K, cfg.mr) * cfg.mr;
  const CpuArray<float> dy_packed = prepack_a(cfg, false, dy_n, g.pq(), g.K, g.pq(), 1.0f);
#pragma omp parallel num_threads(threads)
  {
    const BlisWorkspace ws(cfg, g.pq(), grid.nb);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < grid.row_blocks * grid.col_blocks; ++t) {
      const int64_t i0 = (t / grid.col_blocks) * grid.mb, j0 = (t % grid.col_blocks) * grid.nb;
      const int64_t m = std::min(grid.mb, g.K - i0), cols = std::min(grid.nb, ldc - j0);
      const AOperand a{dy_packed.get(), 0, false, 1.0f, dy_rows, i0};
      blis_block(cfg, m, cols, g.pq(), a, b, j0, beta, out + i0 * ldc + j0, ldc, ws);
    }
  }
}

// Small weight gradients (the ResNet stem's 64 x 147, 1x1 layers on small
// images) cut into few column blocks: the stem's five 32-column panels split
// 3 : 2 between two threads, and the idle thread waited a fifth of the pass.
// There the images are the tasks instead: up to kImageGroups groups of consecutive
// images, each summed into its own partial of dW by one thread, the partials
// then added in group order. The groups do not depend on the thread count,
// so neither do the sums.
// From 4 images: with fewer, fewer threads than 2 would share the pass.
constexpr int64_t kImageGroups = 8;
bool image_groups_win(const ConvGeometry& g) {
  return g.N >= 4 && g.K * g.crs() <= (int64_t{1} << 15);
}

void backward_weight_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  if (g.N == 0) {  // an empty batch contributes nothing
    std::fill(dw, dw + g.K * g.crs(), 0.0f);
    return;
  }
  const BlisConfig& cfg = sgemm_blis_config();
  const int threads = thread_count(g);
  // dW [K, CRS] = sum_n dy_n [K, PQ] . col(x_n)^T, image by image
  // (weight_grad_image). Threads split dW into blocks with no cross-thread
  // reduction, so each dW entry sums the images in order, over the same K
  // slices, whatever the thread count; or (image_groups_win) they take
  // groups of images.
  const bool by_groups = image_groups_win(g);
  const int image_threads = by_groups ? 1 : threads;
  const BlockGrid grid = choose_block_grid(cfg, g.K, g.crs(), image_threads, kConvCols, /*a_prepacked=*/true);
  // C >= 16 (not 1x1): through a channels-last copy of each image, with dW's
  // columns in (r, s, c) order (pack_channels_last_block), permuted at the end.
  const bool channels_last = !g.is_pointwise() && g.C >= 16;
  const int64_t wp = padded_cols(g), xt_floats = channels_last ? padded_rows(g) * wp * g.C : 0;
  const int64_t dw_floats = g.K * g.crs();
  const int64_t per_group = by_groups ? ceil_div(g.N, kImageGroups) : g.N, groups = ceil_div(g.N, per_group);
  // One channels-last image per concurrent task; partials for groups 1.. (group 0 sums into the result).
  const int slots = by_groups ? static_cast<int>(std::min<int64_t>(threads, groups)) : 1;
  const CpuArray<float> xt = cpu_array<float>(slots * xt_floats);
  const CpuArray<float> dw_rsc = cpu_array<float>(channels_last ? dw_floats : 0);
  const CpuArray<float> partials = cpu_array<float>((groups - 1) * dw_floats);
  float* result = channels_last ? dw_rsc.get() : dw;
  // Image n's term, added to out (or written, with beta 0) on `n_threads` threads.
  auto image_term = [&](int64_t n, float beta, float* out, float* xt_n, int n_threads) {
    const float* x_img = x + n * g.C * g.hw();
    const float* dy_n = dy + n * g.K * g.pq();
    if (channels_last) {
      to_channels_last(g, x_img, xt_n);
      const ChannelsLastCtx ctx{&g, xt_n, wp};
      weight_grad_image(g, dy_n, {pack_channels_last_block, &ctx, pack_channels_last_block}, grid, n_threads, beta,
                        out, g.crs());
    } else if (g.is_pointwise()) {
      const MatrixOperand op{x_img, g.hw(), true};  // op(B)(pixel, c) = x[c, pixel]
      weight_grad_image(g, dy_n, {pack_b_matrix, &op}, grid, n_threads, beta, out, g.crs());
    } else {
      const ForwardPackCtx ctx{&g, x_img};
      weight_grad_image(g, dy_n, {pack_weight_grad_panel, &ctx}, grid, n_threads, beta, out, g.crs());
    }
  };
  if (by_groups) {
    // The tasks allocate their packed operands (prepack_a, the workspace):
    // an out-of-memory error is carried out of the region, not left to
    // terminate the program.
    std::exception_ptr error;
#pragma omp parallel for schedule(static) num_threads(slots)
    for (int64_t grp = 0; grp < groups; ++grp) {
      try {
        float* out = grp == 0 ? result : partials.get() + (grp - 1) * dw_floats;
        for (int64_t n = grp * per_group; n < std::min(g.N, (grp + 1) * per_group); ++n)
          image_term(n, n == grp * per_group ? 0.0f : 1.0f, out, xt.get() + omp_get_thread_num() * xt_floats, 1);
      } catch (...) {
#pragma omp critical(crfseg_conv_weight_grad_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    for (int64_t grp = 1; grp < groups; ++grp) {
      const float* part = partials.get() + (grp - 1) * dw_floats;
      for (int64_t i = 0; i < dw_floats; ++i) result[i] += part[i];
    }
  } else {
    for (int64_t n = 0; n < g.N; ++n) image_term(n, n == 0 ? 0.0f : 1.0f, result, xt.get(), threads);
  }
  if (!channels_last) return;
  const int64_t rs = g.R * g.S, cols = g.crs();
#pragma omp parallel for schedule(static) if (g.K * cols >= (int64_t{1} << 16) && !omp_in_parallel())
  for (int64_t k = 0; k < g.K; ++k) {
    const float* src = dw_rsc.get() + k * cols;
    float* out = dw + k * cols;
    for (int64_t t = 0; t < rs; ++t)
      for (int64_t c = 0; c < g.C; ++c) out[c * rs + t] = src[t * g.C + c];
  }
}

// ---------------------------------------------------------------------------
// f64 paths: explicit im2col + dgemm, one image at a time.

void forward_f64(const ConvGeometry& g, const double* x, const double* w, const double* bias, double* y) {
  std::vector<double> col(static_cast<size_t>(g.crs() * g.pq()));
  for (int64_t n = 0; n < g.N; ++n) {
    double* yn = y + n * g.K * g.pq();
    if (bias) {
      for (int64_t k = 0; k < g.K; ++k) std::fill(yn + k * g.pq(), yn + (k + 1) * g.pq(), bias[k]);
    }
    im2col(g, x + n * g.C * g.hw(), col.data());
    dgemm(false, false, g.K, g.pq(), g.crs(), 1.0, w, g.crs(), col.data(), g.pq(), bias ? 1.0 : 0.0, yn, g.pq());
  }
}

void backward_input_f64(const ConvGeometry& g, const double* dy, const double* w, double* dx) {
  std::vector<double> col(static_cast<size_t>(g.crs() * g.pq()));
  std::fill(dx, dx + g.N * g.C * g.hw(), 0.0);
  for (int64_t n = 0; n < g.N; ++n) {
    dgemm(true, false, g.crs(), g.pq(), g.K, 1.0, w, g.crs(), dy + n * g.K * g.pq(), g.pq(), 0.0, col.data(),
          g.pq());
    col2im(g, col.data(), dx + n * g.C * g.hw());
  }
}

void backward_weight_f64(const ConvGeometry& g, const double* dy, const double* x, double* dw) {
  std::vector<double> col(static_cast<size_t>(g.crs() * g.pq()));
  if (g.N == 0) std::fill(dw, dw + g.K * g.crs(), 0.0);
  for (int64_t n = 0; n < g.N; ++n) {
    im2col(g, x + n * g.C * g.hw(), col.data());
    dgemm(false, true, g.K, g.crs(), g.pq(), 1.0, dy + n * g.K * g.pq(), g.pq(), col.data(), g.pq(),
          n == 0 ? 0.0 : 1.0, dw, g.crs());
  }
}

}  // namespace

template <typename T>
void im2col(const ConvGeometry& g, const T* x_img, T* col) {
  const int64_t rs = g.R * g.S;
#pragma omp parallel for schedule(static) if (g.crs() * g.pq() > (1 << 16))
  for (int64_t crs = 0; crs < g.crs(); ++crs) {
    const int64_t ch = crs / rs, r = (crs / g.S) % g.R, s = crs % g.S;
    const T* xc = x_img + ch * g.hw();
    T* row = col + crs * g.pq();
    for (int64_t p = 0; p < g.P; ++p) {
      const int64_t h = p * g.sh - g.ph + r * g.dh;
      for (int64_t q = 0; q < g.Q; ++q) {
        const int64_t w = q * g.sw - g.pw + s * g.dw;
        row[p * g.Q + q] = (h >= 0 && h < g.H && w >= 0 && w < g.W) ? xc[h * g.W + w] : T(0);
      }
    }
  }
}

template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* dx_img) {
  const int64_t rs = g.R * g.S;
  // Parallel over channels: the taps of one channel only touch that channel.
#pragma omp parallel for schedule(static) if (g.crs() * g.pq() > (1 << 16))
  for (int64_t ch = 0; ch < g.C; ++ch) {
    T* dxc = dx_img + ch * g.hw();
    for (int64_t t = 0; t < rs; ++t) {
      const int64_t r = t / g.S, s = t % g.S;
      const T* row = col + (ch * rs + t) * g.pq();
      for (int64_t p = 0; p < g.P; ++p) {
        const int64_t h = p * g.sh - g.ph + r * g.dh;
        if (h < 0 || h >= g.H) continue;
        for (int64_t q = 0; q < g.Q; ++q) {
          const int64_t w = q * g.sw - g.pw + s * g.dw;
          if (w >= 0 && w < g.W) dxc[h * g.W + w] += row[p * g.Q + q];
        }
      }
    }
  }
}

bool conv2d_forward_takes_winograd(const ConvGeometry& g) { return winograd_forward_wins(g); }
bool conv2d_backward_input_takes_winograd(const ConvGeometry& g) { return winograd_backward_input_wins(g); }
bool conv2d_weight_grad_takes_winograd(const ConvGeometry& g) { return winograd_weight_grad_wins(g); }
bool set_conv_b_in_place(bool on) { return g_b_in_place.exchange(on); }
bool conv_b_in_place() { return g_b_in_place.load(); }
bool conv2d_forward_reads_b_in_place(const ConvGeometry& g) {
  return g.is_pointwise() && !fold_batch(g) && b_in_place_suits(g.hw());
}
bool conv2d_forward_takes_direct(const ConvGeometry& g) { return !winograd_forward_wins(g) && direct_forward_wins(g); }
bool conv2d_forward_folds_batch(const ConvGeometry& g) {
  return !winograd_forward_wins(g) && !direct_forward_wins(g) && fold_batch(g);
}
bool conv2d_backward_input_takes_direct(const ConvGeometry& g) {
  return !winograd_backward_input_wins(g) && backward_input_as_conv(g) && direct_forward_wins(flipped_geometry(g));
}
bool conv2d_weight_grad_takes_direct(const ConvGeometry& g) {
  return !winograd_weight_grad_wins(g) && (direct_weight_grad_wins(g) || klanes_weight_grad_wins(g));
}

void conv2d_forward_gemm(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                         bool relu) {
  forward_f32(g, x, w, bias, relu, y);
}
void conv2d_backward_weight_gemm(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  backward_weight_f32(g, dy, x, dw);
}
void conv2d_backward_input_gemm(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  backward_input_f32(g, dy, w, dx, /*allow_direct=*/false);
}

// A strided 1x1 convolution (ResNet's downsampling layers) reads one input
// pixel per output pixel: x subsampled to [N, C, P, Q] and then a plain
// pointwise convolution. The GEMM's packers otherwise gather the strided
// pixels an output row at a time, per channel: for 512 -> 1024 at 28^2
// stride 2, batch 4, the gather was 13% of the forward (perf), at 4.6
// GB/s. Session 41 (Zen 5 VM, 2 threads, medians of 15-20 calls, two
// rounds, before / after): weight gradient 256 -> 512 at 56^2 batch 4
// 5.29 / 3.73 and 5.44 / 4.06 ms, 512 -> 1024 at 28^2 2.79 / 2.34, batch 1
// 1.07 / 0.72, 1024 -> 2048 at 14^2 4.31 / 3.04; forward 512 -> 1024 at
// 28^2 batch 4 2.50 / 2.32, batch 1 0.82 / 0.74, 1024 -> 2048 3.53 /
// 3.19, but at 56^2 (rows of 28 outputs) level or 2-5% slower: the
// forward subsamples where output rows are under half a micro-panel.
bool strided_pointwise(const ConvGeometry& g) {
  return g.R == 1 && g.S == 1 && (g.sh > 1 || g.sw > 1) && g.ph == 0 && g.pw == 0;
}
// xs[n, c, p, q] = x[n, c, p sh, q sw]; g's pointwise twin over xs.
ConvGeometry subsample_input(const ConvGeometry& g, const float* x, float* xs) {
  const int threads = thread_count(g);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
    const float* src = x + nc * g.hw();
    float* dst = xs + nc * g.pq();
    for (int64_t p = 0; p < g.P; ++p) {
      const float* row = src + p * g.sh * g.W;
      for (int64_t q = 0; q < g.Q; ++q) dst[p * g.Q + q] = row[q * g.sw];
    }
  }
  ConvGeometry s = g;
  s.H = g.P, s.W = g.Q, s.sh = s.sw = 1;
  return s;
}

template <>
void conv2d_forward<float>(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                           bool relu) {
  if (strided_pointwise(g) && g.Q < 16) {
    const CpuArray<float> xs = cpu_array<float>(g.N * g.C * g.pq());
    return conv2d_forward<float>(subsample_input(g, x, xs.get()), xs.get(), w, bias, y, relu);
  }
  if (winograd_forward_wins(g)) return conv2d_winograd_forward(g, x, w, bias, y, relu);
  if (direct_forward_wins(g)) return conv2d_direct_forward(g, x, w, bias, y, relu);
  forward_f32(g, x, w, bias, relu, y);
}
template <>
void conv2d_forward<double>(const ConvGeometry& g, const double* x, const double* w, const double* bias, double* y,
                            bool relu) {
  forward_f64(g, x, w, bias, y);
  if (relu) {
    for (double& v : std::span(y, static_cast<size_t>(g.N * g.K * g.pq()))) v = std::max(v, 0.0);
  }
}
template <>
void conv2d_backward_input<float>(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (winograd_backward_input_wins(g)) return conv2d_winograd_backward_input(g, dy, w, dx);
  backward_input_f32(g, dy, w, dx, /*allow_direct=*/true);
}
template <>
void conv2d_backward_input<double>(const ConvGeometry& g, const double* dy, const double* w, double* dx) {
  backward_input_f64(g, dy, w, dx);
}
template <>
void conv2d_backward_weight<float>(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  if (strided_pointwise(g)) {
    const CpuArray<float> xs = cpu_array<float>(g.N * g.C * g.pq());
    return conv2d_backward_weight<float>(subsample_input(g, x, xs.get()), dy, xs.get(), dw, db);
  }
  if (winograd_weight_grad_wins(g)) {
    conv2d_winograd_backward_weight(g, dy, x, dw);
    if (db) conv2d_backward_bias(g, dy, db);
    return;
  }
  if (direct_weight_grad_wins(g)) return conv2d_direct_backward_weight(g, dy, x, dw, db);
  if (klanes_weight_grad_wins(g)) return conv2d_direct_backward_weight_klanes(g, dy, x, dw, db);
  backward_weight_f32(g, dy, x, dw);
  if (db) conv2d_backward_bias(g, dy, db);
}
template <>
void conv2d_backward_weight<double>(const ConvGeometry& g, const double* dy, const double* x, double* dw,
                                    double* db) {
  backward_weight_f64(g, dy, x, dw);
  if (db) conv2d_backward_bias(g, dy, db);
}

template <typename T>
void conv2d_backward_bias(const ConvGeometry& g, const T* dy, T* db) {
  // One channel per iteration, images and pixels in a fixed order: deterministic.
#pragma omp parallel for schedule(static) if (g.N * g.K * g.pq() > (1 << 16))
  for (int64_t k = 0; k < g.K; ++k) {
    double acc = 0.0;
    for (int64_t n = 0; n < g.N; ++n) {
      const T* d = dy + (n * g.K + k) * g.pq();
      T part = 0;  // per-plane partial in T vectorises; planes combine in double
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < g.pq(); ++i) part += d[i];
      acc += part;
    }
    db[k] = static_cast<T>(acc);
  }
}

template void im2col<float>(const ConvGeometry&, const float*, float*);
template void im2col<double>(const ConvGeometry&, const double*, double*);
template void col2im<float>(const ConvGeometry&, const float*, float*);
template void col2im<double>(const ConvGeometry&, const double*, double*);
template void conv2d_backward_bias<float>(const ConvGeometry&, const float*, float*);
template void conv2d_backward_bias<double>(const ConvGeometry&, const double*, double*);

}  // namespace crfseg::kernels::cpu
