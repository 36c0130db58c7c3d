// CUDA permutohedral-lattice filtering: splat, blur and slice over tables
// built on the host by crf::PermutohedralLattice (crf/permutohedral.h) and
// uploaded once (crf/permutohedral_cuda.h does both). The math and the table
// layouts are documented in crf/permutohedral.h; these kernels are the GPU
// twins of the CPU filter there, step for step, with the same summation
// order per output element, so results are deterministic (no atomics) and
// agree with the CPU to rounding.
//
// Values are point-major [N x C] (row i = the C channels of point i); the
// lattice buffers are [(M + 1) x C], row M being the always-zero "absent
// neighbour". Every pointer is device memory on the current device; every
// launch is asynchronous on `stream`.
// Status: compiled for sm_90 in CI; the GPU path had NOT been run on a device
// when it was written (no GPU was lent). Test: build/tests/test_cuda
// -tc='*permutohedral*' (skips without a device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace crfseg::kernels::cuda {

// The uploaded lattice: device pointers plus sizes (N points, M lattice
// points, d feature dims). Layouts as in crf/permutohedral.h:
//   splat_offsets [M + 1], splat_points / splat_weights [N (d + 1)] (CSR by lattice point);
//   neighbours [(d + 1) x M x 2] (p + u_j, p - u_j, or M when absent);
//   vertices / barycentric [N x (d + 1)].
struct PermutohedralTables {
  const int64_t* splat_offsets = nullptr;
  const int32_t* splat_points = nullptr;
  const float* splat_weights = nullptr;
  const int32_t* neighbours = nullptr;
  const int32_t* vertices = nullptr;
  const float* barycentric = nullptr;
  int64_t num_points = 0;   // N
  int64_t num_lattice = 0;  // M
  int64_t dim = 0;          // d
};

// values[p, c] = sum over p's splat entries e of weight_e * in[point_e, c], p < M.
void permutohedral_splat(const PermutohedralTables& t, const float* in, float* values, int64_t C,
                         cudaStream_t stream);
void permutohedral_splat(const PermutohedralTables& t, const double* in, double* values, int64_t C,
                         cudaStream_t stream);

// One blur pass along direction j: out[p, c] = v[p, c] + (v[p + u_j, c] + v[p - u_j, c]) / 2
// for p < M. `values` must hold the zero row M; `out` must not alias `values`.
void permutohedral_blur(const PermutohedralTables& t, int64_t j, const float* values, float* out, int64_t C,
                        cudaStream_t stream);
void permutohedral_blur(const PermutohedralTables& t, int64_t j, const double* values, double* out, int64_t C,
                        cudaStream_t stream);

// out[i, c] = alpha * sum_k barycentric[i, k] * values[vertices[i, k], c], i < N.
void permutohedral_slice(const PermutohedralTables& t, const float* values, float* out, int64_t C, double alpha,
                         cudaStream_t stream);
void permutohedral_slice(const PermutohedralTables& t, const double* values, double* out, int64_t C,
                         double alpha, cudaStream_t stream);

// The whole filter: out = alpha S^T B_d ... B_0 S in (transpose = false) or
// alpha S^T B_0 ... B_d S in (transpose = true). buffer0 and buffer1 are
// scratch of (M + 1) x C elements each (their row M is zeroed here); in, out
// and the buffers must not alias. in and out are [N x C].
void permutohedral_filter(const PermutohedralTables& t, const float* in, float* out, float* buffer0,
                          float* buffer1, int64_t C, bool transpose, double alpha, cudaStream_t stream);
void permutohedral_filter(const PermutohedralTables& t, const double* in, double* out, double* buffer0,
                          double* buffer1, int64_t C, bool transpose, double alpha, cudaStream_t stream);

}  // namespace crfseg::kernels::cuda
