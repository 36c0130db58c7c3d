// SGEMM v3: hand-written AVX2 + FMA 6 x 16 micro-kernel.
// Changed from v2: same packing, blocking and threading (blis_loops.h, same
// block sizes), but the micro-kernel is written with intrinsics instead of
// trusting the auto-vectoriser: the 6 x 16 tile of C lives in 12 ymm
// registers (6 rows x 2 vectors of 8 floats); per k it does 2 loads of B,
// 6 broadcasts of A and 12 FMAs (96 multiply-adds), using 15 of the 16 ymm
// registers. Zen 3 issues 2 FMAs per cycle with latency 4, so 12 independent
// accumulators (> 2 * 4) keep both FMA pipes busy.
// The function is compiled with __attribute__((target("avx2,fma"))), so the
// library builds and runs without -march=native on any x86-64 CPU; the
// registry only offers it when has_avx2_fma() says the CPU supports it.
// Constraints: needs AVX2+FMA (x86-64).
// Measured (AMD EPYC znver3 VM, 2 cores, OMP_NUM_THREADS=2, -march=native,
// OMP_NUM_THREADS=2 build/bench/bench_gemm 512 512 512 1024 1024 1024;
// medians, quietest of several runs, spread in brackets):
//   512^3: 163 GFLOP/s [124-163]; 1024^3: 137 GFLOP/s [102-141].
// Peak is 2 cores x 2 FMA pipes x 8 lanes x 2 flops x ~2.45 GHz ~= 157
// GFLOP/s at base clock (more when boosting). Under -march=native v2's
// auto-vectorised kernel compiles to nearly the same loop, so v3 gains only
// 10-20% here (tighter code, no stack-zeroed accumulator array); in builds
// without -march=native v2 falls back to SSE2 and the gap should be about
// 2x (expected, not measured).
#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CRFSEG_HAVE_X86 1
#endif

namespace crfseg::kernels::cpu {

#ifdef CRFSEG_HAVE_X86

namespace {

constexpr int kMr = 6, kNr = 16;

__attribute__((target("avx2,fma"))) void ukernel_6x16_avx2(int64_t kc, const float* a, const float* b, float beta,
                                                            float* C, int64_t ldc) {
  // c<row><half>: row i of the tile, columns 0-7 (half 0) or 8-15 (half 1).
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    // Row k of the B micro-panel: 16 contiguous floats (packed, so no stride).
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 ai;
    // Column k of the A micro-panel, one element broadcast at a time:
    // C[i, :] += A[i, k] * B[k, :] (outer-product update of the tile).
    ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += kMr;
    b += kNr;
  }
  // Write back: C = acc (beta == 0, old C unread) or C = acc + beta * C.
  const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (beta == 0.0f) {
    for (int i = 0; i < kMr; ++i) {
      _mm256_storeu_ps(C + i * ldc, acc[i][0]);
      _mm256_storeu_ps(C + i * ldc + 8, acc[i][1]);
    }
  } else {
    const __m256 vbeta = _mm256_set1_ps(beta);
    for (int i = 0; i < kMr; ++i) {
      float* c = C + i * ldc;
      _mm256_storeu_ps(c, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c), acc[i][0]));
      _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c + 8), acc[i][1]));
    }
  }
}

// Same block sizes as v2 and the same cache reasoning (Zen 3: 32 KiB L1d,
// 512 KiB L2 per core, 32 MiB L3): KC = 256 -> 16 KiB B micro-panel in L1,
// MC = 168 -> 168 KiB A block in L2, NC = 4080 -> ~4 MiB B block in L3.
constexpr BlisConfig kConfig{kMr, kNr, /*mc=*/168, /*kc=*/256, /*nc=*/4080, ukernel_6x16_avx2};
static_assert(kConfig.mr * kConfig.nr <= kMaxMicroTile && kConfig.mc % kConfig.mr == 0 &&
              kConfig.nc % kConfig.nr == 0);

}  // namespace

const BlisConfig& sgemm_v3_config() { return kConfig; }

void sgemm_v3_ukernel_avx2_6x16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                int64_t ldc) {
  blis_sgemm(kConfig, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else  // not x86: the registry never offers this variant (has_avx2_fma() is false).

const BlisConfig& sgemm_v3_config() { return sgemm_v2_config(); }

void sgemm_v3_ukernel_avx2_6x16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                int64_t ldc) {
  sgemm_v2_blocking_packing(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif

}  // namespace crfseg::kernels::cpu
