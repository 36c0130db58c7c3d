// The BLIS loop nest shared by the blocked SGEMM variants (v2, v3).
//
// C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C, row-major.
// The five loops around one MR x NR micro-kernel (Van Zee & van de Geijn,
// "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", TOMS 2015;
// Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication"):
//   jc over N in steps of NC : one KC x NC block of op(B) is packed (-> L3)
//     pc over K in steps of KC
//       ic over M in steps of MC : one MC x KC block of op(A) is packed (-> L2)
//         jr over NC in steps of NR : one KC x NR micro-panel of B (-> L1)
//           ir over MC in steps of MR : micro-kernel, MR x NR tile of C in registers
// Variants differ only in the micro-kernel and the block sizes, which each
// variant file keeps in one BlisConfig next to its micro-kernel.
// Test: build/tests/test_kernels; bench: build/bench/bench_gemm.
#pragma once

#include <cstdint>

namespace crfseg::kernels::cpu {

// One micro-kernel call computes, for a full MR x NR tile,
//   C[i, j] = sum_k a[k * MR + i] * b[k * NR + j] + beta * C[i, j]
// where a is an MR-row micro-panel of packed A (alpha already folded in) and
// b an NR-column micro-panel of packed B, both kc deep. beta == 0 must
// overwrite C without reading it (old C may hold NaN), as in BLAS.
using SgemmMicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float beta, float* C,
                                    int64_t ldc);

// Block sizes and the micro-kernel of one variant. mc must be a multiple of
// mr and nc a multiple of nr; mr * nr must not exceed kMaxMicroTile.
struct BlisConfig {
  int64_t mr, nr;  // micro-tile held in registers
  int64_t mc;      // rows of the packed A block (sized for L2)
  int64_t kc;      // depth of both packed blocks (sized so a B micro-panel fits L1)
  int64_t nc;      // columns of the packed B block (sized for L3)
  SgemmMicroKernelFn ukernel;
};

// Largest MR * NR the edge-tile scratch buffer supports (16 x 32 floats).
inline constexpr int64_t kMaxMicroTile = 512;

// Runs the five loops with cfg's micro-kernel. Same contract as SgemmFn:
// any M, N, K >= 0, any transposes, leading dims >= row length.
// Parallel (OpenMP) over ic blocks when the problem is big enough.
void blis_sgemm(const BlisConfig& cfg, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace crfseg::kernels::cpu
