// SGEMM v1: loop order. Changed from v0: the loops run i-k-j, so the inner
// loop is C[i, :] += a_ik * B[k, :], a unit-stride AXPY that GCC vectorises;
// rows of C are split over OpenMP threads (deterministic: each row of C is
// owned by one thread). Transposed operands are first copied to row-major
// (O(MK + KN) extra memory) so one inner loop serves all four cases.
// Constraints: none. Still memory-bound: B is streamed from memory M times.
#include <vector>

#include "kernels/cpu/gemm/gemm.h"

namespace crfseg::kernels::cpu {

namespace {

template <typename T>
void gemm_ikj(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  // Materialise op(A) (M x K) and op(B) (K x N) row-major when transposed.
  std::vector<T> a_copy, b_copy;
  if (trans_a) {
    a_copy.resize(static_cast<size_t>(M * K));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < M; ++i) a_copy[i * K + k] = A[k * lda + i];
    A = a_copy.data();
    lda = K;
  }
  if (trans_b) {
    b_copy.resize(static_cast<size_t>(K * N));
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) b_copy[k * N + j] = B[j * ldb + k];
    B = b_copy.data();
    ldb = N;
  }
#pragma omp parallel for schedule(static) if (M * N * K > (1 << 16))
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0)) {
      for (int64_t j = 0; j < N; ++j) c[j] = T(0);
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
    for (int64_t k = 0; k < K; ++k) {
      const T a = alpha * A[i * lda + k];
      const T* b = B + k * ldb;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

}  // namespace

void sgemm_v1_loop_order(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                         int64_t ldc) {
  gemm_ikj<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_ikj<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace crfseg::kernels::cpu
