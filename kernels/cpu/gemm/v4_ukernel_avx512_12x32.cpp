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
// on short-wide shapes: bench_gemm 64 65536 576 (2 threads, loaded machine)
// v3 66, v4 105, OpenBLAS 111 GFLOP/s. Numbers on a quiet machine:
// bench/results/.
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

__attribute__((target("avx512f"))) void ukernel_12x32_avx512(int64_t kc, const float* a, const float* b,
                                                              float beta, float* C, int64_t ldc) {
  // acc[i][h]: row i of the tile, columns 16h .. 16h+15. Constant indices
  // after full unrolling let GCC keep all 24 in zmm registers.
  __m512 acc[kMr][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);  // C[i, :] += A[i, k] * B[k, :]
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr;
    b += kNr;
  }
  if (beta == 0.0f) {  // overwrite: old C (maybe NaN) unread
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      _mm512_storeu_ps(C + i * ldc, acc[i][0]);
      _mm512_storeu_ps(C + i * ldc + 16, acc[i][1]);
    }
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

// Block sizes for AVX-512 server cores (Skylake-SP .. Sapphire Rapids, Zen 4:
// 32-48 KiB L1d, 1-2 MiB L2 per core). Not tuned (no such machine at hand):
//   KC = 192: a B micro-panel is 192 * 32 * 4 B = 24 KiB, under a 32 KiB L1d
//             (a wider NR than v3 forces a shorter KC).
//   MC = 384: the packed A block is 384 * 192 * 4 B = 288 KiB, at most about
//             a quarter of a 1 MiB L2.
//   NC = 4096: the packed B block is 192 * 4096 * 4 B = 3 MiB, in L3.
constexpr BlisConfig kConfig{kMr, kNr, /*mc=*/384, /*kc=*/192, /*nc=*/4096, ukernel_12x32_avx512};
static_assert(kConfig.mr * kConfig.nr <= kMaxMicroTile && kConfig.mc % kConfig.mr == 0 &&
              kConfig.nc % kConfig.nr == 0);

}  // namespace

const BlisConfig& sgemm_v4_config() { return kConfig; }

void sgemm_v4_ukernel_avx512_12x32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                   int64_t ldc) {
  blis_sgemm(kConfig, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else  // not x86: the registry never offers this variant (has_avx512f() is false).

const BlisConfig& sgemm_v4_config() { return sgemm_v2_config(); }

void sgemm_v4_ukernel_avx512_12x32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                   int64_t ldc) {
  sgemm_v2_blocking_packing(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif

}  // namespace crfseg::kernels::cpu
