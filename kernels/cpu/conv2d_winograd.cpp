// Winograd F(4x4, 3x3) convolution; the algorithm is described in conv2d_winograd.h.
#include "kernels/cpu/conv2d_winograd.h"

#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"
#include "kernels/cpu/gemm/transpose_pack.h"
#include "tensor/cpu_allocator.h"
#include "tensor/error.h"

namespace crfseg::kernels::cpu {

namespace {

constexpr int kM = 4;           // output tile
constexpr int kA = kM + 2;      // input tile (alpha)
constexpr int kPoints = kA * kA;  // 36 independent products

// Lavin's F(4, 3) matrices, interpolation points 0, 1, -1, 2, -2 and infinity.
constexpr float kBT[kA][kA] = {
    {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
constexpr float kG[kA][3] = {
    {1.0f / 4, 0, 0},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0, 0, 1},
};
constexpr float kAT[kM][kA] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1},
};

// Sixteen tiles (or filters) at a time, one per lane: the transforms are
// the same few adds for every tile, so they vectorise across tiles. GCC's
// vector extension (clang has it too) keeps this portable: with AVX-512 a
// Vec16 is one zmm register.
using Vec16 = float __attribute__((vector_size(64)));
constexpr int kLanes = 16;

#define FULLY_UNROLLED _Pragma("GCC unroll 8")

// out [Ro x Ro] = L d L^T for L [Ro x Ci] and d [Ci x Ci], or, with
// Transposed, out = L^T d L for L [Ci x Ro]. Every transform of the
// algorithm is one of these "sandwiches". L is one of the constant
// matrices above, so with the loops unrolled the zero terms drop out at
// compile time (x * 0 is not x's to drop at run time: NaN and infinity).
template <int Ro, int Ci, bool Transposed, typename LMat>
[[gnu::always_inline]] inline void sandwich(const LMat& L, const Vec16 (&d)[Ci][Ci], Vec16 (&out)[Ro][Ro]) {
  auto l = [&](int i, int j) { return Transposed ? L[j][i] : L[i][j]; };
  Vec16 t[Ro][Ci];
  FULLY_UNROLLED for (int i = 0; i < Ro; ++i) FULLY_UNROLLED for (int j = 0; j < Ci; ++j) {
      Vec16 s = {};
      FULLY_UNROLLED for (int m = 0; m < Ci; ++m) if (l(i, m) != 0.0f) s += l(i, m) * d[m][j];
      t[i][j] = s;
    }
  FULLY_UNROLLED for (int i = 0; i < Ro; ++i) FULLY_UNROLLED for (int j = 0; j < Ro; ++j) {
      Vec16 s = {};
      FULLY_UNROLLED for (int m = 0; m < Ci; ++m) if (l(j, m) != 0.0f) s += t[i][m] * l(j, m);
      out[i][j] = s;
    }
}

inline Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// The first n (<= 16) lanes of v to p.
inline void store16(float* p, const Vec16& v, int64_t n) {
  if (n == kLanes) {
    std::memcpy(p, &v, sizeof v);  // one vector store (a variable length would call memmove)
  } else {
    for (int64_t l = 0; l < n; ++l) p[l] = v[l];
  }
}

// out[xi * plane] = v[xi / kA][xi % kA], the first n lanes, for the 36
// points of 16 transformed tiles. With `stream`, whole vectors at 64-byte
// aligned addresses go out with streaming stores (the caller fences,
// stream_fence, before another thread reads them): the whole-batch
// transforms write their 36 planes, tens of MiB, once, and the GEMMs read
// them only after all are written. Plain stores there read every line from
// memory first and spread over 36 streams; the input transform of 512 ->
// 512 at 32^2 (batch 4) took 2.6-2.9 ms with them and 1.1-1.2 with
// streaming stores, the GEMMs after it no slower (session 37).
inline void store_points(const Vec16 (&v)[kA][kA], int64_t n, float* out, int64_t plane, bool stream) {
#if defined(__AVX512F__)
  if (stream && n == kLanes && reinterpret_cast<uintptr_t>(out) % 64 == 0 && plane % kLanes == 0) {
    FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) {
      __m512 x;
      std::memcpy(&x, &v[xi / kA][xi % kA], sizeof x);
      _mm512_stream_ps(out + xi * plane, x);
    }
    return;
  }
#endif
  FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) store16(out + xi * plane, v[xi / kA][xi % kA], n);
}

