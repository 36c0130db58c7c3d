// SGEMM v2: blocking and packing (BLIS loops) with a portable micro-kernel.
// Changed from v1: v1 streams all of B from memory once per row of C. v2
// tiles the problem with the BLIS loop nest (blis_loops.h): a KC x NC block
// of op(B) and an MC x KC block of op(A) are copied ("packed") into
// contiguous, zero-padded micro-panels sized for L3/L2/L1, and a 6 x 16
// micro-kernel keeps its tile of C in registers for all KC steps, so each
// loaded float feeds 6 (B) or 16 (A) FMAs instead of 1. Packing handles all
// four transpose cases and folds alpha into A. OpenMP splits the ic loop
// (partitioning documented in blis_loops.cpp).
// The micro-kernel is plain C++: a local 6 x 16 accumulator array that GCC
// vectorises for whatever -march the file is built with.
// Constraints: none (any M, N, K, transposes, leading dims).
// Measured (AMD EPYC znver3 VM, 2 cores, OMP_NUM_THREADS=2, -march=native,
// OMP_NUM_THREADS=2 build/bench/bench_gemm 512 512 512 1024 1024 1024;
// medians, quietest of several runs, run-to-run spread on this shared VM
// in brackets): 512^3: 146 GFLOP/s [109-146]; 1024^3: 116 GFLOP/s [95-116].
// (v1: 47 and 41.) Without the omp simd pragma below: ~2.3 GFLOP/s.
#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"

namespace crfseg::kernels::cpu {

namespace {

constexpr int kMr = 6, kNr = 16;

// Portable 6 x 16 micro-kernel. acc is 96 floats = 12 AVX2 registers (or
// 24 SSE, 6 AVX-512): constant trip counts let GCC fully unroll i and
// vectorise j, keeping acc in registers. Per k: 16 B floats and 6 A floats
// loaded for 96 multiply-adds.
void ukernel_6x16_portable(int64_t kc, const float* a, const float* b, float beta, float* C, int64_t ldc) {
  float acc[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b + k * kNr;
    const float* ak = a + k * kMr;
    // C[i, :] += A[i, k] * B[k, :]. The omp simd pragma pins vectorisation
    // to j (unit stride); left alone, GCC 12 vectorises the k loop instead,
    // with strided loads and shuffles, and runs ~20x slower.
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) {
      const float ai = ak[i];
#pragma omp simd
      for (int j = 0; j < kNr; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < kMr; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < kNr; ++j) c[j] = acc[i][j];  // overwrite: old C (maybe NaN) unread
    } else {
      for (int j = 0; j < kNr; ++j) c[j] = acc[i][j] + beta * c[j];
    }
  }
}

// Block sizes for AMD Zen 3 (32 KiB L1d, 512 KiB L2 per core, 32 MiB L3):
//   KC = 256: one B micro-panel is 256 * 16 * 4 B = 16 KiB, half of L1d,
//             next to a 6 KiB A micro-panel; a longer KC amortises the C
//             tile load/store (2 * 96 floats) over more FMAs.
//   MC = 168: the packed A block is 168 * 256 * 4 B = 168 KiB, about a
//             third of L2, leaving room for B micro-panels passing through.
//   NC = 4080: the packed B block is 256 * 4080 * 4 B ~= 4 MiB, in L3 and
//             shared by both cores; typical N fits in one jc step.
constexpr BlisConfig kConfig{kMr, kNr, /*mc=*/168, /*kc=*/256, /*nc=*/4080, ukernel_6x16_portable};
static_assert(kConfig.mr * kConfig.nr <= kMaxMicroTile && kConfig.mc % kConfig.mr == 0 &&
              kConfig.nc % kConfig.nr == 0);

}  // namespace

const BlisConfig& sgemm_v2_config() { return kConfig; }

void sgemm_v2_blocking_packing(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                               int64_t ldc) {
  blis_sgemm(kConfig, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace crfseg::kernels::cpu
