// v1_naive: one thread per element of C, the K loop straight from global
// memory. What the rest of the ladder is measured against: every thread
// re-reads a whole row of A and column of B, so it runs at a few percent of
// the FP32 peak. Any shape, any transposes.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

__global__ void sgemm_naive_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t m = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (m >= M || n >= N) return;
  float acc = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float a = ta ? A[k * lda + m] : A[m * lda + k];
    const float b = tb ? B[n * ldb + k] : B[k * ldb + n];
    acc += a * b;
  }
  float* c = C + m * ldc + n;
  *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;  // beta 0: C may hold garbage (NaN)
}

}  // namespace

void sgemm_v1_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  if (M == 0 || N == 0) return;
  const dim3 block(16, 16);
  const int64_t gy = (M + 15) / 16;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm v1_naive: M = ", M, " needs more than 65535 block rows");
  const dim3 grid(static_cast<unsigned>((N + 15) / 16), static_cast<unsigned>(gy));
  sgemm_naive_kernel<<<grid, block, 0, stream>>>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  launch_check("sgemm_v1_naive");
}

}  // namespace crfseg::kernels::cuda
