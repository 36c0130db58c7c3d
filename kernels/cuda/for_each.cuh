// for_each(n, f, stream, name): calls the device functor f(i) for every i in
// [0, n) in a grid-stride loop of 256-thread blocks, then checks the launch.
// The building block of the memory-bound CUDA kernels (elementwise, pooling,
// upsampling, im2col, optimizer steps).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) f(i);
}

template <typename F>
void for_each(int64_t n, F f, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  for_each_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, f);
  launch_check(name);
}

// Strided maps over a Geometry (geometry.h): out = f(inputs...), operand 0
// the output and operands 1.. the inputs, as kernels/cpu/elementwise.h.
template <typename TO, typename TA, typename F>
void map1(const Geometry& g, TO* out, const TA* a, F f, cudaStream_t stream, const char* name) {
  for_each(g.numel, [=] __device__(int64_t i) { out[g.offset(0, i)] = f(a[g.offset(1, i)]); }, stream, name);
}
template <typename TO, typename TA, typename TB, typename F>
void map2(const Geometry& g, TO* out, const TA* a, const TB* b, F f, cudaStream_t stream, const char* name) {
  for_each(g.numel, [=] __device__(int64_t i) { out[g.offset(0, i)] = f(a[g.offset(1, i)], b[g.offset(2, i)]); },
           stream, name);
}
template <typename TO, typename TA, typename TB, typename TC, typename F>
void map3(const Geometry& g, TO* out, const TA* a, const TB* b, const TC* c, F f, cudaStream_t stream,
          const char* name) {
  for_each(g.numel, [=] __device__(int64_t i) {
    out[g.offset(0, i)] = f(a[g.offset(1, i)], b[g.offset(2, i)], c[g.offset(3, i)]);
  }, stream, name);
}

}  // namespace crfseg::kernels::cuda
