// CUDA fill kernels: p[i] = value for i in [0, n). Contiguous memory only.
// Test: tests/cuda/test_cuda_tensor.cpp (skips without a device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace crfseg::kernels::cuda {

void fill_f32(float* p, int64_t n, float value, cudaStream_t stream);
void fill_f64(double* p, int64_t n, double value, cudaStream_t stream);
void fill_i32(int32_t* p, int64_t n, int32_t value, cudaStream_t stream);
void fill_i64(int64_t* p, int64_t n, int64_t value, cudaStream_t stream);
void fill_u8(uint8_t* p, int64_t n, uint8_t value, cudaStream_t stream);

}  // namespace crfseg::kernels::cuda
