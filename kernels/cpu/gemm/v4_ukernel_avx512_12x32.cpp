// SGEMM v4: AVX-512F 12 x 32 micro-kernel.
// Changed from v3: zmm registers hold 16 floats and there are 32 of them, so
// the tile grows to 12 x 32: 24 accumulators (12 rows x 2 vectors), 2 loads
// of B and 1 broadcast of A per row per k, 27 of 32 registers in use, 24
// FMAs (384 multiply-adds) per k. Packing, blocking and threading are
// shared with v2/v3 (blis_loops.h); only the micro-kernel and the block
// sizes (below) change. Compiled with __attribute__((target("avx512f"))) and
// offered by the registry only when has_avx512f().
// Constraints: needs AVX-512F (x86-64).
// Tested on AMD EPYC Zen 4 (family 25 model 17, 2 vCPUs), where the whole
// test suite (every variant on awkward shapes; the convolutions, which use
// the production micro-kernel) passes. Zen 4 executes a 512-bit FMA as two
// 256-bit halves, so the FMA peak equals v3's; v4 wins by issuing half the
// instructions per flop (one broadcast feeds 32 columns), which shows most
// on short-wide shapes. Last row panels of fewer than 12 rows (M = 64 has
// 5 full panels and one of 4) run a kernel with only those rows instead of
// wasting a full 12-row tile.
// Measured (quiet Zen 4 VM, 2 threads, OMP_NUM_THREADS=2, OpenBLAS with
// OPENBLAS_CORETYPE/L2_SIZE unset, bench_gemm --repeats 7, two runs):
//   2048^3: v4 179-184 vs OpenBLAS 188-197 GFLOP/s (0.91-0.98x)
//   4096^3: v4 189-194 vs OpenBLAS 194-203 (0.95-0.98x)
//   64 x 65536 x 576: v4 103-107 vs OpenBLAS 109-113 (0.94x; bandwidth bound)
//   64 x 65536 x 27:  v4 81-102 vs OpenBLAS 94-100 (0.86-1.01x; 2 ms, noisy)
// Measured FMA peak of the VM: 234 GFLOP/s.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CRFSEG_HAVE_X86 1
#endif

namespace crfseg::kernels::cpu {

#ifdef CRFSEG_HAVE_X86

namespace {

constexpr int kMr = 12, kNr = 32;

// kPrefetchB > 0: also prefetch the B row kPrefetchB steps ahead (its two
// lines). B's micro-panel streams from L2: in v4's order because at KC = 1024
// it is 128 KiB, over twice the L1d, and in v5's because every tile takes a
// new one.
// ldb: the distance between B's rows, kNr in a packed micro-panel, or the
// matrix's leading dimension when B is read in place (blis_loops.h).
template <int kPrefetchB>
__attribute__((target("avx512f"))) inline void prefetch_b(const float* b, int64_t ldb) {
  if constexpr (kPrefetchB > 0) {
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * ldb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * ldb + 16), _MM_HINT_T0);
  }
}

// With kPrefetchB > 0, the C tile too, at the start of the tile: its 12
// rows lie ldc apart, and v5 updates a new tile every KC k-steps, so the
// update at the end otherwise waits on 24 lines from L3 or memory. Stop 23,
// 4096^3 alternated (8 pairs, v5 time over OpenBLAS's, as a fraction of its
// speed): median 0.96 without, 0.99 with; 2048^3 within the noise.
template <int kPrefetchB>
__attribute__((target("avx512f"))) inline void prefetch_c(const float* C, int64_t ldc) {
  if constexpr (kPrefetchB > 0) {
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + kNr - 1), _MM_HINT_T0);
    }
  }
}

// With kStreamC and beta == 0, row i's two vectors go out with streaming
// stores where C + i * ldc is 64-byte aligned, and C is not prefetched
// (BlisConfig::ukernel_b_in_place_stream). Otherwise plain stores.
template <bool kStreamC>
__attribute__((target("avx512f"))) inline void store_row(float* c, __m512 lo, __m512 hi) {
  if (kStreamC && reinterpret_cast<uintptr_t>(c) % 64 == 0) {
    _mm512_stream_ps(c, lo);
    _mm512_stream_ps(c + 16, hi);
  } else {
    _mm512_storeu_ps(c, lo);
    _mm512_storeu_ps(c + 16, hi);
  }
}

template <int kPrefetchB, bool kStreamC = false>
__attribute__((target("avx512f"))) inline void ukernel_12x32_core(int64_t kc, const float* a, const float* b,
                                                                   int64_t ldb, float beta, float* C, int64_t ldc) {
  // acc[i][h]: row i of the tile, columns 16h .. 16h+15. Constant indices
  // after full unrolling let GCC keep all 24 in zmm registers.
  __m512 acc[kMr][2];
  if (!(kStreamC && beta == 0.0f)) prefetch_c<kPrefetchB>(C, ldc);
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    prefetch_b<kPrefetchB>(b, ldb);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);  // C[i, :] += A[i, k] * B[k, :]
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr;
    b += ldb;
  }
  if (beta == 0.0f) {  // overwrite: old C (maybe NaN) unread
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) store_row<kStreamC>(C + i * ldc, acc[i][0], acc[i][1]);
  } else {
    const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      float* c = C + i * ldc;
      _mm512_storeu_ps(c, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c), acc[i][0]));
      _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c + 16), acc[i][1]));
    }
  }
}

