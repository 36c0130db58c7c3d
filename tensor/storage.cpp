// Storage allocation: 64-byte aligned host memory, or device memory via CUDA.
#include "tensor/storage.h"

#include <cstdlib>

#include "tensor/cuda_memory.h"
#include "tensor/error.h"

namespace crfseg {

namespace {
constexpr size_t kCpuAlignment = 64;
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    // aligned_alloc needs a size that is a multiple of the alignment.
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    if (rounded == 0) rounded = kCpuAlignment;
    data_ = std::aligned_alloc(kCpuAlignment, rounded);
    CRFSEG_CHECK(data_ != nullptr, OutOfMemoryError, "Storage: failed to allocate ", bytes,
                 " bytes on cpu; reduce the batch size");
  } else {
    data_ = cuda::malloc_bytes(bytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    std::free(data_);
  } else {
    cuda::free_bytes(data_, device_.index);
  }
}

}  // namespace crfseg
