// CUDA 2-D upsampling (nearest and bilinear, forward and backward) on
// contiguous [planes, H, W] <-> [planes, P, Q] data. The per-dimension tap
// tables are built on the host by kernels/cpu/upsample.h's upsample_taps (so
// both devices use the same coordinates, computed in the same precision) and
// passed in device memory. The backward gathers over the run of outputs
// that read each input, so it needs no atomics and is deterministic.
// Test: tests/cuda/test_cuda_nn.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

// One dimension's taps in device memory (see kernels/cpu/upsample.h).
struct DeviceTaps {
  const int64_t* i0;  // [out]
  const int64_t* i1;  // [out]
  const double* w0;   // [out]
  const double* w1;   // [out]
  const int64_t* lo;  // [in]
  const int64_t* hi;  // [in]
};

template <typename T>
void upsample2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                        DeviceTaps rows, DeviceTaps cols, bool nearest, Stream stream);
template <typename T>
void upsample2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                         DeviceTaps rows, DeviceTaps cols, bool nearest, Stream stream);

}  // namespace crfseg::kernels::cuda
