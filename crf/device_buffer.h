// DeviceBuffer: one block of device memory on one device, freed on
// destruction (RAII), for the CRF's CUDA filters' tables. Goes through
// tensor/cuda_memory.h, which selects the device, checks every call, and
// throws DeviceError when crfseg is built without CUDA.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "tensor/cuda_memory.h"

namespace crfseg::crf {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, int device)
      : ptr_(cuda::malloc_bytes(bytes, device)), bytes_(bytes), device_(device) {}
  // For use on `stream` (not the current one): freed to its pool, reused
  // only by work queued on it after the work that used this buffer.
  DeviceBuffer(size_t bytes, int device, cuda::StreamHandle stream)
      : ptr_(cuda::malloc_bytes(bytes, device, stream)), bytes_(bytes), device_(device) {}
  ~DeviceBuffer() { cuda::free_bytes(ptr_, device_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), device_(other.device_) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      cuda::free_bytes(ptr_, device_);
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      device_ = other.device_;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // A buffer holding a copy of `host` (synchronous upload).
  template <typename T, typename Alloc>
  static DeviceBuffer upload(const std::vector<T, Alloc>& host, int device) {
    const size_t bytes = host.size() * sizeof(T);
    DeviceBuffer buffer(bytes, device);
    if (bytes > 0) cuda::copy_to_device(buffer.ptr_, host.data(), bytes, device);
    return buffer;
  }
  // The same from `stream`'s pool, the copy queued on `stream` (from
  // pageable memory it returns once the driver has staged the data, so
  // `host` may go; the copy itself completes in stream order).
  template <typename T, typename Alloc>
  static DeviceBuffer upload(const std::vector<T, Alloc>& host, int device, cuda::StreamHandle stream) {
    const size_t bytes = host.size() * sizeof(T);
    DeviceBuffer buffer(bytes, device, stream);
    if (bytes > 0) cuda::copy_to_device_async(buffer.ptr_, host.data(), bytes, device, stream);
    return buffer;
  }
  // Used by work on `stream` too (Tensor::record_stream's rule).
  void record_stream(cuda::StreamHandle stream) const {
    if (ptr_ != nullptr) cuda::record_stream(ptr_, device_, stream);
  }

  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

}  // namespace crfseg::crf
