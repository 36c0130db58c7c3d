// CUDA row reductions: the GPU side of tensor/ops_reduce.cpp. The op moves
// the reduced dims last and makes the tensor contiguous, so every reduction
// here is over the `cols` contiguous elements of each of `rows` rows.
// Sums accumulate in double, as the CPU kernels do, in a fixed order (each
// thread a fixed stride of the row, then a fixed tree; a few long rows in
// fixed 16384-element chunks first): deterministic.
// Test: tests/cuda/test_cuda_elementwise.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

// out[r] = scale * sum_c in[r * cols + c]   (T: float or double).
// scratch: sum_rows_scratch(rows, cols) doubles of device memory (null
// when that is 0), for the chunks' partial sums of a few long rows.
int64_t sum_rows_scratch(int64_t rows, int64_t cols);
template <typename T>
void sum_rows(const T* in, int64_t rows, int64_t cols, double scale, T* out, double* scratch, Stream stream);
// out[r] = max_c in[r * cols + c], index[r] = the first c holding it; NaN wins (cols >= 1)
template <typename T>
void max_rows(const T* in, int64_t rows, int64_t cols, T* out, int64_t* index, Stream stream);
// out[r * cols + index[r]] = grad[r]; the rest of out is left as it is (zeroed by the caller)
template <typename T>
void scatter_rows(const T* grad, const int64_t* index, int64_t rows, int64_t cols, T* out, Stream stream);

}  // namespace crfseg::kernels::cuda
