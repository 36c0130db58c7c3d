// Storage: a refcounted, device-resident byte buffer shared by tensor views.
//
// CPU memory is 64-byte aligned (one cache line, one AVX-512 register).
// CUDA memory comes from tensor/cuda_memory.h. Every Storage carries a
// version counter that in-place ops bump; autograd records it when it saves a
// tensor and refuses to run a backward that would read modified data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace crfseg {

class Storage {
 public:
  // Allocates `bytes` bytes on `device` (uninitialised). Throws OutOfMemoryError.
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
};

}  // namespace crfseg
