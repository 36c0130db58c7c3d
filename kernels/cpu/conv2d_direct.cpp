// Direct convolution for few input taps; the algorithm is in conv2d_direct.h.
#include "kernels/cpu/conv2d_direct.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/cpu_allocator.h"
#include "tensor/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CRFSEG_DIRECT_X86 1
#endif

namespace crfseg::kernels::cpu {

namespace {

constexpr int64_t kMaxTaps = 64;  // C*R*S; the dW accumulators of one k block then take 32 KiB
constexpr int kKb = 8;            // output channels per register block
constexpr int kLanes = 16;        // floats per zmm

// The register blocks are arrays of __m512 indexed by these loops; unrolled
// fully they become registers (without it GCC kept them on the stack).
#define FULLY_UNROLLED _Pragma("GCC unroll 8")

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Width of one padded input row: every tap of every 16-pixel vector of an
// output row (the last vector may run past Q) reads inside it.
int64_t padded_width(const ConvGeometry& g) { return ceil_div(g.Q, kLanes) * kLanes + (g.S - 1) * g.dw; }

// rows[(c R + r) * width + j] = x[c, p sh - ph + r dh, j - pw]: the C*R input
// rows output row p reads, zero where they leave the image (padding).
void gather_rows(const ConvGeometry& g, const float* x_img, int64_t p, int64_t width, float* rows) {
  const int64_t lo = std::max<int64_t>(0, g.pw), hi = std::min(width, g.pw + g.W);  // row[j] = x col j - pw
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t r = 0; r < g.R; ++r) {
      float* row = rows + (c * g.R + r) * width;
      const int64_t h = p * g.sh - g.ph + r * g.dh;
      if (h < 0 || h >= g.H || hi <= lo) {
        std::fill(row, row + width, 0.0f);
        continue;
      }
      std::fill(row, row + lo, 0.0f);
      std::memcpy(row + lo, x_img + (c * g.H + h) * g.W + (lo - g.pw), static_cast<size_t>(hi - lo) * sizeof(float));
      std::fill(row + hi, row + width, 0.0f);
    }
  }
}

// The images zero-padded once, for every task to read: [N, C, Hp, Wp],
// padded[n, c, i, j] = x[n, c, i - ph, j - pw] (0 outside the image), where
// Hp covers every input row an output row reads and Wp is padded_width.
struct PaddedImages {
  CpuArray<float> data;
  int64_t rows = 0, width = 0;
  // The input row that tap row r of output row p reads, in channel c of image n.
  const float* row(const ConvGeometry& g, int64_t n, int64_t c, int64_t p, int64_t r) const {
    return data.get() + ((n * g.C + c) * rows + p * g.sh + r * g.dh) * width;
  }
};

PaddedImages pad_images(const ConvGeometry& g, const float* x) {
  PaddedImages out;
  out.rows = (g.P - 1) * g.sh + (g.R - 1) * g.dh + 1;
  out.width = padded_width(g);
  out.data = cpu_array<float>(g.N * g.C * out.rows * out.width);
  const int64_t lo = std::max<int64_t>(0, g.pw), hi = std::min(out.width, g.pw + g.W);  // padded col j = x col j - pw
#pragma omp parallel for schedule(static) if (g.N * g.C * out.rows * out.width >= (int64_t{1} << 16) && !omp_in_parallel())
  for (int64_t row = 0; row < g.N * g.C * out.rows; ++row) {
    float* dst = out.data.get() + row * out.width;
    const int64_t nc = row / out.rows, h = row % out.rows - g.ph;
    if (h < 0 || h >= g.H || hi <= lo) {
      std::fill(dst, dst + out.width, 0.0f);
      continue;
    }
    std::fill(dst, dst + lo, 0.0f);
    std::memcpy(dst + lo, x + (nc * g.H + h) * g.W + (lo - g.pw), static_cast<size_t>(hi - lo) * sizeof(float));
    std::fill(dst + hi, dst + out.width, 0.0f);
  }
  return out;
}

#ifdef CRFSEG_DIRECT_X86

__attribute__((target("avx512f"))) inline __mmask16 tail_mask(int64_t valid) {
  return valid >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1u);
}