// out[kM u + j] = v[j][u] for the 16 lanes u of the kM = 4 vectors v[j]:
// 16 output tiles' columns back into 64 consecutive pixels of a row.
static_assert(kM == 4, "interleave4 puts 4 columns together");
inline void interleave4(const Vec16 (&v)[kM], float* out) {
  const Vec16 ab_lo = __builtin_shufflevector(v[0], v[1], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const Vec16 ab_hi = __builtin_shufflevector(v[0], v[1], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const Vec16 cd_lo = __builtin_shufflevector(v[2], v[3], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const Vec16 cd_hi = __builtin_shufflevector(v[2], v[3], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const Vec16 o[4] = {
      __builtin_shufflevector(ab_lo, cd_lo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23),
      __builtin_shufflevector(ab_lo, cd_lo, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31),
      __builtin_shufflevector(ab_hi, cd_hi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23),
      __builtin_shufflevector(ab_hi, cd_hi, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31),
  };
  std::memcpy(out, o, sizeof o);
}

// The inverse: r[j][u] = o[(kM u + j) / 16][(kM u + j) % 16] for 64
// consecutive floats o of a row, split by column modulo 4 into 4 runs of 16.
[[gnu::always_inline]] inline void deinterleave4(const Vec16 (&o)[kM], Vec16 (&r)[kM]) {
  const Vec16 ab_lo = __builtin_shufflevector(o[0], o[1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const Vec16 cd_lo = __builtin_shufflevector(o[0], o[1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const Vec16 ab_hi = __builtin_shufflevector(o[2], o[3], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const Vec16 cd_hi = __builtin_shufflevector(o[2], o[3], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  r[0] = __builtin_shufflevector(ab_lo, ab_hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  r[1] = __builtin_shufflevector(ab_lo, ab_hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  r[2] = __builtin_shufflevector(cd_lo, cd_hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  r[3] = __builtin_shufflevector(cd_lo, cd_hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The tile grid of g's output: T tiles of kM x kM, tile t = (n, ty, tx).
struct Tiles {
  int64_t ty, tx, per_image, total;
  explicit Tiles(const ConvGeometry& g)
      : ty(ceil_div(g.P, kM)), tx(ceil_div(g.Q, kM)), per_image(ty * tx), total(g.N * ty * tx) {}
};

// Transform buffers are read 16 floats at a time from any start, so each
// gets kLanes floats of zeros past its end.
CpuArray<float> transform_buffer(int64_t n) {
  CpuArray<float> b = cpu_array<float>(n + kLanes);
  std::fill(b.get() + n, b.get() + n + kLanes, 0.0f);
  return b;
}

// The distance between the point planes of a transformed array (V[xi],
// M[xi], Z[xi], Wt[xi]): rows x columns floats, plus one cache line.
// Without the line, a plane of 64 channels x 64 tiles is 16 KiB (of 512
// channels x 1024 tiles, 2 MiB), so the 36 values one tile's transform
// reads or writes, one per plane, all fall in one L1 set, which holds 12
// lines: they evicted each other (64 -> 64 at 256^2, batch 4: forward 45
// -> 30 ms, weight gradient 58 -> 35, session 30).
int64_t point_plane(int64_t rows, int64_t columns) { return rows * columns + kLanes; }

// Per-thread scratch comes from before the parallel region (an
// out-of-memory error then reaches the caller instead of terminating).
int parallel_slots() { return omp_get_max_threads(); }

// taps[s][t], lane l: tap t (with flip, 8 - t) of row l's filter at depth
// step s, for rows l < n and steps s < steps (n, steps <= 16; other lanes
// and steps zero). Row l's filters of consecutive steps are consecutive
// 9-float runs from rows + l * stride. With AVX-512, 16 rows' runs are
// loaded a vector at a time and transposed in registers: against the
// scalar copy below (taps written float by float, then read back as
// vectors), 1024 -> 1024 at 16^2 forward -8 to -11%, backward-input -12%,
// the banded 128 -> 256 at 64^2 forward -2.5% (session 39, both orders of
// an interleaved A/B). AVX-512 gathers were slower than the scalar copy.
void load_taps(const float* rows, int64_t stride, int64_t n, int64_t steps, bool flip, Vec16 (&taps)[kLanes][9]) {
#if defined(__AVX512F__)
  _Pragma("GCC unroll 9") for (int j = 0; j < 9; ++j) {  // floats 16 j .. 16 j + 15 of each row's 9 x 16
    const int64_t left = std::clamp<int64_t>(9 * steps - kLanes * j, 0, kLanes);
    const auto live = static_cast<__mmask16>((1u << left) - 1);
    __m512 r[kLanes];
    for (int l = 0; l < kLanes; ++l)
      r[l] = l < n ? _mm512_maskz_loadu_ps(live, rows + l * stride + kLanes * j) : _mm512_setzero_ps();
    transpose16x16(r);
    _Pragma("GCC unroll 16") for (int i = 0; i < kLanes; ++i) {
      const int e = kLanes * j + i, t = e % 9;
      std::memcpy(&taps[e / 9][flip ? 8 - t : t], &r[i], sizeof(Vec16));
    }
  }
#else
  float scalar[kLanes][9][kLanes] = {};
  for (int64_t l = 0; l < n; ++l)
    for (int64_t s = 0; s < steps; ++s)
      for (int t = 0; t < 9; ++t) scalar[s][flip ? 8 - t : t][l] = rows[l * stride + 9 * s + t];
  for (int s = 0; s < kLanes; ++s)
    for (int t = 0; t < 9; ++t) taps[s][t] = load16(scalar[s][t]);
#endif
}

// The taps (load_taps) of the filters of rows r0 .. r0 + n at depth steps
// d0 .. d0 + steps of the convolution computed: (k, c) = (row, step), or
// with `flip` the backward-input's (c, k), each kernel turned 180 degrees.
// Flipped, a step's rows are one run of n filters; they are copied into
// per-row runs first.
void filter_taps(const ConvGeometry& g, const float* w, bool flip, int64_t r0, int64_t n, int64_t d0, int64_t steps,
                 Vec16 (&taps)[kLanes][9]) {
  // The next 16 steps' filters are fetched now: n runs (flipped, 16) far
  // apart, more streams than the hardware prefetcher follows.
  const int64_t next = d0 + kLanes;
  if (!flip) {
    if (next + kLanes <= g.C)
      for (int64_t l = 0; l < n; ++l)
        for (int64_t q = 0; q < 9 * kLanes; q += kLanes) __builtin_prefetch(w + ((r0 + l) * g.C + next) * 9 + q);
    return load_taps(w + (r0 * g.C + d0) * 9, g.C * 9, n, steps, false, taps);
  }
  if (next + kLanes <= g.K)
    for (int64_t s = 0; s < kLanes; ++s)
      for (int64_t q = 0; q < 9 * n; q += kLanes) __builtin_prefetch(w + ((next + s) * g.C + r0) * 9 + q);
  alignas(64) float runs[kLanes][kLanes * 9];
  for (int64_t s = 0; s < steps; ++s) {
    const float* step = w + ((d0 + s) * g.C + r0) * 9;
    for (int64_t l = 0; l < n; ++l) std::memcpy(runs[l] + 9 * s, step + 9 * l, 9 * sizeof(float));
  }
  load_taps(runs[0], kLanes * 9, n, steps, true, taps);
}

// The filter transforms fill one MR-row micro-panel's rows from the lanes
// of a vector: MR must not exceed them.
void check_panel_rows(const BlisConfig& cfg) {
  CRFSEG_CHECK(cfg.mr <= kLanes, NotImplementedError, "conv2d_winograd: micro-kernel rows (MR) ", cfg.mr, " > ",
               kLanes);
}

// step(d, u) for the depth steps d = d0 .. d1 - 1, in order, of the
// filters of rows r0 .. r0 + n (n <= 16): u = G f G^T, lane l for row
// r0 + l (zero past n). The taps come 16 steps at a time (filter_taps).
template <typename Step>
void for_each_filter_step(const ConvGeometry& g, const float* w, bool flip, int64_t r0, int64_t n, int64_t d0,
                          int64_t d1, Step&& step) {
  for (int64_t b0 = d0; b0 < d1; b0 += kLanes) {
    const int64_t block = std::min<int64_t>(kLanes, d1 - b0);
    Vec16 taps[kLanes][9];
    filter_taps(g, w, flip, r0, n, b0, block, taps);
    for (int64_t d = b0; d < b0 + block; ++d) {
      Vec16 f[3][3], u[kA][kA];
      FULLY_UNROLLED for (int t = 0; t < 9; ++t) f[t / 3][t % 3] = taps[d - b0][t];
      sandwich<kA, 3, false>(kG, f, u);
      step(d, u);
    }
  }
}

// The filter transforms of a forward (or, with `flip`, of the
// backward-input's flipped convolution) written straight into the GEMM's
// packed A layout (prepack_a's, blis_loops.h), one A per point xi: rows
// are the output channels of the convolution computed (K; C with flip),
// depth its input channels. Writing U and then packing it cost two more
// passes over 36 K C floats (1024 -> 1024: 151 MB each). One MR-row
// micro-panel at a time: its MR filters of one depth index fill MR of a
// vector's 16 lanes, and each point's MR values are one contiguous run of
// the packed panel. Rows past the last (up to MR - 1) read zero filters
// and so come out zero, as the micro-kernel needs.
struct PackedFilters {
  CpuArray<float> data;
  int64_t per_point;  // floats per point: round_up(rows, MR) x depth
  const float* point(int xi) const { return data.get() + xi * per_point; }
};

// The packed filters go straight to memory with streaming stores: they are
// 4x the weights (151 MB for 1024 -> 1024), read back only after all of
// them are written, so writing them through the cache first reads every
// line from memory (a write-allocate) and evicts the weights the transform
// is reading. Streaming stores need whole lines: kDepthGroup depth steps of
// a panel (for MR = 12, 48 floats, 3 lines per point) are gathered in L1
// and then streamed out.
constexpr int64_t kDepthGroup = 4;

// dst[0 .. n) = src[0 .. n), bypassing the caches where dst is 64-byte
// aligned and n a multiple of 16 (whole lines); else an ordinary copy.
// The caller fences (stream_fence) before another thread reads dst.
inline void stream_copy(const float* src, int64_t n, float* dst) {
#if defined(__SSE2__)
  if (reinterpret_cast<uintptr_t>(dst) % 64 == 0 && n % kLanes == 0) {
    // The widest store there is: one per line, not four (the output
    // transform's stores were a quarter of its time as 16-byte ones).
#if defined(__AVX512F__)
    for (int64_t i = 0; i < n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
#elif defined(__AVX__)
    for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
#else
    for (int64_t i = 0; i < n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
#endif
    return;
  }
#endif
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

PackedFilters pack_transformed_filters(const ConvGeometry& g, const float* w, bool flip, const BlisConfig& cfg) {
  const int64_t rows = flip ? g.C : g.K, depth = flip ? g.K : g.C, mr = cfg.mr, mpad = round_up(rows, mr);
  check_panel_rows(cfg);
  PackedFilters packed{cpu_array<float>(kPoints * mpad * depth), mpad * depth};
#pragma omp parallel
  {
#pragma omp for schedule(static) nowait
    for (int64_t panel = 0; panel < mpad / mr; ++panel) {
      const int64_t r0 = panel * mr, n = std::min(mr, rows - r0);
      // Per point, kDepthGroup depth steps of the panel's MR values (+ slack
      // for the last step's whole-vector store).
      alignas(64) float group[kPoints][kDepthGroup * kLanes + kLanes];
      for (int64_t pc = 0; pc < depth; pc += cfg.kc) {  // prepack_a's KC slices
        const int64_t kc = std::min(cfg.kc, depth - pc);
        // (r0, pc) in prepack_a's layout; depth step d of the slice is mr floats further each.
        float* slice = packed.data.get() + pc * mpad + r0 * kc;
        for_each_filter_step(g, w, flip, r0, n, pc, pc + kc, [&](int64_t d, const Vec16(&u)[kA][kA]) {
          const int64_t d0 = pc + (d - pc) / kDepthGroup * kDepthGroup;  // this group's first step
          // Whole vectors, mr apart: each overwrites the previous one's
          // lanes past mr (rows past the last filter come out zero).
          FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) {
            std::memcpy(group[xi] + (d - d0) * mr, &u[xi / kA][xi % kA], sizeof(Vec16));
          }
          if (d + 1 == std::min(d0 + kDepthGroup, pc + kc)) {  // the group's last step
            for (int xi = 0; xi < kPoints; ++xi) {
              stream_copy(group[xi], (d + 1 - d0) * mr, slice + xi * packed.per_point + (d0 - pc) * mr);
            }
          }
        });
      }
    }
    stream_fence();  // this thread's streamed lines, before the region's closing barrier
  }
  return packed;
}

// The untransform reads one run in each of Wt's 36 planes: 36 streams,
// more than the hardware prefetcher follows, and it waited on memory (512
// -> 1024 at 16^2, batch 4: 76 MB of Wt, 30% of the weight gradient in
// perf). So it fetches each run this many floats (4 lines) ahead: that
// weight gradient -18%, 1024 -> 1024 at 16^2 -10 to -22%; 2 or 8 lines ahead
// were 1-5% slower than 4 (session 38, both orders of an interleaved A/B).
constexpr int64_t kUntransformAhead = 64;

// dw[k, c + l] = G^T m G for lanes l < n of the 36 summed points m: 16
// filters of output channel k at a time.
inline void untransform16(const ConvGeometry& g, const Vec16 (&m)[kA][kA], int64_t k, int64_t c, int64_t n,
                          float* dw) {
  Vec16 f[3][3];
  sandwich<3, kA, true>(kG, m, f);
  float* dst = dw + (k * g.C + c) * 9;  // the n filters' taps: one run of 9 n floats
  float taps[9][kLanes];
  FULLY_UNROLLED for (int t = 0; t < 9; ++t) std::memcpy(taps[t], &f[t / 3][t % 3], sizeof(Vec16));
  for (int64_t l = 0; l < n; ++l)
    for (int t = 0; t < 9; ++t) dst[9 * l + t] = taps[t][l];
}

// dw[k,c] = G^T W[., k, c] G for W = Wt_0 + Wt_1 + ... + Wt_{parts-1},
// added in that order, Wt_p at Wt + p * part_floats, each with its planes
// point_plane(K, C) apart (the banded weight gradient's partial sums,
// added here rather than in passes of their own over memory).
void untransform_filters(const ConvGeometry& g, const float* Wt, float* dw, int64_t parts = 1,
                         int64_t part_floats = 0) {
  CRFSEG_CHECK(parts >= 1, Error, "conv2d_winograd: untransform of ", parts, " partial sums, expected 1 or more");
  const int64_t plane = point_plane(g.K, g.C);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
      const int64_t n = std::min<int64_t>(kLanes, g.C - c0), at = k * g.C + c0;
      Vec16 m[kA][kA];
      // (One loop for every part, the first assigning: written with part 0
      // peeled off and a prefetch lambda, the weight gradient of 512 ->
      // 1024 at 16^2 ran 26% slower, the same bits.)
      for (int64_t p = 0; p < parts; ++p) {
        const float* w = Wt + p * part_floats + at;
        if (at + kUntransformAhead < g.K * g.C)
          FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) __builtin_prefetch(w + xi * plane + kUntransformAhead);
        FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) {
          const Vec16 v = load16(w + xi * plane);
          m[xi / kA][xi % kA] = p == 0 ? v : m[xi / kA][xi % kA] + v;
        }
      }
      untransform16(g, m, k, c0, n, dw);
    }
}

// The transforms below take 16 tiles at a time, one per lane. Along one
// tile row that wastes lanes where a row has fewer than 16 tiles (outputs
// under 64 wide: 8 tiles at 32^2, 4 at 16^2, so half or three quarters of
// every vector, and each store a scalar loop). There they take the tiles
// of kFlatTiles / tx tile rows together, 16 consecutive tiles of the
// row-major tile grid at a time, across row ends ("flat", staged as below).
// Tiles per band in the banded forms below (forward_banded); a flat group
// is a band's rows, so the band's transforms take it in one go.
constexpr int64_t kBandTiles = 64;
constexpr int64_t kFlatTiles = kBandTiles;
int64_t flat_rows(const Tiles& tl) { return tl.tx < kLanes ? std::min(tl.ty, ceil_div(kFlatTiles, tl.tx)) : 1; }
// The callers' groups (for_each_tile_rows, Bands) are at most flat_rows
// tile rows, what the staging holds.
void check_flat_rows(const Tiles& tl, int64_t rows) {
  CRFSEG_CHECK(rows >= 1 && rows <= flat_rows(tl), Error, "conv2d_winograd: a flat group of ", rows,
               " tile rows, expected 1 to ", flat_rows(tl));
}

// Flat staging. Tile (r, u) of a group (r counted from its first tile row)
// reads source rows 4 r + i and columns 4 u + j for i, j < D (D = 6 for an
// input patch, 4 for an output-gradient tile). With i = 4 a + b and
// j = 4 c + e (b, e < 4; a, c < 2) that is
//   S[4 (r + a) + b][4 (u + c) + e] = plane(b, e, c)[(r + a) tx + u],
// where plane(b, e, c)[rr tx + u] = S[4 rr + b][4 (u + c) + e]. So value
// (i, j) of tile f = r tx + u sits at a tx + f of one plane, and those of
// consecutive tiles are consecutive floats across row ends: 16 tiles'
// values (i, j) are one vector load. Each source row is read once (zero
// outside the image, load_row_chunk) and split by column modulo 4 into 4
// planes (c = 0); where D > 4, planes e < 2 are also written one tile on
// (c = 1, for j = 4, 5), a lane shift of the split. (Flat groups once
// went through a row-by-row staging, each tile row's 6 source rows split
// into memory, and then copied the runs once more: a third of the weight
// gradient of 256 -> 256 at 14^2, batch 8.)
constexpr int kFlatPlanes = kM * kM + (kA - kM) * kM;  // c = 1 only for e < kA - kM
constexpr int64_t flat_plane(int b, int e, int c) { return (c * kM + e) * kM + b; }
// Floats from one plane to the next: flat_rows + 1 rows of tx (the last 2
// of 6 rows are the next tile row's first), a whole vector's spill or read
// past them, and never a multiple of 256 floats (a transform's 36 loads
// would share a few L1 sets).
int64_t flat_plane_stride(const Tiles& tl) {
  const int64_t stride = round_up((flat_rows(tl) + 1) * tl.tx, kLanes) + kLanes;
  return stride % 256 == 0 ? stride + kLanes : stride;
}
// The planes.
int64_t flat_scratch(const Tiles& tl) { return kFlatPlanes * flat_plane_stride(tl); }

// row[col] of a row W wide, zero outside it and for a null row (a padding row).
inline float value_or_zero(const float* row, int64_t W, int64_t col) {
  return row != nullptr && col >= 0 && col < W ? row[col] : 0.0f;
}

// v[k][l] = row[first + 16 k + l] for 64 columns from `first` (which may
// be negative), zero outside [0, W) and everywhere for a null row (a
// padding row). Straight into registers: a padded copy of the row in
// memory, read back by vectors that straddle its unaligned stores,
// stalled on store forwarding (a third of the flat staging's time at
// 14^2). Inside the row, four plain loads; at its ends, with AVX-512,
// masked ones (else a small copy).
[[gnu::always_inline]] inline void load_row_chunk(const float* row, int64_t W, int64_t first, Vec16 (&v)[kM]) {
  if (row == nullptr) {
    FULLY_UNROLLED for (int k = 0; k < kM; ++k) v[k] = Vec16{};
    return;
  }
  if (first >= 0 && first + kM * kLanes <= W) {
    FULLY_UNROLLED for (int k = 0; k < kM; ++k) v[k] = load16(row + first + kLanes * k);
    return;
  }
#if defined(__AVX512F__)
  // As an integer: lanes before the row are masked off and never read, but
  // a pointer to them would point outside the array.
  const uintptr_t base = reinterpret_cast<uintptr_t>(row);
  FULLY_UNROLLED for (int k = 0; k < kM; ++k) {
    const int64_t col = first + int64_t{kLanes} * k;  // the column lane 0 reads
    const int64_t lo = std::clamp<int64_t>(-col, 0, kLanes), hi = std::clamp<int64_t>(W - col, 0, kLanes);
    const uint32_t mask = hi > lo ? ((uint32_t{1} << hi) - 1) & ~((uint32_t{1} << lo) - 1) : 0;
    const __m512 x = _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask),
                                           reinterpret_cast<const void*>(base + col * int64_t{sizeof(float)}));
    std::memcpy(&v[k], &x, sizeof x);
  }
#else
  alignas(64) float padded[kM * kLanes];
  for (int64_t l = 0; l < kM * kLanes; ++l) padded[l] = value_or_zero(row, W, first + l);
  FULLY_UNROLLED for (int k = 0; k < kM; ++k) v[k] = load16(padded + kLanes * k);
#endif
}

// The same 64 columns split by column modulo 4: split[e][l] =
// row[first + 4 l + e] (zero outside [0, W), everywhere for a null row).
[[gnu::always_inline]] inline void load_split_row(const float* row, int64_t W, int64_t first, Vec16 (&split)[kM]) {
  Vec16 chunk[kM];
  load_row_chunk(row, W, first, chunk);
  deinterleave4(chunk, split);
}

// Stages the 4 rows + D - 4 source rows of a flat group of `rows` tile rows
// into the planes at scratch: S[s][col] = src[h0 + s][col - pw] (zero
// outside the H x W plane src).
template <int D>
void stage_flat(const Tiles& tl, const float* src, int64_t H, int64_t W, int64_t h0, int64_t pw, int64_t rows,
                float* scratch) {
  static_assert(D >= kM && D <= 2 * kM, "a tile reads rows of at most two groups of 4");
  check_flat_rows(tl, rows);
  const int64_t tx = tl.tx, stride = flat_plane_stride(tl);
  constexpr int kSplits = D > kM ? 2 : 1;  // c = 0, and c = 1 where D > 4
  // In increasing order: each split's whole vectors spill into the next
  // rows' places in its planes, written after it.
  for (int64_t s = 0; s < kM * rows + D - kM; ++s) {
    const int b = static_cast<int>(s % kM);
    float* at = scratch + s / kM * tx;
    const int64_t h = h0 + s;
    Vec16 split[kM];
    load_split_row(h >= 0 && h < H ? src + h * W : nullptr, W, -pw, split);
    FULLY_UNROLLED for (int e = 0; e < kM; ++e) std::memcpy(at + flat_plane(b, e, 0) * stride, &split[e], sizeof(Vec16));
    // c = 1 is c = 0 one tile on: lane u of the split's lane u + 1 (tx < 16,
    // so the last lane needed, u = tx - 1, reads lane tx <= 15).
    FULLY_UNROLLED for (int e = 0; e < (kSplits == 2 ? D - kM : 0); ++e) {
      const Vec16 on = __builtin_shufflevector(split[e], split[e], 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15);
      std::memcpy(at + flat_plane(b, e, 1) * stride, &on, sizeof(Vec16));
    }
  }
  // The last vector's lanes past the group's last tile read up to `pad`
  // floats past the rows: zeros, not stale scratch (a NaN or denormal there
  // would slow the lanes; their results are dropped).
  const int64_t tiles = rows * tx, pad = round_up(tiles, kLanes) - tiles;
  if (pad == 0) return;
  for (int c = 0; c < kSplits; ++c)
    for (int e = 0; e < (c == 0 ? kM : D - kM); ++e)
      for (int b = 0; b < kM; ++b) {
        float* end = scratch + flat_plane(b, e, c) * stride + (b < D - kM ? rows + 1 : rows) * tx;
        std::fill(end, end + pad, 0.0f);
      }
}

// group(d, n16, out + f0) for every 16 tiles f0.. of a staged flat group,
// where lane l of d[i][j] is value (i, j) of tile f0 + l.
template <int D, typename Group>
void transform_flat(const Tiles& tl, int64_t rows, const float* planes, Group&& group, float* out) {
  const int64_t stride = flat_plane_stride(tl), tiles = rows * tl.tx;
  for (int64_t f0 = 0; f0 < tiles; f0 += kLanes) {
    Vec16 d[D][D];
    FULLY_UNROLLED for (int i = 0; i < D; ++i) FULLY_UNROLLED for (int j = 0; j < D; ++j)
        d[i][j] = load16(planes + flat_plane(i % kM, j % kM, j / kM) * stride + i / kM * tl.tx + f0);
    group(d, std::min<int64_t>(kLanes, tiles - f0), out + f0);
  }
}

// Floats of scratch transform_input_rows and transform_output_grad_rows
// need: the flat planes (rows of 16 tiles or more go straight into
// registers, transform_tile_rows).
int64_t row_scratch(const Tiles& tl) { return tl.tx < kLanes ? flat_scratch(tl) : 0; }

// Sixteen tiles: out[xi * plane + l] = (B^T d B)[xi] for l < n16, where
// lane l of d[i][j] is value (i, j) of tile l's patch (stream: as store_points).
[[gnu::always_inline]] inline void transform_input_group(const Vec16 (&d)[kA][kA], int64_t n16, float* out,
                                                         int64_t plane, bool stream) {
  Vec16 v[kA][kA];
  sandwich<kA, kA, false>(kBT, d, v);
  store_points(v, n16, out, plane, stream);
}

// Where a row has 16 tiles or more (inputs: D = kA, kA x kA patches;
// output gradients: D = kM, kM x kM tiles): group(d, n16, out) for the 16
// tiles u0.. of each tile row ty0 + r (r < rows), lane l of d[i][j] being
//   S[4 (ty0 + r) + i][4 (u0 + l) + j],  S[s][col] = src[s - top][col - left]
// (zero outside the H x W plane src), at out + r tx + u0. Straight from the
// source rows into registers: a row's 64 columns from 4 u0 - left, split
// by column modulo 4, are columns j < 4 of the 16 tiles, and where D > 4,
// columns 4 and 5 are splits 0 and 1 one lane on, with the row's columns
// 64 and 65 in lane 15. Staging the split rows in memory first, each
// split once per tile row, was 3-7% slower in every pass at 256 at 64^2,
// 128 at 128^2 and 64 at 256^2 (session 38, both orders of an
// interleaved A/B), though this loads the rows' splits of the next tile
// row's overlap again.
template <int D, typename Group>
void transform_tile_rows(const Tiles& tl, const float* src, int64_t H, int64_t W, int64_t top, int64_t left,
                         int64_t ty0, int64_t rows, Group&& group, float* out) {
  static_assert(D >= kM && D <= kM + 2, "columns past 4 come from splits 0 and 1");
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t u0 = 0; u0 < tl.tx; u0 += kLanes) {
      const int64_t first = kM * u0 - left;
      Vec16 d[D][D];
      FULLY_UNROLLED for (int i = 0; i < D; ++i) {
        const int64_t h = kM * (ty0 + r) - top + i;
        const float* row = h >= 0 && h < H ? src + h * W : nullptr;
        Vec16 split[kM];
        load_split_row(row, W, first, split);
        FULLY_UNROLLED for (int j = 0; j < kM; ++j) d[i][j] = split[j];
        FULLY_UNROLLED for (int e = 0; e < D - kM; ++e) {
          const float next = value_or_zero(row, W, first + kM * kLanes + e);
          const Vec16 last = {next};  // (only lane 0 is used)
          d[i][kM + e] = __builtin_shufflevector(split[e], last, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
        }
      }
      group(d, std::min<int64_t>(kLanes, tl.tx - u0), out + r * tl.tx + u0);
    }
  }
}

// out[xi * plane + r tx + u] = (B^T d B)[xi] for the kA x kA input patch d
// of tile (n, ty0 + r, u) in channel c, for r < rows (zero outside the
// image; at most flat_rows(tl) rows where tx < 16); out's tiles of
// consecutive rows are consecutive.
void transform_input_rows(const ConvGeometry& g, const Tiles& tl, const float* x, int64_t n, int64_t c, int64_t ty0,
                          int64_t rows, float* scratch, float* out, int64_t plane, bool stream = false) {
  const auto group = [&](const Vec16 (&d)[kA][kA], int64_t n16, float* o) {
    transform_input_group(d, n16, o, plane, stream);
  };
  const float* xc = x + (n * g.C + c) * g.H * g.W;
  if (tl.tx < kLanes) {
    stage_flat<kA>(tl, xc, g.H, g.W, ty0 * kM - g.ph, g.pw, rows, scratch);
    return transform_flat<kA>(tl, rows, scratch, group, out);
  }
  transform_tile_rows<kA>(tl, xc, g.H, g.W, g.ph, g.pw, ty0, rows, group, out);
}

// for_each(n, channel, ty0, rows, scratch) over every image and channel,
// in groups of flat_rows(tl) tile rows, one task each, with per_thread
// floats of scratch per thread (none for 0). Each thread fences its
// streaming stores (stream_fence) when its tasks are done. The tasks are
// handed out in runs of consecutive ones as threads come free (tasks / (8
// threads) per run, clamped to 1..64), not split evenly up front: on a busy
// machine one thread falls behind, and the other waited at the barrier
// (512 -> 512 at 7^2, batch 8, forward -4 to -5%; 256 at 64^2 and 512 at
// 32^2 level, within 2%; session 38, both orders of an interleaved A/B,
// twice). Each task writes its own outputs: the same bits.
template <typename RowsFn>
void for_each_tile_rows(int64_t images, int64_t channels, const Tiles& tl, int64_t per_thread, RowsFn&& rows_fn) {
  const CpuArray<float> scratch = cpu_array<float>(parallel_slots() * per_thread);
  const int64_t chunk = flat_rows(tl), groups = ceil_div(tl.ty, chunk), tasks = images * channels * groups;
  const int run = static_cast<int>(std::clamp<int64_t>(tasks / (8 * omp_get_max_threads()), 1, 64));
#pragma omp parallel
  {
    float* mine = scratch.get() + omp_get_thread_num() * per_thread;
#pragma omp for schedule(dynamic, run) nowait
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t ty0 = task % groups * chunk;
      rows_fn(task / groups / channels, task / groups % channels, ty0, std::min(chunk, tl.ty - ty0), mine);
    }
    stream_fence();  // before the region's closing barrier
  }
}

// A band's rows of one channel are one contiguous run, and the next
// channel's run is a plane further on: a new stream for the hardware
// prefetcher every time. So the callers fetch the next channel's rows
// [r0, r1) (clipped to the plane's `rows`) while they transform this one's
// (64 -> 64 at 256^2, batch 4: forward 33.5-34.6 -> 30.5-31.5 ms).
void prefetch_rows(const float* plane, int64_t rows, int64_t width, int64_t r0, int64_t r1) {
  r0 = std::max<int64_t>(r0, 0), r1 = std::min(r1, rows);
  if (r0 >= r1) return;  // (no pointer past the plane)
  const char* p = reinterpret_cast<const char*>(plane + r0 * width);
  for (int64_t at = 0; at < (r1 - r0) * width * int64_t{sizeof(float)}; at += 64) __builtin_prefetch(p + at, 0, 3);
}

// Whole-batch transforms of at least this many bytes stream their planes
// out (store_points); smaller ones may still be in L3 when their GEMMs
// read them (at 4.7 MB, 256 -> 256 at 14^2 batch 8, streaming changed
// nothing measurable; the output's rule, kStreamOutputBytes, is the same).
constexpr int64_t kStreamPlanesBytes = int64_t{8} << 20;
bool stream_planes(int64_t rows, int64_t ld) {
  return kPoints * point_plane(rows, ld) * int64_t{sizeof(float)} >= kStreamPlanesBytes;
}

// V[xi][c * ld + t] = (B^T d B)[xi] for every tile t and channel c, planes
// point_plane(C, ld) apart (ld >= T). The source rows of each task's
// channel c + 1 are fetched ahead (as prefetch_rows' callers): 512 -> 512
// at 32^2, batch 4, 2.9 -> 2.6 ms. That task comes a channel's tile-row
// groups later, usually in the same thread's run of tasks
// (for_each_tile_rows; at 64^2, 16 groups in runs of up to 64 tasks).
void transform_inputs(const ConvGeometry& g, const Tiles& tl, const float* x, float* V, int64_t ld) {
  const bool stream = stream_planes(g.C, ld);
  for_each_tile_rows(g.N, g.C, tl, row_scratch(tl),
                     [&](int64_t n, int64_t c, int64_t ty0, int64_t rows, float* scratch) {
                       if (n * g.C + c + 1 < g.N * g.C)
                         prefetch_rows(x + (n * g.C + c + 1) * g.H * g.W, g.H, g.W, ty0 * kM - g.ph,
                                       (ty0 + rows) * kM - g.ph + 2);
                       transform_input_rows(g, tl, x, n, c, ty0, rows, scratch,
                                            V + c * ld + n * tl.per_image + ty0 * tl.tx, point_plane(g.C, ld), stream);
                     });
}

// The row stride of a whole batch's transformed inputs V[xi] [C, T]: T
// padded to a vector and one more, and never a multiple of 256 floats.
// The forward's GEMMs read V in place (as blis_loops.h's in_place B)
// instead of packing it (the copy was 8% of 512 -> 512 at 32^2); rows a
// multiple of 1 KiB apart (T = 256 there) would put a micro-panel's rows
// into a few L1 sets.
int64_t v_row_stride(int64_t tiles) {
  const int64_t ld = round_up(tiles, kLanes) + kLanes;
  return ld % 256 == 0 ? ld + kLanes : ld;
}

// Sixteen tiles: out[xi * plane + l] = (A dY A^T)[xi], dY[i][j] of lane l d[i][j][l].
[[gnu::always_inline]] inline void transform_output_grad_group(const Vec16 (&d)[kM][kM], int64_t n16, float* out,
                                                               int64_t plane, bool stream) {
  Vec16 z[kA][kA];
  sandwich<kA, kM, true>(kAT, d, z);
  store_points(z, n16, out, plane, stream);
}

// out[xi * plane + r tx + u] = (A dY A^T)[xi] for the kM x kM tile
// (n, ty0 + r, u) of dy[n,k], r < rows (as transform_input_rows).
void transform_output_grad_rows(const ConvGeometry& g, const Tiles& tl, const float* dy, int64_t n, int64_t k,
                                int64_t ty0, int64_t rows, float* scratch, float* out, int64_t plane,
                                bool stream = false) {
  const auto group = [&](const Vec16 (&d)[kM][kM], int64_t n16, float* o) {
    transform_output_grad_group(d, n16, o, plane, stream);
  };
  const float* dk = dy + (n * g.K + k) * g.P * g.Q;
  if (tl.tx < kLanes) {
    stage_flat<kM>(tl, dk, g.P, g.Q, ty0 * kM, 0, rows, scratch);
    return transform_flat<kM>(tl, rows, scratch, group, out);
  }
  transform_tile_rows<kM>(tl, dk, g.P, g.Q, 0, 0, ty0, rows, group, out);
}

// Z[xi][k * T + t] for every tile t and channel k, planes point_plane(K, T) apart.
void transform_output_grads(const ConvGeometry& g, const Tiles& tl, const float* dy, float* Z) {
  const bool stream = stream_planes(g.K, tl.total);
  for_each_tile_rows(g.N, g.K, tl, row_scratch(tl),
                     [&](int64_t n, int64_t k, int64_t ty0, int64_t rows, float* scratch) {
                       if (n * g.K + k + 1 < g.N * g.K)
                         prefetch_rows(dy + (n * g.K + k + 1) * g.P * g.Q, g.P, g.Q, ty0 * kM, (ty0 + rows) * kM);
                       transform_output_grad_rows(g, tl, dy, n, k, ty0, rows, scratch,
                                                  Z + k * tl.total + n * tl.per_image + ty0 * tl.tx,
                                                  point_plane(g.K, tl.total), stream);
                     });
}

// Outputs of at least this many bytes go out with streaming stores (as the
// direct forward's, conv2d_direct.cpp): they cannot stay in the caches,
// and a plain store reads each line before writing it.
constexpr int64_t kStreamOutputBytes = int64_t{8} << 20;

// Output tile rows ty0 .. ty0 + rows of (n, k): tile (ty0 + r, u) =
// A^T in[., r tx + u] A (+ bias, then max(., 0) with relu), in[xi * plane
// + f], clipped to the output. The tiles go 16 at a time in row-major
// order, across row ends (a lane's outputs then land in its own tile row).
// Reads up to 15 floats past the last tile of in (lanes it then ignores).
// Outputs of kStreamOutputBytes or more are streamed: the caller fences
// (stream_fence) before another thread reads y.
void transform_output_rows(const ConvGeometry& g, const Tiles& tl, const float* in, int64_t plane, int64_t n,
                           int64_t k, int64_t ty0, int64_t rows, const float* bias, bool relu, float* y) {
  float* yk = y + (n * g.K + k) * g.P * g.Q;
  const float b = bias ? bias[k] : 0.0f;
  const int64_t tiles = rows * tl.tx;
  const bool stream = g.N * g.K * g.P * g.Q * int64_t{sizeof(float)} >= kStreamOutputBytes;
  for (int64_t f0 = 0; f0 < tiles; f0 += kLanes) {
    Vec16 m[kA][kA], out[kM][kM];
    FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) m[xi / kA][xi % kA] = load16(in + xi * plane + f0);
    sandwich<kM, kA, false>(kAT, m, out);
    const int64_t lanes = std::min<int64_t>(kLanes, tiles - f0);
    const int64_t r = f0 / tl.tx, u = f0 % tl.tx;
    const bool one_row = u + lanes <= tl.tx;  // no row end inside: 64 pixels (or fewer) of one output row
    for (int i = 0; i < kM; ++i) {
      FULLY_UNROLLED for (int j = 0; j < kM; ++j) out[i][j] += b;
      if (relu) {
        const Vec16 zero = {};
        FULLY_UNROLLED for (int j = 0; j < kM; ++j) out[i][j] = out[i][j] < zero ? zero : out[i][j];  // NaN passes
      }
      const int64_t p = (ty0 + r) * kM + i;
      if (one_row && lanes == kLanes && p < g.P && (u + kLanes) * kM <= g.Q) {
        if (stream) {
          alignas(64) float row[kLanes * kM];
          interleave4(out[i], row);
          stream_copy(row, kLanes * kM, yk + p * g.Q + u * kM);  // (a plain copy where unaligned)
        } else {
          interleave4(out[i], yk + p * g.Q + u * kM);
        }
        continue;
      }
      float row[kLanes * kM];
      interleave4(out[i], row);
      // Lane runs of one tile row each: lanes [l, l + len) are tiles u.. of tile row rr.
      for (int64_t l = 0, rr = r, uu = u; l < lanes; ++rr, uu = 0) {
        const int64_t len = std::min(tl.tx - uu, lanes - l), pp = (ty0 + rr) * kM + i;
        if (pp < g.P) {
          const int64_t cols = std::min(len * kM, g.Q - uu * kM);
          std::copy(row + l * kM, row + l * kM + cols, yk + pp * g.Q + uu * kM);
        }
        l += len;
      }
    }
  }
}

// y = A^T M[., k, t] A (+ bias[k], then ReLU with relu) for every tile t and channel k.
// A task reads its tiles' runs in 36 planes: more streams than the
// hardware prefetcher follows. So each task fetches the next task's runs
// (for_each_tile_rows' order: tile rows, then channels, then images; the
// same thread takes it, except after the last task of a run, when another
// thread may) while it transforms its own: 512 -> 512 at 32^2, batch 4, 2.8-3.2 ->
// 1.8-1.9 ms (session 37, both orders of an interleaved A/B).
void transform_outputs(const ConvGeometry& g, const Tiles& tl, const float* M, const float* bias, bool relu,
                       float* y) {
  const int64_t chunk = flat_rows(tl), plane = point_plane(g.K, tl.total);
  for_each_tile_rows(g.N, g.K, tl, 0, [&](int64_t n, int64_t k, int64_t ty0, int64_t rows, float*) {
    int64_t next_n = n, next_k = k, next_ty = ty0 + rows;
    if (next_ty >= tl.ty) next_ty = 0, ++next_k;
    if (next_k >= g.K) next_k = 0, ++next_n;
    if (next_n < g.N) {
      const float* next = M + next_k * tl.total + next_n * tl.per_image + next_ty * tl.tx;
      const int64_t tiles = std::min(chunk, tl.ty - next_ty) * tl.tx;
      for (int xi = 0; xi < kPoints; ++xi) prefetch_rows(next + xi * plane, 1, tiles, 0, 1);
    }
    transform_output_rows(g, tl, M + k * tl.total + n * tl.per_image + ty0 * tl.tx, plane, n, k, ty0, rows, bias,
                          relu, y);
  });
}

void check_applies(const ConvGeometry& g, const char* op) {
  CRFSEG_CHECK(conv2d_winograd_applies(g), NotImplementedError, op,
               ": expected a 3x3 kernel, stride 1, dilation 1 and a non-empty output, got ", g.R, "x", g.S,
               ", stride ", g.sh, "x", g.sw, ", dilation ", g.dh, "x", g.dw, ", output ", g.N, " x ", g.K, " x ",
               g.P, " x ", g.Q);
}

// The bands of g's tile grid: whole tile rows of one image, at least
// kBandTiles tiles each where the image has them. Band b is image
// b / per_image, tile rows from (b % per_image) rows on.
struct Band {
  int64_t n, ty0, rows, tiles;
};
struct Bands {
  const Tiles& tl;
  int64_t rows, per_image, max_tiles;
  explicit Bands(const Tiles& t)
      : tl(t), rows(std::min(t.ty, ceil_div(kBandTiles, t.tx))), per_image(ceil_div(t.ty, rows)), max_tiles(rows * t.tx) {}
  Band operator[](int64_t b) const {
    const int64_t ty0 = b % per_image * rows, r = std::min(rows, tl.ty - ty0);
    return {b / per_image, ty0, r, r * tl.tx};
  }
};

// The fewest bands a banded pass of g takes: `fewest`, but from C K of
// 128 x 256 on 8 (the measurements are at forward_transformed and
// conv2d_winograd_weight_grad_in_bands; the weight gradient also takes
// exactly 4, one per group).
int64_t min_bands(const ConvGeometry& g, int64_t fewest) { return g.C * g.K >= 128 * 256 ? 8 : fewest; }

// A band's transformed inputs: V[xi * point_plane(C, ld) + c * ld + t].
void transform_band_inputs(const ConvGeometry& g, const Tiles& tl, const float* x, const Band& b, float* scratch,
                           float* V, int64_t ld) {
  const int64_t plane = point_plane(g.C, ld);
  const int64_t h0 = b.ty0 * kM - g.ph, h1 = (b.ty0 + b.rows) * kM - g.ph + 2;
  for (int64_t c = 0; c < g.C; ++c) {
    if (c + 1 < g.C) prefetch_rows(x + (b.n * g.C + c + 1) * g.H * g.W, g.H, g.W, h0, h1);
    transform_input_rows(g, tl, x, b.n, c, b.ty0, b.rows, scratch, V + c * ld, plane);
  }
}

// The transformed tiles of a whole batch take 36 / 16 = 2.25 times the
// memory of its input and output: images go through in chunks whose
// transformed inputs and outputs (per image 36 (C + K) tiles floats) fit
// this many floats (64 MiB), one image at least. Deep layers, with few
// tiles per image, still fold the whole batch into one set of GEMMs.
constexpr int64_t kChunkFloats = int64_t{1} << 24;

// One image's transformed inputs and outputs, 36 (C + K) floats per tile.
int64_t image_transform_floats(const ConvGeometry& g) { return kPoints * (g.C + g.K) * Tiles(g).per_image; }

int64_t images_per_chunk(const ConvGeometry& g) {
  const int64_t chunks = std::clamp<int64_t>(ceil_div(g.N * image_transform_floats(g), kChunkFloats), 1, g.N);
  return ceil_div(g.N, chunks);
}

// g restricted to `images` images.
ConvGeometry images(const ConvGeometry& g, int64_t count) {
  ConvGeometry c = g;
  c.N = count;
  return c;
}

// C[xi] [rows, cols] = A[xi] . B[xi] (+ beta C[xi]) for the 36 points,
// depth deep, C's planes `plane` apart with rows ldc apart. a_block(xi, i0)
// gives the A operand of the rows from i0 (a multiple of MR), b(xi) the B
// matrix; `in_place`: the GEMMs read a row-major B's full panels where it
// lies (blis_loops.h). The 36 products are the tasks of one parallel
// region, cut into column blocks whose B block stays in L2 and, where 36
// such tasks do not split evenly over the threads, into row blocks too.
// (One GEMM after another, each split over the threads, waited
// at 36 barriers behind the slower thread: 10% of the 512 -> 512 forward at
// 32^2 in perf.) Each block sums as one whole GEMM would, so the bits do
// not depend on the cut or the thread count. C of 8 MiB or more
// (stream_planes) is written with streaming stores where B is read in
// place and the depth is one slice (blis_block's stream_c): it is read
// back only by the output transform, after the region (256 -> 256 at
// 64^2, batch 4: the products 14.7-15.0 -> 13.8-14.0 ms, the forward -5%;
// session 38).
template <typename ABlock, typename BMatrix>
void point_products(const BlisConfig& cfg, int64_t rows, int64_t cols, int64_t depth, ABlock&& a_block,
                    BMatrix&& b, bool in_place, float beta, float* C, int64_t ldc, int64_t plane) {
  // (Rows a multiple of 16 floats apart, so that every row is whole lines
  // and the kernel's C prefetch is not given up for plain stores.)
  const bool stream = stream_planes(rows, ldc) && ldc % kLanes == 0 && plane % kLanes == 0;
  // Blocks of B up to 512 KiB (half of a Zen 5 L2), and at least 256
  // columns: a shallow B (the weight gradient's, T deep) then takes all of
  // a 512-channel layer's columns in one block, so A is packed once.
  const int64_t max_cols = std::max<int64_t>(256, (int64_t{1} << 17) / std::min(depth, cfg.kc) / cfg.nr * cfg.nr);
  const int threads = omp_get_max_threads();
  const int64_t nb = std::min(round_up(cols, cfg.nr), max_cols), col_blocks = ceil_div(cols, nb);
  int64_t row_blocks = 1;
  if (kPoints * col_blocks % threads != 0)
    row_blocks = std::clamp<int64_t>(ceil_div(8 * threads, kPoints * col_blocks), 1, ceil_div(rows, cfg.mr));
  const int64_t mb = round_up(ceil_div(rows, row_blocks), cfg.mr);
  const int64_t tasks = kPoints * row_blocks * col_blocks;
  const auto workspaces = per_thread_workspaces(cfg, parallel_slots(), depth, nb);
#pragma omp parallel
  {
    const BlisWorkspace& ws = *workspaces[omp_get_thread_num()];
#pragma omp for schedule(static) nowait
    for (int64_t task = 0; task < tasks; ++task) {
      const int xi = static_cast<int>(task / (row_blocks * col_blocks));
      const int64_t i0 = task / col_blocks % row_blocks * mb, j0 = task % col_blocks * nb;
      if (i0 >= rows) continue;
      const MatrixOperand bx = b(xi);
      blis_block(cfg, std::min(mb, rows - i0), std::min(nb, cols - j0), depth, a_block(xi, i0),
                 matrix_packer(bx, in_place), j0, beta, C + xi * plane + i0 * ldc + j0, ldc, ws, stream);
    }
    stream_fence();  // C's streamed lines, before the region's closing barrier
  }
}

// y = the forward of g from its packed filter transforms (rows K, depth C).
void forward_banded(const ConvGeometry& g, const float* x, const PackedFilters& U, const float* bias, bool relu,
                    float* y);
// y = the forward of g, transforming the filters w of `layer` (flipped:
// the backward-input's) block by block as the products need them.
void forward_fused(const ConvGeometry& g, const float* x, const ConvGeometry& layer, const float* w, bool flip,
                   const float* bias, bool relu, float* y);
bool fused_filters_suit(const ConvGeometry& g);

// y = the forward g (the layer itself, or with `flip` its backward-input's
// flipped convolution) of x, with the filters w of `layer`.
void forward_transformed(const ConvGeometry& g, const float* x, const ConvGeometry& layer, const float* w, bool flip,
                         const float* bias, bool relu, float* y) {
  // Banded while U is small enough to re-read per band (session 24, batch
  // 4, 2 threads: 64 -> 64 at 256^2 47.8 -> 42.8 ms, 128 -> 128 at 128^2
  // 30.8 -> 27.6, 256 -> 256 at 64^2 28.4 -> 24.4; but 512 -> 512 at 32^2
  // 29 -> 32 and 1024 -> 1024 at 16^2 40 -> 98). Since the whole-batch
  // transforms stream and prefetch (session 37), 256 -> 256 goes whole
  // too: at 64^2 batch 4 20.3-21.9 -> 16.9-17.1 ms, batch 8 -8%, 32^2
  // batch 4 -23%, 128^2 batch 1 -18%; 128 -> 256 at 64^2 still +4% whole,
  // 64 -> 64 at 256^2 +18%, 128 -> 128 at 128^2 +14% (both orders of an
  // interleaved A/B). But only while one image's transformed inputs and
  // outputs fit a chunk (64 MiB, up to 64^2 for 256 -> 256): a chunk holds
  // at least one image, and bands need a few MiB per thread where the
  // whole batch would take 36 (C + K) floats per tile (300 MB at 256^2).
  // Small images (fewer than kBandTiles tiles each) make bands too narrow
  // for the GEMM (256 at 14^2, batch 8: 16-tile bands, 7.9 -> 8.6 ms
  // against the whole batch's 6.9). And from C K of 128 x 256 on, fewer
  // than 8 bands do not pay for reading U once per band: 128 -> 256 at
  // 64^2 batch 1 (4 bands), whole, forward -12%, backward-input -19%; but
  // 64 channels +14 to +17%, 128 level (session 39, as forward_fused's).
  const bool banded =
      g.C * g.K < 256 * 256 || (g.C * g.K == 256 * 256 && image_transform_floats(g) > kChunkFloats);
  const BlisConfig& cfg = sgemm_blis_config();
  const Tiles tl(g);
  if (banded && tl.per_image >= kBandTiles && g.N * Bands(tl).per_image >= min_bands(g, 1))
    return forward_banded(g, x, pack_transformed_filters(layer, w, flip, cfg), bias, relu, y);
  if (fused_filters_suit(g)) return forward_fused(g, x, layer, w, flip, bias, relu, y);
  const PackedFilters U = pack_transformed_filters(layer, w, flip, cfg);
  const int64_t chunk = images_per_chunk(g), tiles = Tiles(images(g, chunk)).total, ldv = v_row_stride(tiles);
  const CpuArray<float> V = transform_buffer(kPoints * point_plane(g.C, ldv));
  const CpuArray<float> M = transform_buffer(kPoints * point_plane(g.K, tiles));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const ConvGeometry gc = images(g, std::min(chunk, g.N - n0));
    const Tiles tl(gc);
    transform_inputs(gc, tl, x + n0 * g.C * g.H * g.W, V.get(), ldv);
    point_products(
        cfg, g.K, tl.total, g.C,
        [&](int xi, int64_t i0) { return AOperand{U.point(xi), 0, false, 1.0f, round_up(g.K, cfg.mr), i0}; },
        [&](int xi) { return MatrixOperand{V.get() + xi * point_plane(g.C, ldv), ldv, false}; }, conv_b_in_place(),
        0.0f, M.get(), tl.total, point_plane(g.K, tl.total));
    transform_outputs(gc, tl, M.get(), bias, relu, y + n0 * g.K * g.P * g.Q);
  }
}

// The forward with the filter transforms fused into the products, for
// layers whose transformed filters U (36 K C floats, 4x the weights) dwarf
// their transformed tiles: deep layers on small images (1024 -> 1024 at
// 16^2: U is 151 MB, V 9.4 MB at batch 4 and 2.4 MB at batch 1). Packing
// U first writes it to memory, and the products then read it back from
// there: with U cycling through L3 instead (an experiment that reused two
// points' U for all 36: wrong answers, the products' time), they ran
// 24-35% faster. Here each task is a block of kFusedRows output
// channels: per depth slice of kFusedDepth input channels it transforms
// those filters into its own packed A blocks, one per point (36 x 96 x
// 128 floats, 1.7 MiB, L2 and L3), and runs the slice's 36 products
// against V straight away, summing into M. Every filter is still
// transformed once; V, small here, is read once per block. A block's M
// sums its slices in order on one thread: the same bits for any thread
// count (not the whole-batch form's bits: its depth slices differ).
//
// Measured against the unfused whole-batch form (session 39, Zen 5 VM, 2
// threads, both orders of an interleaved A/B, median of 4 ratios):
// 1024 -> 1024 at 16^2, forward / backward-input, batch 4 -11% / -17%,
// batch 1 -21% / -25%; 512 -> 1024 at 16^2 batch 4 -15% / -13%; 512 ->
// 512 at 32^2 batch 1 -11%; 256 -> 256 at 16^2 batch 4 -1% / -7%, but 128
// and 64 channels at 16^2 +30% (so C K of 512^2 or more). 128 tiles (batch
// 8 at 16^2, 2 at 32^2) were 5% slower (the first version's 48 x 64
// blocks). Blocks of 48 x 64 gave -2 to -4% where 96 x 128 gives -13%
// (1024 -> 1024 at 16^2), 12 x 1024 -15% at batch 4 but +14% at batch 1.
constexpr int64_t kFusedRows = 96, kFusedDepth = 128, kFusedMaxTiles = 64, kFusedMinFilters = 512 * 512;

bool fused_filters_suit(const ConvGeometry& g) {
  return g.C * g.K >= kFusedMinFilters && Tiles(images(g, images_per_chunk(g))).total <= kFusedMaxTiles;
}

void forward_fused(const ConvGeometry& g, const float* x, const ConvGeometry& layer, const float* w, bool flip,
                   const float* bias, bool relu, float* y) {
  const BlisConfig& cfg = sgemm_blis_config();
  const int64_t mr = cfg.mr, mb = round_up(kFusedRows, mr), ds = std::min(kFusedDepth, cfg.kc);
  check_panel_rows(cfg);
  const int64_t per_point = mb * ds + kLanes;  // + the last depth step's whole-vector store
  const int64_t chunk = images_per_chunk(g), max_tiles = Tiles(images(g, chunk)).total, ldv = v_row_stride(max_tiles);
  const int64_t nb = std::min(round_up(max_tiles, cfg.nr), cfg.nc);
  const CpuArray<float> V = transform_buffer(kPoints * point_plane(g.C, ldv));
  const CpuArray<float> M = transform_buffer(kPoints * point_plane(g.K, max_tiles));
  const int slots = parallel_slots();
  const CpuArray<float> blocks = cpu_array<float>(slots * kPoints * per_point);
  const auto workspaces = per_thread_workspaces(cfg, slots, ds, nb);
  const bool in_place = conv_b_in_place();
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const ConvGeometry gc = images(g, std::min(chunk, g.N - n0));
    const Tiles tl(gc);
    const int64_t T = tl.total, v_plane = point_plane(g.C, ldv), m_plane = point_plane(g.K, T);
    transform_inputs(gc, tl, x + n0 * g.C * g.H * g.W, V.get(), ldv);
#pragma omp parallel
    {
      const int tid = omp_get_thread_num();
      float* a = blocks.get() + tid * kPoints * per_point;
      const BlisWorkspace& ws = *workspaces[tid];
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t r0 = 0; r0 < g.K; r0 += mb) {
        const int64_t rows = std::min(mb, g.K - r0);
        AOperand ap{};
        ap.packed_rows = round_up(rows, mr);
        for (int64_t pc = 0; pc < g.C; pc += ds) {
          const int64_t kc = std::min(ds, g.C - pc);
          // The slice's filters in prepack_a's layout (one depth slice):
          // micro-panel p at p mr kc, depth step d of it mr floats on.
          for (int64_t p = 0; p * mr < rows; ++p) {
            for_each_filter_step(layer, w, flip, r0 + p * mr, std::min(mr, rows - p * mr), pc, pc + kc,
                                 [&](int64_t d, const Vec16(&u)[kA][kA]) {
                                   float* at = a + (p * kc + d - pc) * mr;
                                   FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) {
                                     std::memcpy(at + xi * per_point, &u[xi / kA][xi % kA], sizeof(Vec16));
                                   }
                                 });
          }
          for (int xi = 0; xi < kPoints; ++xi) {
            ap.data = a + xi * per_point;
            const MatrixOperand vb{V.get() + xi * v_plane + pc * ldv, ldv, false};
            for (int64_t j0 = 0; j0 < T; j0 += nb) {
              blis_block(cfg, rows, std::min(nb, T - j0), kc, ap, matrix_packer(vb, in_place), j0,
                         pc == 0 ? 0.0f : 1.0f, M.get() + xi * m_plane + r0 * T + j0, T, ws);
            }
          }
        }
      }
    }
    transform_outputs(gc, tl, M.get(), bias, relu, y + n0 * g.K * g.P * g.Q);
  }
}

// The forward in bands of tile rows, each band start to finish on one
// thread: its inputs transformed into a buffer that stays in cache, 36
// single-threaded GEMMs against U packed once for all bands, its outputs
// transformed straight back. The whole-batch form above instead sends V
// and M through memory (2 x 36 floats per tile and channel, each way);
// this one reads U's packed panels once per band instead of once per call.
// So bands of at least kBandTiles tiles (whole tile rows of one image).
void forward_banded(const ConvGeometry& g, const float* x, const PackedFilters& U, const float* bias, bool relu,
                    float* y) {
  const Tiles tl(g);
  const BlisConfig& cfg = sgemm_blis_config();
  const Bands bands(tl);
  const int64_t bt = bands.max_tiles;
  // Per thread: the band's V [36][C][ldv], M [36][K][bt] (+ slack, read past
  // by transform_output_rows) and the row scratch.
  const int64_t ldv = v_row_stride(bt);
  const int64_t v_floats = kPoints * point_plane(g.C, ldv), m_floats = kPoints * point_plane(g.K, bt) + kLanes;
  const int64_t per_thread = v_floats + m_floats + row_scratch(tl);
  const bool in_place = conv_b_in_place();
  const int slots = parallel_slots();
  const CpuArray<float> scratch = cpu_array<float>(slots * per_thread);
  for (int t = 0; t < slots; ++t) {
    std::fill_n(scratch.get() + t * per_thread + v_floats + m_floats - kLanes, kLanes, 0.0f);  // M's slack
  }
  const auto workspaces = per_thread_workspaces(cfg, slots, g.C, bt);
  AOperand a{};
  a.packed_rows = round_up(g.K, cfg.mr);
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* V = scratch.get() + tid * per_thread;
    float* M = V + v_floats;
    float* rows = M + m_floats;
#pragma omp for schedule(static) nowait
    for (int64_t bi = 0; bi < g.N * bands.per_image; ++bi) {
      const Band b = bands[bi];
      const int64_t tiles = b.tiles;
      const int64_t v_plane = point_plane(g.C, ldv), m_plane = point_plane(g.K, tiles);
      transform_band_inputs(g, tl, x, b, rows, V, ldv);
      for (int xi = 0; xi < kPoints; ++xi) {
        const MatrixOperand vb{V + xi * v_plane, ldv, false};
        AOperand ax = a;
        ax.data = U.point(xi);
        blis_block(cfg, g.K, tiles, g.C, ax, matrix_packer(vb, in_place), 0, 0.0f, M + xi * m_plane, tiles,
                   *workspaces[tid]);
      }
      for (int64_t k = 0; k < g.K; ++k)
        transform_output_rows(g, tl, M + k * tiles, m_plane, b.n, k, b.ty0, b.rows, bias, relu, y);
    }
    stream_fence();  // y's streamed lines (transform_output_rows), before the region's closing barrier
  }
}

// The banded weight gradient's operands. Both have the tiles, the GEMMs'
// depth, as their contiguous axis, so both GEMM packers would transpose
// (transpose_pack.h), reading a band's 36 (K + C) tiles floats back from
// L3 to do it (2.4 MB each for 256 channels and 64 tiles; L2 is 1 MB):
// 25% of the weight gradient of 256 -> 256 at 64^2 batch 4 (perf).
// Instead the transforms of a block of channels go to a small staging
// buffer and are transposed from there while it is in L2: Z into
// prepack_a's layout, MR channels per block, and V into V^T [T, C], which
// the GEMMs read in place as B. The whole-batch form gains nothing from
// it: its transposed operands go to memory either way, and there the
// stores, not the reads, are the cost (128 -> 256 at 64^2 batch 1 +3%,
// 512 at 32^2 batch 4 +4%; session 40).

// Channels [k0, k0 + n) (n <= MR) of tile rows [ty0, ty0 + rows) of image
// img: Z's transforms, packed as point xi's A [K, T] (T = the rows' tiles)
// at A + xi * mpad * T in prepack_a's layout (mpad = K rounded up to MR;
// rows past K zero, so that no stale NaN enters the edge tiles). stage
// holds 36 planes point_plane(MR, T) apart, row r of each at r T.
void pack_output_grad_block(const ConvGeometry& g, const Tiles& tl, const BlisConfig& cfg, const float* dy,
                            int64_t img, int64_t k0, int n, int64_t ty0, int64_t rows, float* scratch, float* stage,
                            float* A) {
  const int64_t T = rows * tl.tx, mr = cfg.mr, mpad = round_up(g.K, mr), plane = point_plane(mr, T);
  for (int r = 0; r < n; ++r) {
    const int64_t k = k0 + r;
    if (k + 1 < g.K) prefetch_rows(dy + (img * g.K + k + 1) * g.P * g.Q, g.P, g.Q, ty0 * kM, (ty0 + rows) * kM);
    transform_output_grad_rows(g, tl, dy, img, k, ty0, rows, scratch, stage + r * T, plane);
  }
  for (int xi = 0; xi < kPoints; ++xi) {
    // The depth slice from pc, kc deep, is at pc mpad, its rows from k0 at k0 depth.
    for (int64_t pc = 0; pc < T; pc += cfg.kc) {
      const int64_t depth = std::min(cfg.kc, T - pc);
      pack_a(cfg, false, stage + xi * plane, T, 0, n, pc, depth, 1.0f, A + xi * mpad * T + pc * mpad + k0 * depth);
    }
  }
}

// dst[t * ld_dst + r] = src[r * ld + t] for rows r < n (n <= 16), t < cols.
void transpose_rows(const float* src, int64_t ld, int n, int64_t cols, float* dst, int64_t ld_dst) {
  const float* rows[kLanes];
  for (int r = 0; r < n; ++r) rows[r] = src + r * ld;
  transpose_pack(rows, n, cols, 1.0f, dst, ld_dst);
}

// Channels [c0, c0 + n) (n <= 16) of tile rows [ty0, ty0 + rows) of image
// img: V's transforms, transposed as Vt[xi * vt_plane + t * ldt + c] for
// the rows' tiles t. stage holds 36 planes point_plane(16, tiles) apart,
// row r of each at r tiles.
void transpose_input_block(const ConvGeometry& g, const Tiles& tl, const float* x, int64_t img, int64_t c0, int n,
                           int64_t ty0, int64_t rows, float* scratch, float* stage, float* Vt, int64_t ldt,
                           int64_t vt_plane) {
  const int64_t tiles = rows * tl.tx, plane = point_plane(kLanes, tiles);
  const int64_t h0 = ty0 * kM - g.ph, h1 = (ty0 + rows) * kM - g.ph + 2;
  for (int r = 0; r < n; ++r) {
    const int64_t c = c0 + r;
    if (c + 1 < g.C) prefetch_rows(x + (img * g.C + c + 1) * g.H * g.W, g.H, g.W, h0, h1);
    transform_input_rows(g, tl, x, img, c, ty0, rows, scratch, stage + r * tiles, plane);
  }
  for (int xi = 0; xi < kPoints; ++xi) {
    transpose_rows(stage + xi * plane, tiles, n, tiles, Vt + xi * vt_plane + c0, ldt);
  }
}

// The staging planes either block needs for up to `tiles` tiles.
int64_t stage_floats(const BlisConfig& cfg, int64_t tiles) {
  return kPoints * point_plane(std::max<int64_t>(kLanes, cfg.mr), tiles);
}

// The weight gradient in bands (as forward_banded): per band, its packed
// operands in cache and Wt[xi] [K, C] += Z[xi] . V[xi]^T. The bands are
// cut into kWeightGroups groups of consecutive bands, as even as the
// count allows; each group sums into its own partial Wt on one thread,
// and the partials add up in group order: the same sums for any thread
// count. (Partials are 36 K C floats each: for small K C only.) The
// staged transposes (above) against the packers' (in bands): 256 -> 256
// at 64^2 batch 4 -7 to -12%, 128 -> 256 -16%, 64 -> 64 at 256^2 -12%,
// 128 at 128^2 -9% (session 40, interleaved A/B, same bits).
constexpr int64_t kWeightGroups = 4;

void backward_weight_banded(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const Tiles tl(g);
  const BlisConfig& cfg = sgemm_blis_config();
  check_panel_rows(cfg);
  const Bands band_grid(tl);
  const int64_t bt = band_grid.max_tiles, bands = g.N * band_grid.per_image;
  // Group i: bands [i bands / groups, (i + 1) bands / groups), as even as the count allows.
  const int64_t groups = std::min(bands, kWeightGroups);
  const int64_t wt_floats = kPoints * point_plane(g.K, g.C);
  const CpuArray<float> partials = cpu_array<float>(groups * wt_floats + kLanes);
  std::fill_n(partials.get() + groups * wt_floats, kLanes, 0.0f);
  // Per thread: the packed Z, V^T, the staging planes and the row scratch.
  const int64_t mpad = round_up(g.K, cfg.mr), ldt = v_row_stride(g.C), vt_plane = point_plane(bt, ldt);
  const int64_t a_floats = kPoints * mpad * bt, vt_floats = kPoints * vt_plane;
  const int64_t per_thread = a_floats + vt_floats + stage_floats(cfg, bt) + row_scratch(tl);
  const bool in_place = conv_b_in_place();
  const int slots = parallel_slots();
  const CpuArray<float> scratch = cpu_array<float>(slots * per_thread);
  const auto workspaces = per_thread_workspaces(cfg, slots, bt, g.C);
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
    float* A = scratch.get() + tid * per_thread;
    float* Vt = A + a_floats;
    float* stage = Vt + vt_floats;
    float* rows = stage + stage_floats(cfg, bt);
#pragma omp for schedule(static)
    for (int64_t group = 0; group < groups; ++group) {
      float* Wt = partials.get() + group * wt_floats;
      const int64_t first = group * bands / groups, end = (group + 1) * bands / groups;
      for (int64_t band = first; band < end; ++band) {
        const Band b = band_grid[band];
        const int64_t tiles = b.tiles;
        for (int64_t c0 = 0; c0 < g.C; c0 += kLanes)
          transpose_input_block(g, tl, x, b.n, c0, static_cast<int>(std::min<int64_t>(kLanes, g.C - c0)), b.ty0,
                                b.rows, rows, stage, Vt, ldt, vt_plane);
        for (int64_t k0 = 0; k0 < g.K; k0 += cfg.mr)
          pack_output_grad_block(g, tl, cfg, dy, b.n, k0, static_cast<int>(std::min(cfg.mr, g.K - k0)), b.ty0,
                                 b.rows, rows, stage, A);
        const float beta = band == first ? 0.0f : 1.0f;
        for (int xi = 0; xi < kPoints; ++xi) {
          AOperand a{};
          a.data = A + xi * mpad * tiles;
          a.packed_rows = mpad;
          const MatrixOperand vt{Vt + xi * vt_plane, ldt, false};
          blis_block(cfg, g.K, g.C, tiles, a, matrix_packer(vt, in_place), 0, beta,
                     Wt + xi * point_plane(g.K, g.C), g.C, *workspaces[tid]);
        }
      }
    }
  }
  untransform_filters(g, partials.get(), dw, groups, wt_floats);
}

// The weight gradient with the untransform fused into the products, for
// the same layers as forward_fused (deep, on small images): there the 36
// products Wt[xi] [K, C] = Z[xi] . V[xi]^T are 36 K C floats (151 MB for
// 1024 -> 1024), written to memory by the GEMMs and read back by the
// untransform, against 36 (K + C) T floats of Z and V. Here each task is
// a kWeightBlock x kWeightBlock block of (k, c): it runs the block's 36
// products into its own buffer and untransforms them straight away. So
// that no task repacks the operands, each point's Z is packed once as the
// GEMMs' A (pack_a) and its V transposed once into a row-major V^T [T, C],
// which the GEMMs read in place as B. Each output is one task's dot
// product over all T tiles, as in the unfused form: the same bits, for any
// thread count. Against the unfused form (session 39, as forward_fused's
// numbers): with 16 tiles, 1024 -> 1024 at 16^2 batch 1 -18%, at 8^2 batch
// 4 -17%, 512 -> 1024 at 16^2 batch 1 -9%; but with 32 tiles (512 -> 1024,
// batch 2) +10%, and with 64 level to +5% (blocks of 48 to 192 rows and
// 64 to 192 columns alike). So 16 tiles at most.
constexpr int64_t kWeightBlock = 96, kWeightFusedMaxTiles = 16;

bool weight_grad_fused(const ConvGeometry& g) {
  return images_per_chunk(g) >= g.N && g.C * g.K >= kFusedMinFilters && Tiles(g).total <= kWeightFusedMaxTiles;
}

void backward_weight_fused(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const BlisConfig& cfg = sgemm_blis_config();
  const Tiles tl(g);
  const int64_t T = tl.total, ldv = v_row_stride(T), mpad = round_up(g.K, cfg.mr);
  const int64_t ldt = v_row_stride(g.C);  // V^T's rows, as V's: never a multiple of 256 floats apart
  const int64_t mb = round_up(kWeightBlock, cfg.mr), cb = round_up(kWeightBlock, cfg.nr);
  const int64_t block_floats = mb * cb + kLanes;
  const CpuArray<float> V = transform_buffer(kPoints * point_plane(g.C, ldv));
  const CpuArray<float> Z = transform_buffer(kPoints * point_plane(g.K, T));
  const CpuArray<float> A = cpu_array<float>(kPoints * mpad * T);
  const CpuArray<float> Vt = cpu_array<float>(kPoints * T * ldt);
  const int slots = parallel_slots();
  const CpuArray<float> blocks = cpu_array<float>(slots * kPoints * block_floats);
  const auto workspaces = per_thread_workspaces(cfg, slots, T, cb);
  const bool in_place = conv_b_in_place();
  transform_inputs(g, tl, x, V.get(), ldv);
  transform_output_grads(g, tl, dy, Z.get());
  const int64_t row_blocks = ceil_div(g.K, mb), col_blocks = ceil_div(g.C, cb);
#pragma omp parallel
  {
    const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int xi = 0; xi < kPoints; ++xi) {
      const float* z = Z.get() + xi * point_plane(g.K, T);
      for (int64_t pc = 0; pc < T; pc += cfg.kc)  // prepack_a's layout
        pack_a(cfg, false, z, T, 0, g.K, pc, std::min(cfg.kc, T - pc), 1.0f, A.get() + xi * mpad * T + pc * mpad);
      const float* v = V.get() + xi * point_plane(g.C, ldv);
      for (int64_t c0 = 0; c0 < g.C; c0 += kLanes) {
        const int n = static_cast<int>(std::min<int64_t>(kLanes, g.C - c0));
        transpose_rows(v + c0 * ldv, ldv, n, T, Vt.get() + xi * T * ldt + c0, ldt);
      }
    }
    float* block = blocks.get() + tid * kPoints * block_floats;
    const BlisWorkspace& ws = *workspaces[tid];
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t task = 0; task < row_blocks * col_blocks; ++task) {
      const int64_t k0 = task / col_blocks * mb, c0 = task % col_blocks * cb;
      const int64_t rows = std::min(mb, g.K - k0), cols = std::min(cb, g.C - c0);
      for (int xi = 0; xi < kPoints; ++xi) {
        const AOperand a{A.get() + xi * mpad * T, 0, false, 1.0f, mpad, k0};
        const MatrixOperand vt{Vt.get() + xi * T * ldt, ldt, false};
        blis_block(cfg, rows, cols, T, a, matrix_packer(vt, in_place), c0, 0.0f, block + xi * block_floats, cb, ws);
      }
      for (int64_t k = 0; k < rows; ++k)
        for (int64_t c = 0; c < cols; c += kLanes) {
          Vec16 m[kA][kA];
          FULLY_UNROLLED for (int xi = 0; xi < kPoints; ++xi) {
            m[xi / kA][xi % kA] = load16(block + xi * block_floats + k * cb + c);
          }
          untransform16(g, m, k0 + k, c0 + c, std::min<int64_t>(kLanes, cols - c), dw);
        }
    }
  }
}

}  // namespace

