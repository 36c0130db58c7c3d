// CRFSEG_CUDA_CHECK(expr): throws crfseg::CudaError with the expression text,
// file:line and cudaGetErrorString when a CUDA runtime call fails.
// Set CRFSEG_CUDA_SYNC=1 to synchronise after every launch (see launch_check),
// so asynchronous errors are reported at the kernel that caused them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/error.h"

#define CRFSEG_CUDA_CHECK(expr)                                                            \
  do {                                                                                     \
    cudaError_t crfseg_err_ = (expr);                                                      \
    if (crfseg_err_ != cudaSuccess) {                                                      \
      throw ::crfseg::CudaError(::crfseg::detail::concat_message(                         \
          #expr, " failed: ", cudaGetErrorString(crfseg_err_), " (",                       \
          ::crfseg::detail::basename_of(__FILE__), ":", __LINE__, ")"));                  \
    }                                                                                      \
  } while (0)

namespace crfseg::kernels::cuda {
// Checks the last launch; synchronises first when CRFSEG_CUDA_SYNC=1.
void launch_check(const char* kernel_name);
// Stream-ordered scratch for one call of a kernel (the GEMMs' BF16 operand
// copies and wgmma packing), from the driver's pool (cudaMallocAsync; free
// it with cudaFreeAsync on the same stream). When the device is full it
// first has crfseg's caching allocator hand back its cached, unused
// segments (the hook that tensor/cuda_memory.cpp registers: this layer
// cannot call it), retries once, then throws OutOfMemoryError naming `what`
// and the byte count, as the allocator itself would.
void* scratch_malloc(size_t bytes, cudaStream_t stream, const char* what);
void set_release_cached_memory(void (*release)(int device));
// Blocks for a grid-stride loop over n items at `threads` per block: enough
// to fill the device, capped so huge n loops instead of overflowing the grid.
int grid_for(int64_t n, int threads);
}  // namespace crfseg::kernels::cuda
