// Launch helpers shared by every CUDA kernel file (declared in cuda_check.h).
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"

namespace crfseg::kernels::cuda {

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

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  // 65535 blocks of 256 threads is ~16M threads, far more than an H100 holds
  // at once (132 SMs x 2048); beyond that the grid-stride loop takes over.
  return static_cast<int>(blocks < 1 ? 1 : (blocks < 65535 ? blocks : 65535));
}

}  // namespace crfseg::kernels::cuda
