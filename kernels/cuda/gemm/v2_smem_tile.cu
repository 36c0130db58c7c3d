// v2_smem_tile: shared-memory block tiling with an 8x8 register tile per
// thread. Changed from v1: a 256-thread block computes a 128x128 tile of C;
// each 8-deep slice of A (128x8) and B (8x128) is loaded once into shared
// memory and then read 128 times from there, and each thread keeps 8x8
// accumulators in registers, so a slice costs it 16 shared loads for 64 FMAs.
//
// Thread (tr, tc) of the 16x16 thread grid owns rows tr + 16 i and columns
// tc + 16 j (i, j < 8): strided rather than 8 adjacent, so a warp's shared
// reads of a B row hit 16 consecutive words (no bank conflicts) and its
// stores of C are 16 consecutive floats. A's slice is stored transposed,
// As[k][m], padded to 132 columns so the transposing stores spread over all
// 32 banks. Every global load is guarded: any M, N, K and transposes work
// (out-of-range elements load as 0 and out-of-range C is not written).
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
constexpr int kPad = 4;

// Two blocks per SM: caps registers at 128 (130 without the bound, which
// leaves one block per SM).
__global__ void __launch_bounds__(kThreads, 2)
sgemm_smem_tile_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
                       int64_t lda, const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C,
                       int64_t ldc) {
  __shared__ float As[BK][BM + kPad];
  __shared__ float Bs[BK][BN];
  const int t = threadIdx.x;
  const int tr = t / (BN / TN), tc = t % (BN / TN);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;

  float acc[TM][TN] = {};
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    // Load the slices: 1024 elements each, 4 per thread, index order chosen
    // so that consecutive threads read consecutive addresses in memory.
#pragma unroll
    for (int i = 0; i < (BM * BK) / kThreads; ++i) {
      const int e = t + i * kThreads;
      const int mm = ta ? e % BM : e / BK;  // A^T is stored K x M: m runs fastest
      const int kk = ta ? e / BM : e % BK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < M && k < K) ? (ta ? A[k * lda + m] : A[m * lda + k]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < (BN * BK) / kThreads; ++i) {
      const int e = t + i * kThreads;
      const int nn = tb ? e / BK : e % BN;  // B is stored K x N: n runs fastest
      const int kk = tb ? e % BK : e / BN;
      const int64_t n = n0 + nn, k = k0 + kk;
      Bs[kk][nn] = (n < N && k < K) ? (tb ? B[n * ldb + k] : B[k * ldb + n]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][tr + i * (BM / TM)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tc + j * (BN / TN)];
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();  // before the next slice overwrites As/Bs
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + tr + i * (BM / TM);
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tc + j * (BN / TN);
      if (n >= N) continue;
      float* c = C + m * ldc + n;
      *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
    }
  }
}

}  // namespace

void sgemm_v2_smem_tile(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + BM - 1) / BM;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm v2_smem_tile: M = ", M, " needs more than 65535 block rows");
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>(gy));
  sgemm_smem_tile_kernel<<<grid, kThreads, 0, stream>>>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  launch_check("sgemm_v2_smem_tile");
}

}  // namespace crfseg::kernels::cuda