// Outputs larger than this are written with non-temporal stores: they
// cannot stay in the caches anyway, and a plain store first reads the line
// it writes (the forward of the U-Net's first layer is bound by writing
// its 64 MiB output; streaming took it from about 5 ms to about 3 ms).
constexpr int64_t kStreamBytes = int64_t{8} << 20;

// XV vectors of output row p for the kKb channels of block wb (weights
// [taps][kKb], zero past K), pixels q0 .. q0 + 16 XV (stores masked at Q).
// rows[c R + r]: the padded input row of tap row r in channel c.
template <int XV>
__attribute__((target("avx512f"))) void forward_tile(const ConvGeometry& g, const float* const* rows,
                                                     const float* wb, const float* bias8, int64_t k0, int64_t q0,
                                                     bool stream, float* y_row0) {
  __m512 acc[kKb][XV];
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int v = 0; v < XV; ++v) acc[k][v] = _mm512_set1_ps(bias8[k]);
  }
  const float* w = wb;
  for (int64_t cr = 0; cr < g.C * g.R; ++cr) {
    const float* row = rows[cr] + q0;
    for (int64_t s = 0; s < g.S; ++s, w += kKb) {
      __m512 in[XV];
      FULLY_UNROLLED for (int v = 0; v < XV; ++v) in[v] = _mm512_loadu_ps(row + s * g.dw + v * kLanes);
      FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
        const __m512 wk = _mm512_set1_ps(w[k]);
        FULLY_UNROLLED for (int v = 0; v < XV; ++v) acc[k][v] = _mm512_fmadd_ps(wk, in[v], acc[k][v]);
      }
    }
  }
  const int64_t kn = std::min<int64_t>(kKb, g.K - k0);
  for (int64_t k = 0; k < kn; ++k) {
    float* out = y_row0 + k * g.pq() + q0;
    FULLY_UNROLLED for (int v = 0; v < XV; ++v) {
      float* o = out + v * kLanes;
      const int64_t valid = g.Q - q0 - v * kLanes;
      if (stream && valid >= kLanes && (reinterpret_cast<uintptr_t>(o) & 63) == 0) {
        _mm512_stream_ps(o, acc[k][v]);
      } else {
        _mm512_mask_storeu_ps(o, tail_mask(valid), acc[k][v]);
      }
    }
  }
}

__attribute__((target("avx512f"))) void forward_avx512(const ConvGeometry& g, const float* x, const float* w,
                                                       const float* bias, float* y) {
  const int64_t taps = g.crs(), blocks = ceil_div(g.K, kKb);
  // Weights regrouped [block][tap][kKb] (zero past K), so a tap's broadcasts
  // read 8 adjacent floats; bias padded the same way.
  const CpuArray<float> wt = cpu_array<float>(blocks * taps * kKb);
  const CpuArray<float> bt = cpu_array<float>(blocks * kKb);
  std::fill(wt.get(), wt.get() + blocks * taps * kKb, 0.0f);
  std::fill(bt.get(), bt.get() + blocks * kKb, 0.0f);
  for (int64_t k = 0; k < g.K; ++k) {
    for (int64_t t = 0; t < taps; ++t) wt[((k / kKb) * taps + t) * kKb + k % kKb] = w[k * taps + t];
    if (bias) bt[k] = bias[k];
  }
  const int64_t vectors = ceil_div(g.Q, kLanes), width = padded_width(g), cr = g.C * g.R;
  const bool stream = g.N * g.K * g.pq() * int64_t{sizeof(float)} >= kStreamBytes;
#pragma omp parallel if (g.N * g.P * g.K * taps * g.Q >= (int64_t{1} << 18) && !omp_in_parallel())
  {
    // The C*R padded input rows of one output row (gathered once per row,
    // for all K channels: C R width floats, 200 KiB at C = 64, 256 wide).
    const CpuArray<float> row_buf = cpu_array<float>(cr * width);
    std::vector<const float*> rows(static_cast<size_t>(cr));
    for (int64_t i = 0; i < cr; ++i) rows[i] = row_buf.get() + i * width;
#pragma omp for schedule(static)
    for (int64_t np = 0; np < g.N * g.P; ++np) {
      const int64_t n = np / g.P, p = np % g.P;
      gather_rows(g, x + n * g.C * g.hw(), p, width, row_buf.get());
      for (int64_t b = 0; b < blocks; ++b) {
        float* y_row0 = y + (n * g.K + b * kKb) * g.pq() + p * g.Q;
        const float* wb = wt.get() + b * taps * kKb;
        const float* b8 = bt.get() + b * kKb;
        const int64_t k0 = b * kKb;
        // Tiles of 3 vectors, and the rest as 2 + 2 rather than 3 + 1 (a
        // 1-vector tile does 8 FMAs per 9 loads): 16 vectors = 3 3 3 3 2 2.
        const int64_t threes = vectors % 3 == 1 && vectors > 3 ? vectors / 3 - 1 : vectors / 3;
        int64_t v = 0;
        for (int64_t t = 0; t < threes; ++t, v += 3)
          forward_tile<3>(g, rows.data(), wb, b8, k0, v * kLanes, stream, y_row0);
        for (; v + 2 <= vectors; v += 2) forward_tile<2>(g, rows.data(), wb, b8, k0, v * kLanes, stream, y_row0);
        if (v < vectors) forward_tile<1>(g, rows.data(), wb, b8, k0, v * kLanes, stream, y_row0);
      }
    }
    _mm_sfence();  // streamed stores are visible before the region's barrier
  }
}