bool conv2d_winograd_weight_grad_in_bands(const ConvGeometry& g) {
  // Partials of 36 K C floats per group: small K C only. Fewer bands than
  // groups would leave threads idle (the groups are the parallel work).
  // Images of fewer than 32 tiles (up to 20 x 20 outputs) make bands too
  // thin for the partials of 128 channels and more: over the whole batch,
  // 256 -> 256 at 14^2 batch 8 took 3.73 ms against the bands' 4.71, at
  // 16^2 batch 4 1.93 against 2.95; at 28^2 (49 tiles) the bands still
  // won, 2.89 against 4.38 for 128 channels. With 64 channels the bands
  // stay (the whole-batch form needs 128): 16^2 batch 8 0.63 against the
  // GEMM's 0.73 ms, 20^2 batch 4 0.50 against 0.55 (session 35, Zen 5 VM,
  // 2 threads, alternated). From C K of 128 x 256 on, the bands need
  // exactly one per group or at least 8 (change 35's two per group):
  // with the staged transposes (backward_weight_banded), one band per
  // group beat the whole batch for 128 -> 256 at 64^2 batch 1 by 26-31%,
  // 256 -> 256 at 64^2 batch 1 by 16-18%, at 32^2 batch 4 by 7%; but 5
  // to 7 bands lost or were level (256 -> 256 at 32^2: batch 5 +2% and
  // +22%, batch 6 +1% and +4%, batch 7 +9%; session 40, interleaved A/B,
  // noisy). (Before them, one band per group lost too; session 39.)
  const Tiles tl(g);
  const int64_t bands = g.N * Bands(tl).per_image;
  const bool pays = bands == kWeightGroups || bands >= min_bands(g, kWeightGroups);  // (min_bands >= 4)
  return g.C * g.K <= 256 * 256 && (tl.per_image >= 32 || std::min(g.C, g.K) < 128) && pays;
}

