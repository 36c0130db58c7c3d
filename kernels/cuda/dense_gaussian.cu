// The CUDA exact Gaussian filter (see kernels/cuda/dense_gaussian.h).
// Consecutive threads take consecutive rows of one channel chunk, so at
// each step j a warp reads the same f_j and in_j (one broadcast load) and
// only its own f_i differs. O(N^2 (d + C)) double-precision work: the
// reference mode for small images (a 64x64 image: 16.8M pairs per call).
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dense_gaussian.h"
#include "kernels/dense_gaussian.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void dense_kernel(const double* __restrict__ features, int64_t N, int64_t block, int64_t d,
                             const T* __restrict__ in, T* __restrict__ out, int64_t C, int64_t chunks) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < N * chunks; idx += stride) {
    const int64_t chunk = idx / N, i = idx - chunk * N;
    const int64_t j0 = i / block * block;
    kernels::dense_gaussian_row(i, chunk * kDenseChunk, j0, j0 + block, features, d, in, C, out);
  }
}

template <typename T>
void launch(const double* features, int64_t N, int64_t block, int64_t d, const T* in, T* out, int64_t C,
            cudaStream_t stream) {
  CRFSEG_CHECK(block >= 1 && N % block == 0, ValueError, "dense_gaussian_filter: expected blocks of >= 1 rows "
               "dividing N, got N = ", N, ", block ", block);
  const int64_t chunks = (C + kDenseChunk - 1) / kDenseChunk;
  if (N == 0 || chunks == 0) return;
  dense_kernel<T><<<grid_for(N * chunks, kThreads), kThreads, 0, stream>>>(features, N, block, d, in, out, C, chunks);
  launch_check("dense_gaussian_filter");
}

}  // namespace

void dense_gaussian_filter(const double* features, int64_t N, int64_t block, int64_t d, const float* in, float* out,
                           int64_t C, cudaStream_t stream) {
  launch(features, N, block, d, in, out, C, stream);
}
void dense_gaussian_filter(const double* features, int64_t N, int64_t block, int64_t d, const double* in,
                           double* out, int64_t C, cudaStream_t stream) {
  launch(features, N, block, d, in, out, C, stream);
}

}  // namespace crfseg::kernels::cuda
