// Direct convolution kernels; what they compute and why is in conv2d_direct.h.
#include "kernels/cpu/conv2d_direct.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm/transpose_pack.h"
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
constexpr int64_t kWeightGradRows = 4;  // output rows per call of the few-tap weight-gradient kernel
constexpr int kLanes = 16;        // floats per zmm
constexpr int64_t kSlabRows = 32;  // output rows per partial of the k-lanes weight gradient

// The register blocks are arrays of __m512 indexed by these loops; unrolled
// fully they become registers (without it GCC kept them on the stack).
#define FULLY_UNROLLED _Pragma("GCC unroll 8")

#ifdef CRFSEG_DIRECT_X86

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-thread scratch is allocated before a parallel region, one slice per
// thread it may run, so that an out-of-memory error is thrown to the
// caller and not inside the region (which would terminate the program).
int parallel_slots(bool parallel) { return parallel ? omp_get_max_threads() : 1; }

// Width of one padded input row: every tap of every 16-pixel vector of an
// output row (the last vector may run past Q) reads inside it.
int64_t padded_width(const ConvGeometry& g) { return ceil_div(g.Q, kLanes) * kLanes + (g.S - 1) * g.dw; }

// dst[0, width) = row h of one input plane (x_plane [H x W]) shifted right by
// pw: dst[j] = x_plane[h, j - pw], zero where that leaves the image.
void padded_row(const ConvGeometry& g, const float* x_plane, int64_t h, int64_t width, float* dst) {
  const int64_t lo = std::max<int64_t>(0, g.pw), hi = std::min(width, g.pw + g.W);
  if (h < 0 || h >= g.H || hi <= lo) {
    std::fill(dst, dst + width, 0.0f);
    return;
  }
  std::fill(dst, dst + lo, 0.0f);
  std::memcpy(dst + lo, x_plane + h * g.W + (lo - g.pw), static_cast<size_t>(hi - lo) * sizeof(float));
  std::fill(dst + hi, dst + width, 0.0f);
}

// A stride sw along W stores each padded input row as sw phases, phase f
// holding padded columns f, f + sw, f + 2 sw, ..., so that the output
// pixels q of one tap read consecutive floats again: tap s reads phase
// (s dw) % sw from (s dw) / sw on (the direct forward loads 16 of them as
// one vector). With sw = 1 the one phase is the padded row.
struct PhaseRows {
  int64_t phase_width;  // floats per phase
  int64_t width;        // floats per stored row: sw phases
  explicit PhaseRows(const ConvGeometry& g)
      : phase_width(g.sw == 1 ? padded_width(g)
                              : (ceil_div(g.Q, kLanes) * kLanes * g.sw + (g.S - 1) * g.dw + g.sw - 1) / g.sw),
        width(g.sw * phase_width) {}
  // Where tap s's input for output pixel 0 lies in a stored row.
  int64_t tap_offset(const ConvGeometry& g, int64_t s) const {
    return (s * g.dw) % g.sw * phase_width + (s * g.dw) / g.sw;
  }
  // dst = padded input row h of x_plane in this layout; `unsplit`: scratch
  // of `width` floats (not touched when sw = 1).
  void fill(const ConvGeometry& g, const float* x_plane, int64_t h, float* unsplit, float* dst) const {
    if (g.sw == 1) {
      padded_row(g, x_plane, h, width, dst);
      return;
    }
    padded_row(g, x_plane, h, width, unsplit);
    for (int64_t f = 0; f < g.sw; ++f)
      for (int64_t m = 0; m < phase_width; ++m) dst[f * phase_width + m] = unsplit[f + g.sw * m];
  }
};

// The padded input rows that one thread's output rows read, copied out of
// x into rows `width` floats apart. (Read in place they were slower: x's
// channel planes lie a power of two apart, so the same row of every
// channel falls in the same few L1 sets; tried in stop 23, 1.4x slower.)
// Consecutive output rows share R - 1 tap rows, so the copies form a ring
// of `span` rows per channel, and each output row copies only the rows it
// adds: C rows instead of the C R that were copied per output row before
// (200 KiB for the U-Net's 64 -> 64 layer).
struct RowRing {
  const ConvGeometry& g;
  const PhaseRows& layout;
  int64_t span;
  float* buf;              // [C][span][layout.width]
  float* unsplit;          // one row of scratch (PhaseRows::fill)
  int64_t* slot_row;       // [span]: the input row each slot holds, -1 if none
  int64_t image = -1;      // the image the slots hold rows of

