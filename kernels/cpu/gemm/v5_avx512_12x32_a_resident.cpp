// SGEMM v5: v4's AVX-512F 12 x 32 micro-kernel (prefetching B), the
// macro-kernel's loops swapped, and block sizes for Intel cores.
// Changed from v4: v4 (BLIS's order, jr outside ir) keeps a KC x 32 micro-
// panel of B near while the A block streams past it; at v4's KC = 512 (its
// size then; 1024 since session 30) that panel was 64 KiB, larger than any
// L1d, so every micro-kernel call streamed both operands from L2. On an Intel Xeon (48 KiB L1d, 2 MiB L2 per core)
// the order ir outside jr wins instead: one 12 x KC micro-panel of A (15
// KiB at KC = 320) stays in L1 for a whole row of C tiles, and B streams
// from a KC x NC block sized for L2 (320 x 1024 floats: 1.25 MiB). v4's
// sizes stay the production choice on AMD Zen, where they were measured (its
// L2 is 1 MiB, too small for this B block); this variant is picked on
// Intel CPUs (SgemmVariant::preferred) and tested and benchmarked on every
// AVX-512 CPU.
// Since B now streams from L2 for every tile, the micro-kernel also
// prefetches B 24 k-steps ahead (sgemm_v4_prefetch_b_config; distances 8,
// 16 and 24 measured, 24 best; v4's order gained nothing from it on Zen 4,
// but does on Zen 5 at KC = 1024, and v4 now prefetches too).
// Measured (session 22, Intel Xeon VM, 2 threads, OpenBLAS 0.3.21 in the same
// run with OPENBLAS_CORETYPE/L2_SIZE unset, bench_gemm --repeats 7, three
// runs), v4 -> v5 against OpenBLAS: 4096^3 0.84/0.85/0.83x -> 0.94/0.95/0.93x,
// 2048^3 0.90/0.85/0.88x -> 1.00/0.96/0.99x, 64 x 65536 x 576 0.92-0.95x ->
// 0.96-1.01x, 64 x 65536 x 27 1.5-1.9x -> 1.5-2.1x.
// Sweep without the prefetch (4096^3, ms, OpenBLAS 412-437 in the same runs): NC/KC/MC
// 512/512/144 485, 768/512/576 492, 1024/384/576 475-488, 1024/320/576
// 459-463, 1024/256/576 467, 768/320/576 465, 1024/320/1152 463,
// 768/256/1152 468, 1024/288/576 480, 1280/320/576 501, 1536/384/576 499,
// 2048/384/576 547; v4 506-513.
#include "kernels/cpu/gemm/gemm.h"

namespace crfseg::kernels::cpu {

const BlisConfig& sgemm_v5_config() {
  static const BlisConfig config = [] {
    BlisConfig c = sgemm_v4_prefetch_b_config();  // its micro-kernels (v2's off x86, where v5 is never offered)
    c.mc = 576;
    c.kc = 320;
    c.nc = 1024;
    c.a_resident = true;
    return c;
  }();
  return config;
}

void sgemm_v5_avx512_12x32_a_resident(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                      int64_t ldc) {
  blis_sgemm(sgemm_v5_config(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace crfseg::kernels::cpu
