// CUDA runtime wrappers for the tensor layer (see cuda_memory.h).
//
// Compiled with CRFSEG_WITH_CUDA when the toolkit is found; otherwise every
// entry point throws a DeviceError that says crfseg was built without CUDA.
#include "tensor/cuda_memory.h"

#include <string>

#include "tensor/error.h"

#ifdef CRFSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#endif

namespace crfseg::cuda {

#ifdef CRFSEG_WITH_CUDA

bool is_compiled() { return true; }

int device_count() {
  int count = 0;
  // No driver or no device is not an error here: it just means zero devices.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return count;
}

namespace {
void select(int device, const char* op) {
  const int count = device_count();
  CRFSEG_CHECK(device >= 0 && device < count, DeviceError, op, ": expected a CUDA device index in [0, ",
               count, "), got cuda:", device, count == 0 ? " (no CUDA device present)" : "");
  CRFSEG_CUDA_CHECK(cudaSetDevice(device));
}
}  // namespace

void* malloc_bytes(size_t bytes, int device) {
  select(device, "cuda::malloc");
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, bytes == 0 ? 1 : bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    CRFSEG_CHECK(false, OutOfMemoryError, "cuda::malloc: out of memory allocating ", bytes,
                 " bytes on cuda:", device, " (free ", free_b, " of ", total_b,
                 "); reduce batch size or enable gradient accumulation");
  }
  CRFSEG_CUDA_CHECK(err);
  return ptr;
}

void free_bytes(void* ptr, int device) noexcept {
  if (ptr == nullptr) return;
  cudaSetDevice(device);
  cudaFree(ptr);  // errors here cannot be reported from a destructor
}

void copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_to_device");
  CRFSEG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_to_host");
  CRFSEG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_device_to_device");
  CRFSEG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void synchronize(int device) {
  select(device, "cuda::synchronize");
  CRFSEG_CUDA_CHECK(cudaDeviceSynchronize());
}

#else  // built without CUDA

namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw DeviceError(std::string(op) + ": crfseg was built without CUDA (reconfigure with -Dcuda=enabled)");
}
}  // namespace

bool is_compiled() { return false; }
int device_count() { return 0; }
void* malloc_bytes(size_t, int) { no_cuda("cuda::malloc"); }
void free_bytes(void*, int) noexcept {}
void copy_to_device(void*, const void*, size_t, int) { no_cuda("cuda::copy_to_device"); }
void copy_to_host(void*, const void*, size_t, int) { no_cuda("cuda::copy_to_host"); }
void copy_device_to_device(void*, const void*, size_t, int) { no_cuda("cuda::copy_device_to_device"); }
void synchronize(int) { no_cuda("cuda::synchronize"); }

#endif

}  // namespace crfseg::cuda