  // rows[c R + r] = the padded input row of tap row r in channel c for
  // output row p of image n (x_img: that image).
  void point(const float* x_img, int64_t n, int64_t p, const float** rows) {
    if (n != image) std::fill(slot_row, slot_row + span, int64_t{-1});
    image = n;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.sh - g.ph + r * g.dh;     // may be negative (padding)
      const int64_t slot = ((h % span) + span) % span;
      const int64_t width = layout.width;
      if (slot_row[slot] != h + g.ph) {                 // +ph: stored rows are >= 0, -1 means empty
        for (int64_t c = 0; c < g.C; ++c)
          layout.fill(g, x_img + c * g.hw(), h, unsplit, buf + (c * span + slot) * width);
        slot_row[slot] = h + g.ph;
      }
      for (int64_t c = 0; c < g.C; ++c) rows[c * g.R + r] = buf + (c * span + slot) * width;
    }
  }
};

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
  const int64_t len = g.N * g.C * out.rows * out.width;
  out.data = cpu_array<float>(len + kLanes);  // + slack for whole-vector reads
  std::fill(out.data.get() + len, out.data.get() + len + kLanes, 0.0f);
#pragma omp parallel for schedule(static) if (g.N * g.C * out.rows * out.width >= (int64_t{1} << 16) && !omp_in_parallel())
  for (int64_t row = 0; row < g.N * g.C * out.rows; ++row) {
    const int64_t nc = row / out.rows;
    padded_row(g, x + nc * g.hw(), row % out.rows - g.ph, out.width, out.data.get() + row * out.width);
  }
  return out;
}

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
// tap_off[s]: tap s's offset in a row (PhaseRows::tap_offset).
template <int XV>
__attribute__((target("avx512f"))) void forward_tile(const ConvGeometry& g, const float* const* rows,
                                                     const int64_t* tap_off, const float* wb, const float* bias8,
                                                     int64_t k0, int64_t q0, bool stream, bool relu,
                                                     float* y_row0) {
  __m512 acc[kKb][XV];
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int v = 0; v < XV; ++v) acc[k][v] = _mm512_set1_ps(bias8[k]);
  }
  const float* w = wb;
  for (int64_t cr = 0; cr < g.C * g.R; ++cr) {
    const float* row = rows[cr] + q0;
    for (int64_t s = 0; s < g.S; ++s, w += kKb) {
      __m512 in[XV];
      FULLY_UNROLLED for (int v = 0; v < XV; ++v) in[v] = _mm512_loadu_ps(row + tap_off[s] + v * kLanes);
      FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
        const __m512 wk = _mm512_set1_ps(w[k]);
        FULLY_UNROLLED for (int v = 0; v < XV; ++v) acc[k][v] = _mm512_fmadd_ps(wk, in[v], acc[k][v]);
      }
    }
  }
  const int64_t kn = std::min<int64_t>(kKb, g.K - k0);
  if (relu) {  // negative lanes to 0; NaN passes through, as in batch norm's fused ReLU
    const __m512 zero = _mm512_setzero_ps();
    FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
      FULLY_UNROLLED for (int v = 0; v < XV; ++v)
        acc[k][v] = _mm512_mask_mov_ps(acc[k][v], _mm512_cmp_ps_mask(acc[k][v], zero, _CMP_LT_OQ), zero);
    }
  }
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
                                                       const float* bias, bool relu, float* y) {
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
  const PhaseRows layout(g);
  const int64_t vectors = ceil_div(g.Q, kLanes), width = layout.width, cr = g.C * g.R;
  const int64_t span = (g.R - 1) * g.dh + 1;  // input rows one output row's taps cover
  std::vector<int64_t> tap_off(static_cast<size_t>(g.S));
  for (int64_t s = 0; s < g.S; ++s) tap_off[s] = layout.tap_offset(g, s);
  const bool stream = g.N * g.K * g.pq() * int64_t{sizeof(float)} >= kStreamBytes;
  const bool parallel = g.N * g.P * g.K * taps * g.Q >= (int64_t{1} << 18) && !omp_in_parallel();
  // Per thread, a ring of padded input rows (C span width floats, 200 KiB
  // at C = 64, 256 wide) and one more row (PhaseRows::fill's scratch), and
  // the C R row pointers of the current output row.
  const int slots = parallel_slots(parallel);
  const CpuArray<float> ring_bufs = cpu_array<float>(slots * (g.C * span + 1) * width);
  // Each thread's slot rows and row pointers are written every output row:
  // 8 unused entries (64 bytes) after each thread's keep it off the next
  // thread's cache lines.
  const int64_t slot_stride = span + 8, ptr_stride = cr + 8;
  std::vector<int64_t> slot_rows(static_cast<size_t>(slots * slot_stride));
  std::vector<const float*> row_ptrs(static_cast<size_t>(slots * ptr_stride));
#pragma omp parallel if (parallel)
  {
    const int thread = omp_get_thread_num();
    float* const ring_buf = ring_bufs.get() + thread * (g.C * span + 1) * width;
    RowRing ring{g, layout, span, ring_buf, ring_buf + g.C * span * width, slot_rows.data() + thread * slot_stride};
    const float** rows = row_ptrs.data() + thread * ptr_stride;
#pragma omp for schedule(static)
    for (int64_t np = 0; np < g.N * g.P; ++np) {
      const int64_t n = np / g.P, p = np % g.P;
      ring.point(x + n * g.C * g.hw(), n, p, rows);
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
          forward_tile<3>(g, rows, tap_off.data(), wb, b8, k0, v * kLanes, stream, relu, y_row0);
        for (; v + 2 <= vectors; v += 2)
          forward_tile<2>(g, rows, tap_off.data(), wb, b8, k0, v * kLanes, stream, relu, y_row0);
        if (v < vectors) forward_tile<1>(g, rows, tap_off.data(), wb, b8, k0, v * kLanes, stream, relu, y_row0);
      }
    }
    _mm_sfence();  // streamed stores are visible before the region's barrier
  }
}

