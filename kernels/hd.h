// CRFSEG_HD marks a function compiled for both the host and a CUDA device
// (__host__ __device__ under nvcc, nothing under a plain C++ compiler), so
// one definition of a per-element rule serves the CPU loops and the CUDA
// kernels, and runs in CPU tests.
#pragma once

#ifdef __CUDACC__
#define CRFSEG_HD __host__ __device__
#define CRFSEG_HD_INLINE __host__ __device__ __forceinline__
#else
#define CRFSEG_HD
#define CRFSEG_HD_INLINE inline
#endif

// #pragma unroll in a host-device function: for the device pass only (a
// host compiler warns of the pragma it does not know).
#if defined(__CUDA_ARCH__)
#define CRFSEG_UNROLL _Pragma("unroll")
#else
#define CRFSEG_UNROLL
#endif

#include <cstdint>

namespace crfseg::kernels {

// n / d for n >= 0, d > 0, in 32 bits where both fit: a GPU has no integer
// divider, and its 64-bit division is a subroutine of several times the
// 32-bit one's instructions, which the memory-bound kernels' index math
// (a few loads per element) would otherwise be bound by.
CRFSEG_HD inline int64_t quotient(int64_t n, int64_t d) {
  if (((static_cast<uint64_t>(n) | static_cast<uint64_t>(d)) >> 32) == 0) {
    return static_cast<int64_t>(static_cast<uint32_t>(n) / static_cast<uint32_t>(d));
  }
  return n / d;
}

}  // namespace crfseg::kernels