int64_t conv2d_winograd_tiles(const ConvGeometry& g) { return Tiles(g).total; }

bool conv2d_winograd_forward_fused(const ConvGeometry& g) { return fused_filters_suit(g); }

bool conv2d_winograd_weight_grad_fused(const ConvGeometry& g) {
  return !conv2d_winograd_weight_grad_in_bands(g) && weight_grad_fused(g);
}

bool conv2d_winograd_applies(const ConvGeometry& g) {
  return g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.N > 0 && g.K > 0 &&
         g.C > 0 && g.P > 0 && g.Q > 0;
}

void conv2d_winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                             bool relu) {
  check_applies(g, "conv2d_winograd_forward");
  forward_transformed(g, x, g, w, /*flip=*/false, bias, relu, y);
}

void conv2d_winograd_backward_input(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  check_applies(g, "conv2d_winograd_backward_input");
  // dx is the forward of dy with the flipped kernel, padding 2 - p.
  ConvGeometry f = g;
  f.C = g.K, f.H = g.P, f.W = g.Q;
  f.K = g.C, f.P = g.H, f.Q = g.W;
  f.ph = 2 - g.ph, f.pw = 2 - g.pw;
  forward_transformed(f, dy, g, w, /*flip=*/true, nullptr, false, dx);
}

