// CUDA 2-D pooling (max, average, adaptive average; forward and backward) on
// contiguous [planes, H, W] data with kernels/ref/pool2d.h's geometry and
// semantics. One thread per output element forward; the backwards gather
// (one thread per input element sums the outputs whose window holds it),
// except the max backward given indices alone, which scatters by index one
// plane per thread. No atomics; deterministic results. Test: tests/cuda/test_cuda_nn.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"
#include "kernels/ref/pool2d.h"

namespace crfseg::kernels::cuda {

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g, Stream stream);
// Writes to *first_bad (device memory, initialised by the caller to
// UINT64_MAX) the smallest output position whose index is neither -1 nor
// inside its plane; dx is then unspecified.
template <typename T>
void max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g,
                         unsigned long long* first_bad, Stream stream);
// The same for indices the forward wrote with geometry g: *first_bad gets
// the smallest output position whose index is neither -1 nor inside that
// output's window (in_max_window), and dx is gathered (max_pool_gather).
// first_bad == nullptr skips that check (indices known to be the forward's).
template <typename T>
void max_pool2d_backward_gather(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g,
                                unsigned long long* first_bad, Stream stream);
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad, Stream stream);
template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad, Stream stream);
template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 Stream stream);
template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                  Stream stream);

}  // namespace crfseg::kernels::cuda