// Adds to acc [kKb][TS] (16 lanes each) the products of the gradient of
// `rows` consecutive output rows for 8 channels (dy8[k], zero rows past K;
// row pl at dy8[k] + pl Q) with TS taps s0.. of their padded input rows
// (row pl at row + pl row_step). Several rows per call load and store the
// 24 accumulators once for all of them.
template <int TS>
__attribute__((target("avx512f"))) void weight_grad_row(const ConvGeometry& g, const float* const* dy8,
                                                        const float* row, int64_t s0, float* acc_mem, int64_t rows,
                                                        int64_t row_step) {
  __m512 acc[kKb][TS];
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int s = 0; s < TS; ++s) acc[k][s] = _mm512_loadu_ps(acc_mem + (k * TS + s) * kLanes);
  }
  const int64_t Q = g.Q, tap_step = g.dw;
  if (TS == 3 && tap_step == 1) {
    // Three adjacent taps: their inputs are one row at offsets 0, 1, 2, so
    // two aligned-in-the-row loads and two lane shifts (valignd) replace
    // three loads, two of which would straddle cache lines. Reads up to 16
    // floats past the row (pad_images leaves that slack); lanes past Q are
    // zeroed as the masked loads would.
    for (int64_t pl = 0; pl < rows; ++pl) {
      const float* x_row = row + pl * row_step + s0;
      const int64_t dy_off = pl * Q;
      __m512i prev = _mm512_loadu_si512(x_row);
      for (int64_t q = 0; q < Q; q += kLanes) {
        const __mmask16 m = tail_mask(Q - q);
        const __m512i next = _mm512_loadu_si512(x_row + q + kLanes);
        // (The zero-masking forms also keep GCC 12 from warning about the
        // unmasked form's undefined pass-through operand.)
        const __m512 in[3] = {_mm512_maskz_mov_ps(m, _mm512_castsi512_ps(prev)),
                              _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, next, prev, 1)),
                              _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, next, prev, 2))};
        prev = next;
        FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
          const __m512 d = _mm512_maskz_loadu_ps(m, dy8[k] + dy_off + q);
          FULLY_UNROLLED for (int s = 0; s < 3; ++s) acc[k][s] = _mm512_fmadd_ps(d, in[s], acc[k][s]);
        }
      }
    }
  } else {
    for (int64_t pl = 0; pl < rows; ++pl) {
      const float* x_row = row + pl * row_step + s0 * tap_step;
      const int64_t dy_off = pl * Q;
      for (int64_t q = 0; q < Q; q += kLanes) {
        const __mmask16 m = tail_mask(Q - q);
        __m512 in[TS];
        // Inputs masked too: an Inf past the row's last pixel times a zero
        // gradient would put a NaN into a tap whose sum never reads it.
        FULLY_UNROLLED for (int s = 0; s < TS; ++s) in[s] = _mm512_maskz_loadu_ps(m, x_row + q + s * tap_step);
        FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
          const __m512 d = _mm512_maskz_loadu_ps(m, dy8[k] + dy_off + q);
          FULLY_UNROLLED for (int s = 0; s < TS; ++s) acc[k][s] = _mm512_fmadd_ps(d, in[s], acc[k][s]);
        }
      }
    }
  }
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) {
    FULLY_UNROLLED for (int s = 0; s < TS; ++s) _mm512_storeu_ps(acc_mem + (k * TS + s) * kLanes, acc[k][s]);
  }
}

