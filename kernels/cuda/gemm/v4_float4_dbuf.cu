// v4_float4_dbuf: v2's 128x128 block tile with the three things v2 lacks.
// Changed from v2 (0.49x cuBLAS SGEMM at 4096^3 on an H200):
//  1. 16-byte shared reads. Thread (tr, tc) owns rows tr*4 + {0..3} and
//     64 + tr*4 + {0..3}, and the same two groups of 4 columns, so each k
//     step reads its 8 A values and 8 B values as 4 float4s instead of 16
//     scalars. A warp's B read is 16 consecutive float4s (no bank conflicts);
//     its A read is 2 addresses, broadcast.
//  2. Double buffering: slice k + 1 is loaded from global memory into
//     registers while slice k is multiplied out of shared memory, then
//     stored to the other shared buffer; one barrier per slice.
//  3. 16-byte global loads when a slice lies wholly inside the matrix and the
//     operand's rows are 16-byte aligned (ld % 4 == 0, aligned base);
//     guarded scalar loads otherwise, so any M, N, K, ld and transposes work.
//     The choice is per slice and uniform over the block.
// BK = 16 halves the barriers per FLOP against v2's 8.
//
// v8_float4_256x128: the same kernel on 256 x 128 tiles, 8 deep (the shape
// of the cuBLAS kernel that the session-42 H100 profile shows for the
// U-Net's largest SGEMMs, cutlass_80_simt_sgemm_256x128_8x4): each thread
// owns 16 x 8 accumulators, so a k step reads 6 float4s from shared memory
// for 128 FMAs, against v4's 4 for 64. v4 reached 0.84x cuBLAS at 4096^3
// on an H100; v8 is written without a GPU (session 43) to test whether the
// larger tile closes the rest.
//
// Both operands land in shared memory as Xs[k][r] (r: the row of C for A,
// the column for B). An operand stored with k contiguous (A not transposed,
// B transposed) is transposed on the way in; one stored with r contiguous is
// copied as float4s. Rows padded to 132 floats keep float4 alignment and
// make the transposing stores 2-way rather than 4-way bank conflicts.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled.cuh"

namespace crfseg::kernels::cuda {

namespace {

template <int kTileM, int BK>
void sgemm_float4_dbuf(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                       Stream stream) {
  tiled::launch_stored<kTileM, BK>(
      name, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
      [&](auto la, auto lb, const tiled::StoreC& out, dim3 grid, int64_t chunk) {
        tiled::gemm_tile_kernel<decltype(la), decltype(lb), tiled::StoreC, kTileM, BK>
            <<<grid, tiled::kThreads, 0, stream>>>(la, lb, out, K, chunk);
      });
}

}  // namespace

void sgemm_v4_float4_dbuf(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                          Stream stream) {
  sgemm_float4_dbuf<128, 16>("sgemm_v4_float4_dbuf", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void sgemm_v8_float4_256x128(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                             Stream stream) {
  sgemm_float4_dbuf<256, 8>("sgemm_v8_float4_256x128", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

}  // namespace crfseg::kernels::cuda
