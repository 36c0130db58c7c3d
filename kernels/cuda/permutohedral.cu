// CUDA permutohedral-lattice filter (see kernels/cuda/permutohedral.h for
// the interface, crf/permutohedral.h for the math and the table layouts).
//
// Mapping: one thread per output element (row, channel), flat index
// row * C + c, in a grid-stride loop, so any N, M and C work with a bounded
// grid. Every step is a gather: splat reads the CSR list of its lattice
// point, blur its two neighbours, slice its d + 1 simplex vertices. No
// thread writes another's output, so there are no atomics and results are
// bit-identical run to run. Within one output the terms are summed in the
// same order as the CPU filter (crf/permutohedral.cpp), each step as an
// explicit fma(w, x, acc): GCC contracts the CPU's `acc += w * x` into the
// same FMA when built with -march=native on an FMA machine (the default), so
// the two are expected to agree to the last bit or nearly; in any case to
// f32 rounding (the tests allow 1e-5 relative).
//
// Napkin (256x256 RGB bilateral, d = 5, C = 3): splat and slice each move
// ~6 N C values plus 6 N (index, weight) pairs, ~10 MB; each of the 6 blur
// passes moves ~3 M C values plus 2 M indices. Memory-bound gathers, well
// under a millisecond on an H100 at a fraction of peak bandwidth.
// Status: compiled for sm_90; NOT yet run on a GPU when written (this
// session had no device). Test: tests/cuda/test_cuda_permutohedral.cpp.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/permutohedral.h"
#include "kernels/hd.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// values[p * C + c] for p < M: the weighted sum over p's splat entries, in list (point) order.
template <typename T>
__global__ void splat_kernel(const int64_t* __restrict__ offsets, const int32_t* __restrict__ points,
                             const float* __restrict__ weights, const T* __restrict__ in, T* __restrict__ values,
                             int64_t M, int64_t C) {
  for (int64_t idx = first_index(); idx < M * C; idx += grid_stride()) {
    const int64_t p = quotient(idx, C), c = idx - p * C;  // 32-bit where it fits
    T acc = T(0);
    for (int64_t e = offsets[p]; e < offsets[p + 1]; ++e) {
      acc = fma(static_cast<T>(weights[e]), in[static_cast<int64_t>(points[e]) * C + c], acc);
    }
    values[idx] = acc;
  }
}

// out[p * C + c] = v[p] + 0.5 (v[up] + v[down]) for p < M; neighbours is this direction's [M x 2] slice.
template <typename T>
__global__ void blur_kernel(const int32_t* __restrict__ neighbours, const T* __restrict__ values,
                            T* __restrict__ out, int64_t M, int64_t C) {
  for (int64_t idx = first_index(); idx < M * C; idx += grid_stride()) {
    const int64_t p = quotient(idx, C), c = idx - p * C;  // 32-bit where it fits
    const T up = values[static_cast<int64_t>(neighbours[2 * p]) * C + c];
    const T down = values[static_cast<int64_t>(neighbours[2 * p + 1]) * C + c];
    // 0.5 (up + down) is exact, so contraction cannot change this sum.
    out[idx] = values[idx] + T(0.5) * (up + down);
  }
}