// Adds to acc [kKb][16 lanes] output row p's gradient for 8 channels, summed
// over its pixels: the bias gradient, from rows the weight gradient has
// just brought into L1 (a separate pass would read all of dy again).
__attribute__((target("avx512f"))) void bias_grad_row(int64_t Q, const float* const* dy8, float* acc_mem,
                                                      int64_t rows) {
  __m512 acc[kKb];
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) acc[k] = _mm512_loadu_ps(acc_mem + k * kLanes);
  for (int64_t pl = 0; pl < rows; ++pl) {
    for (int64_t q = 0; q < Q; q += kLanes) {
      const __mmask16 m = tail_mask(Q - q);
      FULLY_UNROLLED for (int k = 0; k < kKb; ++k)
        acc[k] = _mm512_add_ps(acc[k], _mm512_maskz_loadu_ps(m, dy8[k] + pl * Q + q));
    }
  }
  FULLY_UNROLLED for (int k = 0; k < kKb; ++k) _mm512_storeu_ps(acc_mem + k * kLanes, acc[k]);
}

__attribute__((target("avx512f"))) void backward_weight_avx512(const ConvGeometry& g, const float* dy,
                                                               const float* x, float* dw, float* db) {
  const int64_t taps = g.crs(), blocks = ceil_div(g.K, kKb);
  const PaddedImages xp = pad_images(g, x);
  // partial[n][k][tap]: image n's term of dW, summed over images in order at
  // the end; with db, partial_bias[n][k] likewise.
  const CpuArray<float> partial = cpu_array<float>(g.N * blocks * kKb * taps);
  const CpuArray<float> partial_bias = cpu_array<float>(db ? g.N * blocks * kKb : 0);
  const int64_t zero_len = kWeightGradRows * ceil_div(g.Q, kLanes) * kLanes;  // rows of Q, then a vector's slack
  const CpuArray<float> zeros = cpu_array<float>(zero_len);
  std::fill(zeros.get(), zeros.get() + zero_len, 0.0f);
  const int64_t acc_len = g.C * g.R * kKb * g.S * kLanes;
  const int64_t row_step = g.sh * xp.width;  // from one output row's input row to the next's
  const bool parallel = g.N * g.P * g.K * taps * g.Q >= (int64_t{1} << 18) && !omp_in_parallel();
  // Per thread, per (c, r) row and chunk of up to 3 taps s: [kKb][ts][16
  // lanes]; then the bias lanes, [kKb][16].
  const CpuArray<float> accs = cpu_array<float>(parallel_slots(parallel) * (acc_len + kKb * kLanes));
#pragma omp parallel if (parallel)
  {
    float* const acc = accs.get() + omp_get_thread_num() * (acc_len + kKb * kLanes);
    float* const bias_acc = acc + acc_len;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < g.N * blocks; ++task) {
      const int64_t n = task / blocks, b = task % blocks;
      std::fill(acc, acc + acc_len + kKb * kLanes, 0.0f);
      for (int64_t p = 0; p < g.P; p += kWeightGradRows) {
        const int64_t rows = std::min(kWeightGradRows, g.P - p);
        const float* dy8[kKb];
        for (int64_t k = 0; k < kKb; ++k) {
          const int64_t kk = b * kKb + k;
          dy8[k] = kk < g.K ? dy + (n * g.K + kk) * g.pq() + p * g.Q : zeros.get();
        }
        for (int64_t c = 0; c < g.C; ++c) {
          for (int64_t r = 0; r < g.R; ++r) {
            const float* row = xp.row(g, n, c, p, r);
            float* acc_cr = acc + (c * g.R + r) * kKb * g.S * kLanes;
            for (int64_t s0 = 0; s0 < g.S; s0 += 3) {
              float* a = acc_cr + s0 * kKb * kLanes;
              switch (std::min<int64_t>(3, g.S - s0)) {
                case 3: weight_grad_row<3>(g, dy8, row, s0, a, rows, row_step); break;
                case 2: weight_grad_row<2>(g, dy8, row, s0, a, rows, row_step); break;
                default: weight_grad_row<1>(g, dy8, row, s0, a, rows, row_step); break;
              }
            }
          }
        }
        if (db) bias_grad_row(g.Q, dy8, bias_acc, rows);
      }
      if (db) {
        for (int64_t k = 0; k < kKb; ++k) {
          float sum = 0.0f;
          for (int l = 0; l < kLanes; ++l) sum += bias_acc[k * kLanes + l];
          partial_bias[task * kKb + k] = sum;
        }
      }
      // Sum the lanes, in order: partial[n][b kKb + k][(c R + r) S + s].
      float* out = partial.get() + (n * blocks + b) * kKb * taps;
      for (int64_t cr = 0; cr < g.C * g.R; ++cr) {
        for (int64_t s0 = 0; s0 < g.S; s0 += 3) {
          const int64_t ts = std::min<int64_t>(3, g.S - s0);
          const float* a = acc + (cr * kKb * g.S + s0 * kKb) * kLanes;
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
    if (db) {
      float sum = 0.0f;
      for (int64_t n = 0; n < g.N; ++n) sum += partial_bias[(n * blocks + k / kKb) * kKb + k % kKb];
      db[k] = sum;
    }
  }
}

// ---- Weight gradient with the output channels in the lanes (deep layers) ----
// dW[k, tap] = sum_pixels dy[k, pixel] x[tap's input of the pixel], with 16
// channels k per vector: per pixel, KV vectors of dy (from a channels-last
// copy of a few rows of dy) times 5 broadcast input values (one per tap)
// into KV x 5 accumulators (KV + 5 loads, 5 of them scalar broadcasts, per
// 5 KV FMAs), where the pixel-lane kernel above needs 8 + 3 full-vector
// loads per 24 FMAs, and the accumulators are whole sums (no lane
// reduction). 5 taps, not 6: at KV = 4, 24 accumulators + 4 dy + 6 inputs
// are 34 registers, so two accumulators lived on the stack and each pixel
// waited on a store and a reload (session 34, 5 instead: the ResNet stem
// 7.6 -> 6.6 ms, 64 -> 64 3x3 at 64^2 4.0 -> 3.5, 1x1 layers unchanged).
// A stride sw along W is handled by storing each input row as sw phases
// (below), so a tap's pixels always read consecutive inputs.
// Work is cut into slabs of kSlabRows output rows of one image; a slab
// walks its rows in chunks of kChunkRows: transpose that chunk of dy into
// [K/16][pixels][16] (transpose_pack) and gather the C x (input rows)
// padded rows it reads, both L2-resident (for 64 channels at 256 wide:
// 128 KiB and 278 KiB), then run every (channel group, tap block) over
// the chunk's pixels. Each slab sums into its own [taps][K] partial; the
// partials are added in slab order at the end, so results do not depend
// on the thread count.
constexpr int kTapBlock = 5;
constexpr int64_t kChunkRows = 2;

// acc[kv][t] over the chunk's pixels, added into out[t * ld + kv * 16].
// taps[t]: tap t's input at local pixel offset 0; pixel (pl, q) reads
// taps[t][pl * row_step + q]. dyt: the chunk's channels-last dy for the
// first of KV channel groups, group stride gstride.
template <int KV>
__attribute__((target("avx512f"))) void weight_grad_klanes_block(const float* const* taps, const float* dyt,
                                                                 int64_t gstride, int64_t rows, int64_t Q,
                                                                 int64_t row_step, float* out, int64_t ld) {
  __m512 acc[KV][kTapBlock];
  FULLY_UNROLLED for (int kv = 0; kv < KV; ++kv) {
    FULLY_UNROLLED for (int t = 0; t < kTapBlock; ++t) acc[kv][t] = _mm512_setzero_ps();
  }
  const float* tp[kTapBlock];
  FULLY_UNROLLED for (int t = 0; t < kTapBlock; ++t) tp[t] = taps[t];
  for (int64_t pl = 0; pl < rows; ++pl) {
    const int64_t off0 = pl * row_step;
    const float* d0 = dyt + pl * Q * kLanes;
    for (int64_t q = 0; q < Q; ++q) {
      const int64_t off = off0 + q;
      __m512 d[KV];
      FULLY_UNROLLED for (int kv = 0; kv < KV; ++kv) {
        d[kv] = _mm512_load_ps(d0 + kv * gstride + q * kLanes);
        __asm__("" : "+v"(d[kv]));  // one load, not one folded into each FMA
      }
      __m512 x[kTapBlock];
      FULLY_UNROLLED for (int t = 0; t < kTapBlock; ++t) x[t] = _mm512_set1_ps(tp[t][off]);
      FULLY_UNROLLED for (int kv = 0; kv < KV; ++kv) {
        FULLY_UNROLLED for (int t = 0; t < kTapBlock; ++t) acc[kv][t] = _mm512_fmadd_ps(d[kv], x[t], acc[kv][t]);
      }
    }
  }
  FULLY_UNROLLED for (int t = 0; t < kTapBlock; ++t) {
    FULLY_UNROLLED for (int kv = 0; kv < KV; ++kv) {
      float* o = out + t * ld + kv * kLanes;
      _mm512_store_ps(o, _mm512_add_ps(_mm512_load_ps(o), acc[kv][t]));
    }
  }
}

// With db, the bias gradient is computed as the weight of one more tap,
// whose input is 1 at every pixel (it fills a padding slot of the last tap
// block, or adds a block).
__attribute__((target("avx512f"))) void backward_weight_klanes_avx512(const ConvGeometry& g, const float* dy,
                                                                      const float* x, float* dw, float* db) {
  const int64_t taps = g.crs(), groups = ceil_div(g.K, kLanes), kpad = groups * kLanes;
  const int64_t tap_blocks = ceil_div(taps + (db ? 1 : 0), kTapBlock), taps_pad = tap_blocks * kTapBlock;
  const int64_t slabs_per_image = ceil_div(g.P, kSlabRows), slabs = g.N * slabs_per_image;
  const PhaseRows layout(g);  // a stride along W: rows stored as phases
  const int64_t width = layout.width;
  const int64_t in_rows = (kChunkRows - 1) * g.sh + (g.R - 1) * g.dh + 1;  // input rows of one chunk
  const int64_t chunk_pixels = kChunkRows * g.Q;
  // partial[slab][tap][kpad], 64-byte aligned rows (kpad is a multiple of 16).
  const CpuArray<float> partial = cpu_array<float>(slabs * taps_pad * kpad);
  const bool parallel = g.N * g.P * g.K * taps * g.Q >= (int64_t{1} << 18) && !omp_in_parallel();
  // Per thread: the channels-last dy of one chunk, [groups][chunk_pixels][16]
  // (padding channels stay zero); the chunk's padded input rows
  // [C][in_rows][width] and a zero block for the padding taps; tap pointers.
  const int slots = parallel_slots(parallel);
  const int64_t dyt_len = groups * chunk_pixels * kLanes, xb_len = ((g.C + 1) * in_rows + 1) * width;
  const CpuArray<float> dyts = cpu_array<float>(slots * dyt_len);
  const CpuArray<float> xbs = cpu_array<float>(slots * xb_len);
  std::vector<const float*> tap_ptrs(static_cast<size_t>(slots * taps_pad));
  // The bias tap's input: pixel (pl, q) of a chunk reads ones[pl * row_step + q].
  const int64_t ones_len = db ? kChunkRows * g.sh * width : 0;
  const CpuArray<float> ones = cpu_array<float>(ones_len);
  std::fill(ones.get(), ones.get() + ones_len, 1.0f);
#pragma omp parallel if (parallel)
  {
    const int thread = omp_get_thread_num();
    float* const dyt = dyts.get() + thread * dyt_len;
    float* const xb = xbs.get() + thread * xb_len;
    const float** tap_base = tap_ptrs.data() + thread * taps_pad;
    std::fill(dyt, dyt + dyt_len, 0.0f);
    const float* zero_row = xb + g.C * in_rows * width;
    std::fill(xb + g.C * in_rows * width, xb + (g.C + 1) * in_rows * width, 0.0f);
    float* const unsplit = xb + (g.C + 1) * in_rows * width;  // PhaseRows::fill's scratch
    // Tap t = (c, r, s) reads row r dh + pl sh of channel c at tap_offset(s) + q; padding taps read zeros.
    for (int64_t t = 0; t < taps_pad; ++t) {
      const int64_t c = t / (g.R * g.S), r = (t / g.S) % g.R, s = t % g.S;
      tap_base[t] = t < taps ? xb + (c * in_rows + r * g.dh) * width + layout.tap_offset(g, s)
                    : (db && t == taps) ? ones.get()
                                        : zero_row;
    }
    const int64_t gstride = chunk_pixels * kLanes, row_step = g.sh * width;
#pragma omp for schedule(static)
    for (int64_t slab = 0; slab < slabs; ++slab) {
      const int64_t n = slab / slabs_per_image, p_begin = (slab % slabs_per_image) * kSlabRows;
      const int64_t p_end = std::min(g.P, p_begin + kSlabRows);
      float* out = partial.get() + slab * taps_pad * kpad;
      std::fill(out, out + taps_pad * kpad, 0.0f);
      for (int64_t p0 = p_begin; p0 < p_end; p0 += kChunkRows) {
        const int64_t rows = std::min(kChunkRows, p_end - p0);
        // dy rows p0 .. p0 + rows of every channel, transposed 16 channels at a time.
        for (int64_t grp = 0; grp < groups; ++grp) {
          const float* src[kLanes];
          const int k_rows = static_cast<int>(std::min<int64_t>(kLanes, g.K - grp * kLanes));
          for (int r = 0; r < k_rows; ++r) src[r] = dy + ((n * g.K + grp * kLanes + r) * g.P + p0) * g.Q;
          transpose_pack(src, k_rows, rows * g.Q, 1.0f, dyt + grp * chunk_pixels * kLanes, kLanes);
        }
        // Input rows of the chunk: xb[c][i] = padded input row p0 sh - ph + i.
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t i = 0; i < in_rows; ++i)
            layout.fill(g, x + (n * g.C + c) * g.hw(), p0 * g.sh - g.ph + i, unsplit, xb + (c * in_rows + i) * width);
        for (int64_t g0 = 0; g0 < groups; g0 += 4) {
          const int64_t kv = std::min<int64_t>(4, groups - g0);
          const float* d = dyt + g0 * chunk_pixels * kLanes;
          for (int64_t tb = 0; tb < tap_blocks; ++tb) {
            const float* const* tp = tap_base + tb * kTapBlock;
            float* o = out + tb * kTapBlock * kpad + g0 * kLanes;
            switch (kv) {
              case 4: weight_grad_klanes_block<4>(tp, d, gstride, rows, g.Q, row_step, o, kpad); break;
              case 3: weight_grad_klanes_block<3>(tp, d, gstride, rows, g.Q, row_step, o, kpad); break;
              case 2: weight_grad_klanes_block<2>(tp, d, gstride, rows, g.Q, row_step, o, kpad); break;
              default: weight_grad_klanes_block<1>(tp, d, gstride, rows, g.Q, row_step, o, kpad); break;
            }
          }
        }
      }
    }
  }
  // dW[k, tap] = sum over slabs, in order, of partial[slab][tap][k]; db[k] is tap `taps`.
  const int64_t out_taps = taps + (db ? 1 : 0);
  const bool parallel_sum = g.K * out_taps >= (int64_t{1} << 14) && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel_sum)
  for (int64_t t = 0; t < out_taps; ++t) {
    for (int64_t k = 0; k < g.K; ++k) {
      float sum = 0.0f;
      for (int64_t sl = 0; sl < slabs; ++sl) sum += partial[(sl * taps_pad + t) * kpad + k];
      (t < taps ? dw[k * taps + t] : db[k]) = sum;
    }
  }
}

