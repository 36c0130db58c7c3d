// Launch helpers shared by every CUDA kernel file (declared in cuda_check.h).
#include <atomic>
#include <cstdint>
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

namespace {
std::atomic<void (*)(int)> g_release_cached{nullptr};
}  // namespace

void set_release_cached_memory(void (*release)(int device)) { g_release_cached.store(release); }

namespace {
// The driver's pool gives its free memory back to the system at every
// synchronisation unless told to keep it (a release threshold of 0, the
// default): a scratch asked for after each step's read of the device would
// then be mapped anew each step. Kept here instead; the caching allocator
// trims the pool when it runs out (tensor/cuda_memory.cpp).
void keep_pool_memory(int device) {
  static std::atomic<uint64_t> done{0};  // one bit per device below 64
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit == 0 || (done.load() & bit) != 0) return;
  cudaMemPool_t pool = nullptr;
  CRFSEG_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep = UINT64_MAX;
  CRFSEG_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  done.fetch_or(bit);
}
}  // namespace

void* scratch_malloc(size_t bytes, cudaStream_t stream, const char* what) {
  int current = 0;
  CRFSEG_CUDA_CHECK(cudaGetDevice(&current));
  keep_pool_memory(current);
  for (int attempt = 0;; ++attempt) {
    void* ptr = nullptr;
    const cudaError_t err = cudaMallocAsync(&ptr, bytes, stream);
    if (err != cudaErrorMemoryAllocation) {
      CRFSEG_CUDA_CHECK(err);
      return ptr;
    }
    cudaGetLastError();  // clear it: retried, or reported below as OutOfMemoryError
    int device = 0;
    CRFSEG_CUDA_CHECK(cudaGetDevice(&device));
    void (*release)(int) = g_release_cached.load();
    if (attempt == 0 && release != nullptr) {
      release(device);
      continue;
    }
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    throw OutOfMemoryError(detail::concat_message(what, ": out of memory allocating ", bytes,
                                                  " bytes of scratch on cuda:", device, " (free ", free_b, " of ",
                                                  total_b, "); reduce batch size or image size"));
  }
}

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  // 65535 blocks of 256 threads is ~16M threads, far more than an H100 holds
  // at once (132 SMs x 2048); beyond that the grid-stride loop takes over.
  return static_cast<int>(blocks < 1 ? 1 : (blocks < 65535 ? blocks : 65535));
}

}  // namespace crfseg::kernels::cuda
