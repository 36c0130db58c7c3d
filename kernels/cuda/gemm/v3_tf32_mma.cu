// v3_tf32_mma: tensor cores through mma.sync (m16n8k8, TF32 inputs, FP32
// accumulation). Changed from v2: the inner product runs on the tensor
// cores instead of FFMAs. Inputs are rounded to TF32 (10-bit mantissa,
// cvt.rna) as they enter shared memory, so results carry TF32's error
// (relative ~1e-3 per product): compare it with cuBLAS in TF32 mode, not
// FP32. Available on sm_80 and later (Ampere, Hopper).
//
// Tiling: a 256-thread block computes a 128x128 tile of C in 16-deep K
// slices staged through shared memory (guarded loads: any shape works).
// Its 8 warps form a 2 x 4 grid; each warp owns a 64 x 32 sub-tile = 4 x 4
// mma tiles of 16 x 8, i.e. 64 FP32 accumulators per thread, and issues 16
// mma.sync per 8-deep step.
//
// Fragment ownership: mma_tf32.cuh (the rounding, the mma and the store
// of the accumulators live there, shared with v5). Shared tiles are K-major (As[k][m], Bs[k][n]) and padded by 8 words, so
// a warp's fragment reads (k = t.., m = g..) fall in 32 distinct banks.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/mma_tf32.cuh"

namespace crfseg::kernels::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 16;
constexpr int kThreads = 256;
constexpr int WM = 64, WN = 32;  // warp tile
constexpr int kPad = 8;

// ptxas: 242 registers, no spills, 17 KB shared: one block (8 warps) per
// SM. Capping at 128 registers for two blocks spills ~0.5 KB per thread;
// fewer registers (smaller warp tiles, 32-bit indexing) are the next step.
__global__ void __launch_bounds__(kThreads)
sgemm_tf32_mma_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
                      int64_t lda, const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C,
                      int64_t ldc) {
  __shared__ uint32_t As[BK][BM + kPad];
  __shared__ uint32_t Bs[BK][BN + kPad];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = (warp / 4) * WM, wn = (warp % 4) * WN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;

  float acc[WM / 16][WN / 8][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int i = 0; i < (BM * BK) / kThreads; ++i) {
      const int e = tid + i * kThreads;
      const int mm = ta ? e % BM : e / BK;  // consecutive threads read consecutive addresses
      const int kk = ta ? e / BM : e % BK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = to_tf32((m < M && k < K) ? (ta ? A[k * lda + m] : A[m * lda + k]) : 0.0f);
    }
#pragma unroll
    for (int i = 0; i < (BN * BK) / kThreads; ++i) {
      const int e = tid + i * kThreads;
      const int nn = tb ? e / BK : e % BN;
      const int kk = tb ? e % BK : e / BN;
      const int64_t n = n0 + nn, k = k0 + kk;
      Bs[kk][nn] = to_tf32((n < N && k < K) ? (tb ? B[n * ldb + k] : B[k * ldb + n]) : 0.0f);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      uint32_t a[WM / 16][4], b[WN / 8][2];
#pragma unroll
      for (int i = 0; i < WM / 16; ++i) {
        const int r = wm + i * 16 + g;
        a[i][0] = As[kk + t][r];
        a[i][1] = As[kk + t][r + 8];
        a[i][2] = As[kk + t + 4][r];
        a[i][3] = As[kk + t + 4][r + 8];
      }
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) {
        const int c = wn + j * 8 + g;
        b[j][0] = Bs[kk + t][c];
        b[j][1] = Bs[kk + t + 4][c];
      }
#pragma unroll
      for (int i = 0; i < WM / 16; ++i) {
#pragma unroll
        for (int j = 0; j < WN / 8; ++j) mma_tf32(acc[i][j], a[i], b[j]);
      }
    }
    __syncthreads();
  }
  store_mma_tiles(acc, m0 + wm, n0 + wn, g, t, M, N, alpha, beta, C, ldc);
}

}  // namespace

void sgemm_v3_tf32_mma(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + BM - 1) / BM;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm v3_tf32_mma: M = ", M, " needs more than 65535 block rows");
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>(gy));
  sgemm_tf32_mma_kernel<<<grid, kThreads, 0, stream>>>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  launch_check("sgemm_v3_tf32_mma");
}

}  // namespace crfseg::kernels::cuda