void conv2d_winograd_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  check_applies(g, "conv2d_winograd_backward_weight");
  if (conv2d_winograd_weight_grad_in_bands(g)) return backward_weight_banded(g, dy, x, dw);
  if (weight_grad_fused(g)) return backward_weight_fused(g, dy, x, dw);
  const BlisConfig& cfg = sgemm_blis_config();
  const int64_t chunk = images_per_chunk(g), tiles = Tiles(images(g, chunk)).total, ldv = v_row_stride(tiles);
  const CpuArray<float> V = transform_buffer(kPoints * point_plane(g.C, ldv));
  const CpuArray<float> Z = transform_buffer(kPoints * point_plane(g.K, tiles));
  const CpuArray<float> Wt = transform_buffer(kPoints * point_plane(g.K, g.C));
  // Chunks add into Wt in image order: the sum's order does not depend on threads.
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const ConvGeometry gc = images(g, std::min(chunk, g.N - n0));
    const Tiles tl(gc);
    transform_inputs(gc, tl, x + n0 * g.C * g.H * g.W, V.get(), ldv);
    transform_output_grads(gc, tl, dy + n0 * g.K * g.P * g.Q, Z.get());
    // Wt[xi] [K, C] (+)= Z[xi] [K, T] . V[xi]^T.
    point_products(
        cfg, g.K, g.C, tl.total,
        [&](int xi, int64_t i0) {
          return AOperand{Z.get() + xi * point_plane(g.K, tl.total) + i0 * tl.total, tl.total};
        },
        [&](int xi) { return MatrixOperand{V.get() + xi * point_plane(g.C, ldv), ldv, true}; }, false,
        n0 == 0 ? 0.0f : 1.0f, Wt.get(), g.C, point_plane(g.K, g.C));
  }
  untransform_filters(g, Wt.get(), dw);
}

}  // namespace crfseg::kernels::cpu