#endif  // CRFSEG_DIRECT_X86

}  // namespace

bool conv2d_direct_forward_applies(const ConvGeometry& g) {
#ifdef CRFSEG_DIRECT_X86
  return has_avx512f() && g.N > 0 && g.P > 0 && g.Q > 0 && g.K > 0;
#else
  (void)g;
  return false;
#endif
}

int64_t conv2d_direct_weight_grad_klanes_slabs(const ConvGeometry& g) {
  return g.N * ((g.P + kSlabRows - 1) / kSlabRows);
}

int64_t conv2d_direct_weight_grad_klanes_partials(const ConvGeometry& g) {
  return conv2d_direct_weight_grad_klanes_slabs(g) * g.crs() * g.K;
}

bool conv2d_direct_weight_grad_applies(const ConvGeometry& g) {
  return conv2d_direct_forward_applies(g) && g.sw == 1 && g.crs() <= kMaxTaps;
}

void conv2d_direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                           bool relu) {
  CRFSEG_CHECK(conv2d_direct_forward_applies(g), NotImplementedError,
               "conv2d_direct_forward: expected AVX-512F and a non-empty output, got output ", g.N, " x ", g.K,
               " x ", g.P, " x ", g.Q, (has_avx512f() ? "" : ", and a CPU without AVX-512F"));
#ifdef CRFSEG_DIRECT_X86
  forward_avx512(g, x, w, bias, relu, y);
#endif
}

