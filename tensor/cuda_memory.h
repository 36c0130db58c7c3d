// Thin, checked wrappers over the CUDA runtime used by the tensor layer.
//
// When crfseg is built without CUDA every function throws DeviceError
// ("... built without CUDA"), so callers need no #ifdefs.
#pragma once

#include <cstddef>

namespace crfseg::cuda {

bool is_compiled();           // built with the CUDA toolkit?
int device_count();           // 0 when not compiled or no driver/device
void* malloc_bytes(size_t bytes, int device);
void free_bytes(void* ptr, int device) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes, int device);
void copy_to_host(void* dst, const void* src, size_t bytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device);
void synchronize(int device);

}  // namespace crfseg::cuda
