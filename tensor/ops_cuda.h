// What the raw ops need to call a CUDA kernel (internal to tensor/ops_*.cpp):
// the stream to launch on, and a tensor's view as a kernel Geometry.
//
// Dispatch is explicit in each op:
//
//   if (x.device().is_cuda()) { ...kcu::unary<T>(kind, geometry<2>(...), ..., stream_of(x)); }
//
// and the whole branch sits inside #ifdef CRFSEG_WITH_CUDA: a build without
// CUDA cannot make a CUDA tensor (allocation throws), so the CPU path's
// check_cpu is what such a build reaches.
#pragma once

#ifdef CRFSEG_WITH_CUDA

#include <array>

#include "kernels/cuda/geometry.h"
#include "tensor/cuda_memory.h"
#include "tensor/tensor.h"

namespace crfseg::ops::detail {

namespace kcu = kernels::cuda;

// Makes t's device current and returns the stream to launch on.
inline kcu::Stream stream_of(const Tensor& t) { return cuda::launch_stream(t.device().index); }

// The Geometry of `shape` with the given operand strides (output first).
template <int N>
kcu::Geometry geometry(const char* op, const Shape& shape, std::array<const int64_t*, N> strides) {
  return kcu::make_geometry<N>(op, shape, strides);
}

}  // namespace crfseg::ops::detail

#endif