// out[i * C + c] = alpha * sum_k bary[i, k] values[vertex[i, k], c] for i < N.
template <typename T>
__global__ void slice_kernel(const int32_t* __restrict__ vertices, const float* __restrict__ barycentric,
                             const T* __restrict__ values, T* __restrict__ out, int64_t N, int64_t d1, int64_t C,
                             T alpha) {
  for (int64_t idx = first_index(); idx < N * C; idx += grid_stride()) {
    const int64_t i = quotient(idx, C), c = idx - i * C;
    T acc = T(0);
    for (int64_t k = 0; k < d1; ++k) {
      const T w = static_cast<T>(barycentric[i * d1 + k]);
      acc = fma(w, values[static_cast<int64_t>(vertices[i * d1 + k]) * C + c], acc);
    }
    out[idx] = alpha * acc;
  }
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

template <typename T>
void launch_splat(const PermutohedralTables& t, const T* in, T* values, int64_t C, cudaStream_t stream) {
  const int64_t n = t.num_lattice * C;
  if (n == 0) return;
  splat_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(t.splat_offsets, t.splat_points, t.splat_weights, in,
                                                        values, t.num_lattice, C);
  launch_check("permutohedral_splat");
}

template <typename T>
void launch_blur(const PermutohedralTables& t, int64_t j, const T* values, T* out, int64_t C, cudaStream_t stream) {
  const int64_t n = t.num_lattice * C;
  if (n == 0) return;
  const int32_t* neighbours = t.neighbours + j * t.num_lattice * 2;
  blur_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(neighbours, values, out, t.num_lattice, C);
  launch_check("permutohedral_blur");
}

template <typename T>
void launch_slice(const PermutohedralTables& t, const T* values, T* out, int64_t C, double alpha,
                  cudaStream_t stream) {
  const int64_t n = t.num_points * C;
  if (n == 0) return;
  slice_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(t.vertices, t.barycentric, values, out, t.num_points,
                                                        t.dim + 1, C, static_cast<T>(alpha));
  launch_check("permutohedral_slice");
}

template <typename T>
void launch_filter(const PermutohedralTables& t, const T* in, T* out, T* buffer0, T* buffer1, int64_t C,
                   bool transpose, double alpha, cudaStream_t stream) {
  const int64_t M = t.num_lattice, d = t.dim;
  // Row M of both buffers is the absent neighbour that every blur reads as zero.
  CRFSEG_CUDA_CHECK(cudaMemsetAsync(buffer0 + M * C, 0, static_cast<size_t>(C) * sizeof(T), stream));
  CRFSEG_CUDA_CHECK(cudaMemsetAsync(buffer1 + M * C, 0, static_cast<size_t>(C) * sizeof(T), stream));
  launch_splat(t, in, buffer0, C, stream);
  // d + 1 blur passes, ping-pong; the adjoint runs the directions in reverse order.
  T* values = buffer0;
  T* scratch = buffer1;
  for (int64_t step = 0; step <= d; ++step) {
    const int64_t j = transpose ? d - step : step;
    launch_blur(t, j, values, scratch, C, stream);
    T* swap = values;
    values = scratch;
    scratch = swap;
  }
  launch_slice(t, values, out, C, alpha, stream);
}

}  // namespace

void permutohedral_splat(const PermutohedralTables& t, const float* in, float* values, int64_t C, cudaStream_t s) {
  launch_splat(t, in, values, C, s);
}
void permutohedral_splat(const PermutohedralTables& t, const double* in, double* values, int64_t C,
                         cudaStream_t s) {
  launch_splat(t, in, values, C, s);
}

void permutohedral_blur(const PermutohedralTables& t, int64_t j, const float* values, float* out, int64_t C,
                        cudaStream_t s) {
  launch_blur(t, j, values, out, C, s);
}
void permutohedral_blur(const PermutohedralTables& t, int64_t j, const double* values, double* out, int64_t C,
                        cudaStream_t s) {
  launch_blur(t, j, values, out, C, s);
}

void permutohedral_slice(const PermutohedralTables& t, const float* values, float* out, int64_t C, double alpha,
                         cudaStream_t s) {
  launch_slice(t, values, out, C, alpha, s);
}
void permutohedral_slice(const PermutohedralTables& t, const double* values, double* out, int64_t C,
                         double alpha, cudaStream_t s) {
  launch_slice(t, values, out, C, alpha, s);
}

void permutohedral_filter(const PermutohedralTables& t, const float* in, float* out, float* buffer0,
                          float* buffer1, int64_t C, bool transpose, double alpha, cudaStream_t s) {
  launch_filter(t, in, out, buffer0, buffer1, C, transpose, alpha, s);
}
void permutohedral_filter(const PermutohedralTables& t, const double* in, double* out, double* buffer0,
                          double* buffer1, int64_t C, bool transpose, double alpha, cudaStream_t s) {
  launch_filter(t, in, out, buffer0, buffer1, C, transpose, alpha, s);
}

}  // namespace crfseg::kernels::cuda
