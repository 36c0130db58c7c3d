// for_each(n, f, stream, name): calls the device functor f(i) for every i in
// [0, n) in a grid-stride loop of 256-thread blocks, then checks the launch.
// The building block of the memory-bound CUDA kernels (elementwise, pooling,
// upsampling, im2col, optimizer steps).
#pragma once

#include <cstddef>
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

// ---- four elements at a time ----
// A thread that loads one 4-byte value per operand keeps too few bytes in
// flight for HBM (an H100 needs ~15 KiB per SM, 2048 threads give 8), so
// the strided maps below take four consecutive elements per thread where
// the geometry allows: vector loads and stores (nvcc emits ld.v4.f32 for
// a 16-byte aligned Quad<float>, two ld.v2.f64 for Quad<double>), and the
// operand offsets found once per four elements.
// (quad_shape, quad_operand and inner_step, the host's checks, are in
// geometry.h, where the CPU tests reach them.)
template <typename T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

template <typename T>
__device__ __forceinline__ Quad<T> load_quad(const T* p, int64_t step) {
  if (step != 0) return *reinterpret_cast<const Quad<T>*>(p);
  Quad<T> q;
  const T v = *p;
#pragma unroll
  for (int j = 0; j < 4; ++j) q.v[j] = v;
  return q;
}

// Strided maps over a Geometry (geometry.h): out = f(inputs...), operand 0
// the output and operands 1.. the inputs, as kernels/cpu/elementwise.h.
// Each thread reads its elements before it writes them, so out may be an
// input (in place).
template <typename TO, typename TA, typename F>
void map1(const Geometry& g, TO* out, const TA* a, F f, cudaStream_t stream, const char* name) {
  if (quad_shape(g) && quad_operand(g, 0, out, sizeof(TO)) && quad_operand(g, 1, a, sizeof(TA))) {
    const int64_t sa = inner_step(g, 1);
    for_each(g.numel / 4, [=] __device__(int64_t q) {
      const Quad<TA> x = load_quad(a + g.offset(1, 4 * q), sa);
      Quad<TO> r;
#pragma unroll
      for (int j = 0; j < 4; ++j) r.v[j] = f(x.v[j]);
      *reinterpret_cast<Quad<TO>*>(out + g.offset(0, 4 * q)) = r;
    }, stream, name);
    return;
  }
  for_each(g.numel, [=] __device__(int64_t i) { out[g.offset(0, i)] = f(a[g.offset(1, i)]); }, stream, name);
}
template <typename TO, typename TA, typename TB, typename F>
void map2(const Geometry& g, TO* out, const TA* a, const TB* b, F f, cudaStream_t stream, const char* name) {
  if (quad_shape(g) && quad_operand(g, 0, out, sizeof(TO)) && quad_operand(g, 1, a, sizeof(TA)) &&
      quad_operand(g, 2, b, sizeof(TB))) {
    const int64_t sa = inner_step(g, 1), sb = inner_step(g, 2);
    for_each(g.numel / 4, [=] __device__(int64_t q) {
      const Quad<TA> x = load_quad(a + g.offset(1, 4 * q), sa);
      const Quad<TB> y = load_quad(b + g.offset(2, 4 * q), sb);
      Quad<TO> r;
#pragma unroll
      for (int j = 0; j < 4; ++j) r.v[j] = f(x.v[j], y.v[j]);
      *reinterpret_cast<Quad<TO>*>(out + g.offset(0, 4 * q)) = r;
    }, stream, name);
    return;
  }
  for_each(g.numel, [=] __device__(int64_t i) { out[g.offset(0, i)] = f(a[g.offset(1, i)], b[g.offset(2, i)]); },
           stream, name);
}
template <typename TO, typename TA, typename TB, typename TC, typename F>
void map3(const Geometry& g, TO* out, const TA* a, const TB* b, const TC* c, F f, cudaStream_t stream,
          const char* name) {
  if (quad_shape(g) && quad_operand(g, 0, out, sizeof(TO)) && quad_operand(g, 1, a, sizeof(TA)) &&
      quad_operand(g, 2, b, sizeof(TB)) && quad_operand(g, 3, c, sizeof(TC))) {
    const int64_t sa = inner_step(g, 1), sb = inner_step(g, 2), sc = inner_step(g, 3);
    for_each(g.numel / 4, [=] __device__(int64_t q) {
      const Quad<TA> x = load_quad(a + g.offset(1, 4 * q), sa);
      const Quad<TB> y = load_quad(b + g.offset(2, 4 * q), sb);
      const Quad<TC> z = load_quad(c + g.offset(3, 4 * q), sc);
      Quad<TO> r;
#pragma unroll
      for (int j = 0; j < 4; ++j) r.v[j] = f(x.v[j], y.v[j], z.v[j]);
      *reinterpret_cast<Quad<TO>*>(out + g.offset(0, 4 * q)) = r;
    }, stream, name);
    return;
  }
  for_each(g.numel, [=] __device__(int64_t i) {
    out[g.offset(0, i)] = f(a[g.offset(1, i)], b[g.offset(2, i)], c[g.offset(3, i)]);
  }, stream, name);
}

}  // namespace crfseg::kernels::cuda
