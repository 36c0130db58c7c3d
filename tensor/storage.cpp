// Storage allocation: host memory from the CPU allocator, or device memory via CUDA.
#include "tensor/storage.h"

#include "tensor/cpu_allocator.h"
#include "tensor/cuda_memory.h"
#include "tensor/error.h"

namespace crfseg {

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    data_ = cpu_allocate(bytes);  // 64-byte aligned, large blocks cached (tensor/cpu_allocator.h)
  } else {
    data_ = cuda::malloc_bytes(bytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    cpu_free(data_, bytes_);
  } else {
    cuda::free_bytes(data_, device_.index);
  }
}

}  // namespace crfseg
