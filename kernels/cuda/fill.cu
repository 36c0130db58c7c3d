// CUDA fill: one thread per element in a grid-stride loop, so any n works
// with a bounded grid. Memory-bound: 4 bytes written per f32 element.
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fill.h"

namespace crfseg::kernels::cuda {

namespace {

template <typename T>
__global__ void fill_kernel(T* p, int64_t n, T value) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    p[i] = value;
  }
}

template <typename T>
void launch_fill(T* p, int64_t n, T value, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const int grid = static_cast<int>(blocks < 65535 ? blocks : 65535);
  fill_kernel<T><<<grid, kThreads, 0, stream>>>(p, n, value);
  launch_check("fill_kernel");
}

}  // namespace

void launch_check(const char* kernel_name) {
  CRFSEG_CUDA_CHECK(cudaGetLastError());
  static const bool sync = [] {
    const char* env = std::getenv("CRFSEG_CUDA_SYNC");
    return env != nullptr && std::strcmp(env, "1") == 0;
  }();
  if (sync) {
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
      throw CudaError(detail::concat_message(kernel_name, ": asynchronous error: ", cudaGetErrorString(err)));
    }
  }
}

void fill_f32(float* p, int64_t n, float value, cudaStream_t s) { launch_fill(p, n, value, s); }
void fill_f64(double* p, int64_t n, double value, cudaStream_t s) { launch_fill(p, n, value, s); }
void fill_i32(int32_t* p, int64_t n, int32_t value, cudaStream_t s) { launch_fill(p, n, value, s); }
void fill_i64(int64_t* p, int64_t n, int64_t value, cudaStream_t s) { launch_fill(p, n, value, s); }
void fill_u8(uint8_t* p, int64_t n, uint8_t value, cudaStream_t s) { launch_fill(p, n, value, s); }

}  // namespace crfseg::kernels::cuda
