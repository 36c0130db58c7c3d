// Reference GEMM: the obviously-correct oracle every tuned variant is tested
// against. Row-major, C = alpha * op(A) * op(B) + beta * C, with
// op(A) of shape M x K (A is K x M with leading dim lda when trans_a) and
// op(B) of shape K x N. Accumulates in double. beta == 0 overwrites C
// (its old contents, even NaN, are ignored), as in BLAS.
#pragma once

#include <cstdint>

namespace crfseg::kernels::ref {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace crfseg::kernels::ref
