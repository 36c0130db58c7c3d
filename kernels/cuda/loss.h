// CUDA binary cross-entropy with logits and one_hot (the GPU side of
// tensor/ops_loss.cpp; BCE's per-element rules in kernels/bce.h). Contiguous
// operands of n elements, device pointers, asynchronous on `stream`.
// Test: tests/cuda/test_cuda_nn.cpp (against the CPU op; needs a device).
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

// terms[i] = bce_term(x[i], t[i], p); the op averages them (a device sum).
template <typename T>
void bce_terms(int64_t n, const T* x, const T* t, T p, T* terms, Stream stream);
// dx[i] = (grad[0] / n) bce_grad(x[i], t[i], p): grad is the loss's device
// scalar, read by each thread (no copy to the host).
template <typename T>
void bce_backward(int64_t n, const T* grad, const T* x, const T* t, T p, T* dx, Stream stream);

// one_hot: out[o, c, i] = [t == c] for t = target[o * inner + i] (0 where t
// is ignore_index or outside [0, C)); *bad (zeroed by the caller) counts
// the targets outside [0, C) that are not ignore_index.
template <typename T>
void one_hot(const int64_t* target, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index, T* out,
             int64_t* bad, Stream stream);

}  // namespace crfseg::kernels::cuda
