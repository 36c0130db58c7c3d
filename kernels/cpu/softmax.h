// Softmax and log-softmax over one dim, forward and backward, on contiguous
// data viewed as [outer, C, inner]: the dim has size C, `inner` is the
// product of the dims after it (H*W for NCHW logits with softmax over C).
//
// Every column (o, i) is independent. For inner > 1 the loops run over c
// outside and i inside, so each pass streams contiguous memory and
// vectorises; columns are split over OpenMP threads by (outer, inner block).
// Stability: the column max is subtracted before exp, so exp never overflows.
//   softmax:      y_c = exp(x_c - m) / sum_k exp(x_k - m)
//   log_softmax:  y_c = x_c - m - log(sum_k exp(x_k - m))
//   softmax backward:      dx_c = y_c (g_c - sum_k g_k y_k)
//   log_softmax backward:  dx_c = g_c - exp(y_c) sum_k g_k
// Test: tests/tensor/test_softmax.cpp (reference loops) and gradcheck.
#pragma once

#include <cstdint>

namespace crfseg::kernels::cpu {

template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner, bool log);

template <typename T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t outer, int64_t C, int64_t inner, bool log);

}  // namespace crfseg::kernels::cpu