template <int kPrefetchB>
__attribute__((target("avx512f"))) void ukernel_12x32_avx512(int64_t kc, const float* a, const float* b,
                                                              float beta, float* C, int64_t ldc) {
  ukernel_12x32_core<kPrefetchB>(kc, a, b, kNr, beta, C, ldc);
}

// The first `Rows` rows of the 12 x 32 tile (Rows < 12), for the last row
// panel of a block when M is not a multiple of 12; the packed A micro-panel
// keeps its stride of 12. Same loop as above with fewer accumulators.
template <int Rows, int kPrefetchB, bool kStreamC = false>
__attribute__((target("avx512f"))) void ukernel_rows_avx512(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                             float beta, float* C, int64_t ldc) {
  __m512 acc[Rows][2];
#pragma GCC unroll 12
  for (int i = 0; i < Rows; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    prefetch_b<kPrefetchB>(b, ldb);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < Rows; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr;
    b += ldb;
  }
  const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < Rows; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      store_row<kStreamC>(c, acc[i][0], acc[i][1]);
    } else {
      _mm512_storeu_ps(c, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c), acc[i][0]));
      _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c + 16), acc[i][1]));
    }
  }
}

// f(std::integral_constant<int, rows>{}) for rows = 1 .. 12: a row count
// known only at run time as the micro-kernels' template argument.
template <typename F>
inline void with_rows(int64_t rows, F&& f) {
  switch (rows) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 9: return f(std::integral_constant<int, 9>{});
    case 10: return f(std::integral_constant<int, 10>{});
    case 11: return f(std::integral_constant<int, 11>{});
    default: return f(std::integral_constant<int, kMr>{});  // rows == 12
  }
}

// rows <= 12 rows of a tile, all 32 columns; B rows ldb apart.
template <int kPrefetchB, bool kStreamC = false>
void ukernel_rows_strided(int64_t rows, int64_t kc, const float* a, const float* b, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  with_rows(rows, [&](auto r) {
    if constexpr (r() == kMr) {
      ukernel_12x32_core<kPrefetchB, kStreamC>(kc, a, b, ldb, beta, C, ldc);
    } else {
      ukernel_rows_avx512<r(), kPrefetchB, kStreamC>(kc, a, b, ldb, beta, C, ldc);
    }
  });
}

// The last, narrower column panel (cols < 32): one vector of B per step
// where cols <= 16 (half the work of the full tile), else two; C's rows
// loaded and stored under masks. The same sums as the full kernel.
template <int Rows, int Vecs>
__attribute__((target("avx512f"))) void ukernel_cols_avx512(int64_t cols, int64_t kc, const float* a, const float* b,
                                                             float beta, float* C, int64_t ldc) {
  __m512 acc[Rows][Vecs];
#pragma GCC unroll 12
  for (int i = 0; i < Rows; ++i)
    for (int h = 0; h < Vecs; ++h) acc[i][h] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[Vecs];
    for (int h = 0; h < Vecs; ++h) bv[h] = _mm512_loadu_ps(b + 16 * h);
#pragma GCC unroll 12
    for (int i = 0; i < Rows; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      for (int h = 0; h < Vecs; ++h) acc[i][h] = _mm512_fmadd_ps(ai, bv[h], acc[i][h]);
    }
    a += kMr;
    b += kNr;
  }
  __mmask16 live[Vecs];
  for (int h = 0; h < Vecs; ++h) {
    const int64_t n = std::min<int64_t>(16, cols - 16 * h);
    live[h] = static_cast<__mmask16>((1u << n) - 1u);
  }
  const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < Rows; ++i) {
    for (int h = 0; h < Vecs; ++h) {
      float* c = C + i * ldc + 16 * h;
      if (beta == 0.0f) {  // old C (maybe NaN) unread
        _mm512_mask_storeu_ps(c, live[h], acc[i][h]);
      } else {
        _mm512_mask_storeu_ps(c, live[h], _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(live[h], c), acc[i][h]));
      }
    }
  }
}

void ukernel_cols_12x32(int64_t rows, int64_t cols, int64_t kc, const float* a, const float* b, float beta, float* C,
                        int64_t ldc) {
  with_rows(rows, [&](auto r) {
    if (cols <= 16) return ukernel_cols_avx512<r(), 1>(cols, kc, a, b, beta, C, ldc);
    ukernel_cols_avx512<r(), 2>(cols, kc, a, b, beta, C, ldc);
  });
}

