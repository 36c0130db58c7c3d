// SGEMM v0: naive. The textbook i-j-k triple loop with a float accumulator.
// What it shows: the inner loop walks B down a column (stride ldb), so every
// access to B misses cache for large N. Expect ~1-2 GFLOP/s.
#include "kernels/cpu/gemm/gemm.h"

namespace crfseg::kernels::cpu {

void sgemm_v0_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        acc += (trans_a ? A[k * lda + i] : A[i * lda + k]) * (trans_b ? B[j * ldb + k] : B[k * ldb + j]);
      }
      float& c = C[i * ldc + j];
      c = alpha * acc + (beta == 0.0f ? 0.0f : beta * c);
    }
  }
}

}  // namespace crfseg::kernels::cpu