// The same needs as the forward's: both store strided rows as phases.
bool conv2d_direct_weight_grad_klanes_applies(const ConvGeometry& g) { return conv2d_direct_forward_applies(g); }

void conv2d_direct_backward_weight_klanes(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                          float* db) {
  CRFSEG_CHECK(conv2d_direct_weight_grad_klanes_applies(g), NotImplementedError,
               "conv2d_direct_backward_weight_klanes: expected AVX-512F and a non-empty output, got output ", g.N,
               " x ", g.K, " x ", g.P, " x ", g.Q, (has_avx512f() ? "" : ", and a CPU without AVX-512F"));
#ifdef CRFSEG_DIRECT_X86
  backward_weight_klanes_avx512(g, dy, x, dw, db);
#endif
}

void conv2d_direct_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  CRFSEG_CHECK(conv2d_direct_weight_grad_applies(g), NotImplementedError,
               "conv2d_direct_backward_weight: expected AVX-512F, stride 1 along W, a non-empty output and C*R*S <= ",
               kMaxTaps, ", got stride ", g.sw, ", C*R*S = ", g.crs(), ", output ", g.N, " x ", g.K, " x ", g.P,
               " x ", g.Q, (has_avx512f() ? "" : ", and a CPU without AVX-512F"));
#ifdef CRFSEG_DIRECT_X86
  backward_weight_avx512(g, dy, x, dw, db);
#endif
}

}  // namespace crfseg::kernels::cpu