// Adds to acc [kKb][TS] (16 lanes each) the products of output row p's
// gradient for 8 channels (dy8[k], zero rows past K) with TS taps s0.. of
// one padded input row.
template <int TS>
__attribute__((target("avx512f"))) void weight_grad_row(const ConvGeometry& g, const float* const* dy8,
                                                        const float* row, int64_t s0, float* acc_mem) {
  __m512 acc[kKb][TS];
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int s = 0; s < TS; ++s) acc[k][s] = _mm512_loadu_ps(acc_mem + (k * TS + s) * kLanes);
  }
  for (int64_t q = 0; q < g.Q; q += kLanes) {
    const __mmask16 m = tail_mask(g.Q - q);
    __m512 in[TS];
    FULLY_UNROLLED for (int s = 0; s < TS; ++s) in[s] = _mm512_loadu_ps(row + q + (s0 + s) * g.dw);
    FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
      const __m512 d = _mm512_maskz_loadu_ps(m, dy8[k] + q);
      FULLY_UNROLLED for (int s = 0; s < TS; ++s) acc[k][s] = _mm512_fmadd_ps(d, in[s], acc[k][s]);
    }
  }
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int s = 0; s < TS; ++s) _mm512_storeu_ps(acc_mem + (k * TS + s) * kLanes, acc[k][s]);
  }
}

