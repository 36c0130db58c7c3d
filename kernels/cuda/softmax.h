// CUDA softmax, log-softmax and the fused cross-entropy's pointwise parts,
// on contiguous tensors viewed as [outer, C, inner] (softmax over C): the GPU
// side of tensor/ops_softmax.cpp, with the math of kernels/cpu/softmax.h and
// kernels/cpu/cross_entropy.h. One thread per (outer, inner) column walks
// the C values; for NCHW logits (softmax over channels, inner = H*W) the
// threads of a warp read consecutive addresses.
// Test: tests/cuda/test_cuda_nn.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner, bool log, Stream stream);
template <typename T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t outer, int64_t C, int64_t inner, bool log,
                      Stream stream);

// Per position p of the [outer, inner] target: terms[p] = w[t] * -log_probs[t]
// (0 when ignored), terms[P + p] = w[t] (0 when ignored), terms[2P + p] = 1
// when t is neither ignore_index nor in [0, C), else 0. P = outer * inner;
// terms is f64 [3, P]. weight may be null.
template <typename T>
void cross_entropy_terms(const T* log_probs, const int64_t* target, const T* weight, int64_t outer, int64_t C,
                         int64_t inner, int64_t ignore_index, double* terms, Stream stream);
// One thread: from sums = the terms' three sums (loss, weight, bad),
// *loss = sums[0] / sums[1] (NaN when the weight sum is 0 or a target is
// bad) and *bad = sums[2]. Nothing is read back by the host.
template <typename T>
void cross_entropy_finish(const double* sums, T* loss, int64_t* bad, Stream stream);
// dx = scale * w[t] * (exp(log_probs) - [c == t]), 0 at ignored positions
// and NaN at targets outside [0, C), with scale = grad[0] / weight_sum[0]
// read on the device (one element each).
template <typename T>
void cross_entropy_backward(const T* grad, const double* weight_sum, const T* log_probs, const int64_t* target,
                            const T* weight, T* dx, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index,
                            Stream stream);

}  // namespace crfseg::kernels::cuda