template <int kPrefetchB>
void ukernel_rows_12x32_avx512(int64_t rows, int64_t kc, const float* a, const float* b, float beta, float* C,
                               int64_t ldc) {
  ukernel_rows_strided<kPrefetchB>(rows, kc, a, b, kNr, beta, C, ldc);
}

// The same kernels with B prefetched kPrefetchDistance k-steps ahead. v5
// (kernels/cpu/gemm/v5_avx512_12x32_a_resident.cpp) sets its own block
// sizes and loop order; v4 runs them with its own (below).
constexpr int kPrefetchDistance = 24;

// Block sizes. First tuned on the Zen 4 VM (32 KiB L1d, 1 MiB L2 per core)
// by a sweep of bench_gemm 2048^3 (2 threads, medians of 5, GFLOP/s;
// OpenBLAS 186-205 in the same runs):
//   MC/KC  384/192: 168   192/384: 181   288/256: 179   144/512: 194
//           96/768: 196    72/1024: 197  192/512: 185
// Every good point keeps the packed A block near 288 KiB (MC * KC * 4, about
// a quarter of L2) and KC long: each pass over K reloads and stores the C
// tile, and a longer KC amortises that and the loop overhead. The B
// micro-panel (KC * 32 * 4 bytes) then spills from L1 to L2, which the
// measurements say costs less than the extra C traffic of a short KC.
// Retuned on the Zen 5 VM (48 KiB L1d, 1 MiB L2 per core; stop 30) once the
// row split was balanced (blis_loops.cpp), with huge-page operands and
// alternated timing as bench_gemm now does. First a
// scratch sweep, then `bench_gemm --variants v4_ukernel_avx512_12x32,openblas
// --blocks MC,KC,NC ... --repeats 9 4096 4096 4096 2048 2048 2048` (two or
// three runs each); v4's speed over OpenBLAS's:
//   MC/KC/NC, B prefetch   4096^3       2048^3
//   144/512/4096, no       0.92-0.94    0.94-0.95   (the old choice)
//   144/512/4096, yes      0.93-0.97    0.98
//    96/768/4096, yes      0.95-0.99    1.01-1.02
//    96/768/2048, yes      0.99-1.01    0.99-1.01
//    96/768/2048, no       0.96         0.97
//    72/1024/4096, yes     0.92         1.03
//    72/1024/2048, yes     1.01         1.00-1.03
//    96/1024/2048, yes     1.01         1.00-1.02
//   120/1024/2048, yes     1.01         1.00
// The B micro-panel (KC * 32 * 4 bytes: 128 KiB) streams from L2, so
// prefetching it 24 k-steps ahead pays here (on Zen 4 it was within the
// noise). NC = 2048 halves the packed B block (8 MiB at KC = 1024), which
// every ic block reads through L3. The U-Net's convolutions (bench_conv
// --batch 4 --filter unet) and training step (bench_models --base 64
// --size 256 --batch 4) kept their times within the noise.
constexpr BlisConfig kConfig{kMr,
                             kNr,
                             /*mc=*/96,
                             /*kc=*/1024,
                             /*nc=*/2048,
                             ukernel_12x32_avx512<kPrefetchDistance>,
                             ukernel_rows_12x32_avx512<kPrefetchDistance>,
                             false,
                             ukernel_rows_strided<kPrefetchDistance>,
                             ukernel_rows_strided<kPrefetchDistance, /*kStreamC=*/true>,
                             ukernel_cols_12x32};

// The prefetching kernels with Zen 4's block sizes, as v5's starting point.
constexpr BlisConfig kPrefetchConfig{kMr, kNr, /*mc=*/144, /*kc=*/512, /*nc=*/4096,
                                     ukernel_12x32_avx512<kPrefetchDistance>,
                                     ukernel_rows_12x32_avx512<kPrefetchDistance>, false,
                                     ukernel_rows_strided<kPrefetchDistance>,
                                     ukernel_rows_strided<kPrefetchDistance, /*kStreamC=*/true>,
                                     ukernel_cols_12x32};
static_assert(kConfig.mr * kConfig.nr <= kMaxMicroTile && kConfig.mc % kConfig.mr == 0 &&
              kConfig.nc % kConfig.nr == 0);

}  // namespace

const BlisConfig& sgemm_v4_config() { return kConfig; }
const BlisConfig& sgemm_v4_prefetch_b_config() { return kPrefetchConfig; }

void sgemm_v4_ukernel_avx512_12x32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                   int64_t ldc) {
  blis_sgemm(kConfig, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else  // not x86: the registry never offers this variant (has_avx512f() is false).

const BlisConfig& sgemm_v4_config() { return sgemm_v2_config(); }
const BlisConfig& sgemm_v4_prefetch_b_config() { return sgemm_v2_config(); }

void sgemm_v4_ukernel_avx512_12x32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                   int64_t ldc) {
  sgemm_v2_blocking_packing(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif

}  // namespace crfseg::kernels::cpu