__attribute__((target("avx512f"))) void backward_weight_avx512(const ConvGeometry& g, const float* dy,
                                                               const float* x, float* dw) {
  const int64_t taps = g.crs(), blocks = ceil_div(g.K, kKb);
  const PaddedImages xp = pad_images(g, x);
  // partial[n][k][tap]: image n's term of dW, summed over images in order at the end.
  const CpuArray<float> partial = cpu_array<float>(g.N * blocks * kKb * taps);
  const int64_t zero_len = ceil_div(g.Q, kLanes) * kLanes;
  const CpuArray<float> zeros = cpu_array<float>(zero_len);
  std::fill(zeros.get(), zeros.get() + zero_len, 0.0f);
  const int64_t acc_len = g.C * g.R * kKb * g.S * kLanes;
#pragma omp parallel if (g.N * g.P * g.K * taps * g.Q >= (int64_t{1} << 18) && !omp_in_parallel())
  {
    // Per (c, r) row and chunk of up to 3 taps s: [kKb][ts][16 lanes].
    const CpuArray<float> acc = cpu_array<float>(acc_len);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < g.N * blocks; ++task) {
      const int64_t n = task / blocks, b = task % blocks;
      std::fill(acc.get(), acc.get() + acc_len, 0.0f);
      for (int64_t p = 0; p < g.P; ++p) {
        const float* dy8[kKb];
        for (int64_t k = 0; k < kKb; ++k) {
          const int64_t kk = b * kKb + k;
          dy8[k] = kk < g.K ? dy + (n * g.K + kk) * g.pq() + p * g.Q : zeros.get();
        }
        for (int64_t c = 0; c < g.C; ++c) {
          for (int64_t r = 0; r < g.R; ++r) {
            const float* row = xp.row(g, n, c, p, r);
            float* acc_cr = acc.get() + (c * g.R + r) * kKb * g.S * kLanes;
            for (int64_t s0 = 0; s0 < g.S; s0 += 3) {
              float* a = acc_cr + s0 * kKb * kLanes;
              switch (std::min<int64_t>(3, g.S - s0)) {
                case 3: weight_grad_row<3>(g, dy8, row, s0, a); break;
                case 2: weight_grad_row<2>(g, dy8, row, s0, a); break;
                default: weight_grad_row<1>(g, dy8, row, s0, a); break;
              }
            }
          }
        }
      }
      // Sum the lanes, in order: partial[n][b kKb + k][(c R + r) S + s].
      float* out = partial.get() + (n * blocks + b) * kKb * taps;
      for (int64_t cr = 0; cr < g.C * g.R; ++cr) {
        for (int64_t s0 = 0; s0 < g.S; s0 += 3) {
          const int64_t ts = std::min<int64_t>(3, g.S - s0);
          const float* a = acc.get() + (cr * kKb * g.S + s0 * kKb) * kLanes;
          for (int64_t k = 0; k < kKb; ++k) {
            for (int64_t s = 0; s < ts; ++s) {
              const float* lanes = a + (k * ts + s) * kLanes;
              float sum = 0.0f;
              for (int l = 0; l < kLanes; ++l) sum += lanes[l];
              out[k * taps + cr * g.S + s0 + s] = sum;
            }
          }
        }
      }
    }
  }
  for (int64_t k = 0; k < g.K; ++k) {
    for (int64_t t = 0; t < taps; ++t) {
      float sum = 0.0f;
      for (int64_t n = 0; n < g.N; ++n) sum += partial[(n * blocks + k / kKb) * kKb * taps + (k % kKb) * taps + t];
      dw[k * taps + t] = sum;
    }
  }
}

#endif  // CRFSEG_DIRECT_X86

}  // namespace

bool conv2d_direct_forward_applies(const ConvGeometry& g) {
#ifdef CRFSEG_DIRECT_X86
  return has_avx512f() && g.sw == 1 && g.N > 0 && g.P > 0 && g.Q > 0 && g.K > 0;
#else
  (void)g;
  return false;
#endif
}

bool conv2d_direct_weight_grad_applies(const ConvGeometry& g) {
  return conv2d_direct_forward_applies(g) && g.crs() <= kMaxTaps;
}

void conv2d_direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  CRFSEG_CHECK(conv2d_direct_forward_applies(g), NotImplementedError,
               "conv2d_direct_forward: expected AVX-512F, stride 1 along W and a non-empty output, got stride ", g.sw,
               ", output ", g.N, " x ", g.K, " x ", g.P, " x ", g.Q, (has_avx512f() ? "" : ", and a CPU without AVX-512F"));
#ifdef CRFSEG_DIRECT_X86
  forward_avx512(g, x, w, bias, y);
#endif
}

void conv2d_direct_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  CRFSEG_CHECK(conv2d_direct_weight_grad_applies(g), NotImplementedError,
               "conv2d_direct_backward_weight: expected AVX-512F, stride 1 along W, a non-empty output and C*R*S <= ",
               kMaxTaps, ", got stride ", g.sw, ", C*R*S = ", g.crs(), ", output ", g.N, " x ", g.K, " x ", g.P,
               " x ", g.Q, (has_avx512f() ? "" : ", and a CPU without AVX-512F"));
#ifdef CRFSEG_DIRECT_X86
  backward_weight_avx512(g, dy, x, dw);
#endif
}

}  // namespace crfseg::kernels::cpu
