// CUDA exact Gaussian filter (the CRF's dense mode, crf/dense_filter.h):
// out_i = sum_j exp(-|f_i - f_j|^2 / 2) in_j over the `block` points of i's
// block (N / block blocks of consecutive rows, each its own filter: a
// batch's images stacked block-diagonally; block = N for one), one thread
// per row and chunk of channels running the CPU's row rule
// (kernels/dense_gaussian.h), so the sums run in the CPU's order, in
// double. features [N x d] double, in / out [N x C]; device pointers,
// asynchronous on `stream`.
// Status: compiled for sm_90a; NOT yet run on a GPU when written (no device
// was lent). Test: build/tests/test_cuda -tc='*dense*'.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace crfseg::kernels::cuda {

// N must be a multiple of block.
void dense_gaussian_filter(const double* features, int64_t N, int64_t block, int64_t d, const float* in, float* out,
                           int64_t C, cudaStream_t stream);
void dense_gaussian_filter(const double* features, int64_t N, int64_t block, int64_t d, const double* in,
                           double* out, int64_t C, cudaStream_t stream);

}  // namespace crfseg::kernels::cuda
