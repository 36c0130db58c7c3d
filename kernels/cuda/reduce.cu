// CUDA row reductions (see reduce.h).
//
// Long rows (>= 256 elements) get one 256-thread block each: thread t sums
// elements t, t + 256, ... and the block folds the 256 partial sums in a
// shared-memory tree. Fewer than 1024 rows of more than 16384 elements are
// cut into 16384-element chunks summed by a block each, then the chunks'
// sums by a block per row. Short rows get one thread each (a block per row
// would leave most threads idle). Every order is fixed, so results do not
// change from run to run.
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/reduce.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kLongRow = 256;

// Is (v, j) a better maximum than (best, best_j)? Larger wins, then the
// smaller index; a NaN beats any number, and the first NaN wins among NaNs.
template <typename T>
__device__ bool better(T v, int64_t j, T best, int64_t best_j) {
  const bool vn = v != v, bn = best != best;
  if (vn || bn) return vn && (!bn || j < best_j);
  return v > best || (v == best && j < best_j);
}

// The block's sum of row[0, n) in double: thread t takes elements t,
// t + 256, ..., then a shared-memory tree. Every thread gets the result.
template <typename T>
__device__ double block_sum(const T* __restrict__ row, int64_t n, double* partial) {
  double acc = 0.0;
  for (int64_t c = threadIdx.x; c < n; c += kThreads) acc += static_cast<double>(row[c]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();  // partial[0] is read before the caller's next sum overwrites it
  return total;
}

template <typename In, typename Out>
__global__ void sum_long_rows(const In* __restrict__ in, int64_t rows, int64_t cols, double scale,
                              Out* __restrict__ out) {
  __shared__ double partial[kThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const double total = block_sum(in + r * cols, cols, partial);
    if (threadIdx.x == 0) out[r] = static_cast<Out>(total * scale);
  }
}

// Few long rows (a whole-tensor sum, a loss's terms): a block per row
// would leave all but a few SMs idle (one block streams ~100 GB/s of an
// H100's 3.35 TB/s). Each row is cut into chunks of kChunk elements, a
// block sums each into partials[r * chunks + k], and sum_long_rows then
// sums each row's partials. The cut depends on cols alone, so the order of
// the additions, and the result, is fixed.
constexpr int64_t kChunk = 64 * kThreads;
constexpr int64_t kFewRows = 1024;  // from here a block per row fills the device

template <typename T>
__global__ void sum_row_chunks(const T* __restrict__ in, int64_t cols, int64_t chunks, double* __restrict__ partials) {
  __shared__ double partial[kThreads];
  const int64_t r = blockIdx.y;
  for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
    const int64_t begin = k * kChunk, n = cols - begin < kChunk ? cols - begin : kChunk;
    const double total = block_sum(in + r * cols + begin, n, partial);
    if (threadIdx.x == 0) partials[r * chunks + k] = total;
  }
}

template <typename T>
__global__ void max_long_rows(const T* __restrict__ in, int64_t rows, int64_t cols, T* __restrict__ out,
                              int64_t* __restrict__ index) {
  __shared__ T best_v[kThreads];
  __shared__ int64_t best_j[kThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = in + r * cols;
    T bv = row[0];
    int64_t bj = 0;
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
      if (better(row[c], c, bv, bj)) {
        bv = row[c];
        bj = c;
      }
    }
    best_v[threadIdx.x] = bv;
    best_j[threadIdx.x] = bj;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
      if (threadIdx.x < s && better(best_v[threadIdx.x + s], best_j[threadIdx.x + s], best_v[threadIdx.x],
                                    best_j[threadIdx.x])) {
        best_v[threadIdx.x] = best_v[threadIdx.x + s];
        best_j[threadIdx.x] = best_j[threadIdx.x + s];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[r] = best_v[0];
      index[r] = best_j[0];
    }
    __syncthreads();
  }
}

int row_blocks(int64_t rows) { return static_cast<int>(rows < 65535 ? rows : 65535); }

}  // namespace

int64_t sum_rows_scratch(int64_t rows, int64_t cols) {
  return cols > kChunk && rows > 0 && rows < kFewRows ? rows * ((cols + kChunk - 1) / kChunk) : 0;
}

template <typename T>
void sum_rows(const T* in, int64_t rows, int64_t cols, double scale, T* out, double* scratch, Stream stream) {
  if (rows == 0) return;
  if (const int64_t partials = sum_rows_scratch(rows, cols); partials > 0) {
    CRFSEG_CHECK(scratch != nullptr, ValueError, "sum_rows: ", rows, " rows of ", cols,
                 " elements need a scratch of ", partials, " doubles, got none");
    const int64_t chunks = partials / rows;
    const dim3 grid(static_cast<unsigned>(chunks < 65535 ? chunks : 65535), static_cast<unsigned>(rows));
    sum_row_chunks<T><<<grid, kThreads, 0, stream>>>(in, cols, chunks, scratch);
    launch_check("sum_row_chunks");
    sum_long_rows<double, T><<<row_blocks(rows), kThreads, 0, stream>>>(scratch, rows, chunks, scale, out);
    launch_check("sum_long_rows (chunk sums)");
    return;
  }
  if (cols >= kLongRow) {
    sum_long_rows<T, T><<<row_blocks(rows), kThreads, 0, stream>>>(in, rows, cols, scale, out);
    launch_check("sum_long_rows");
    return;
  }
  for_each(rows, [=] __device__(int64_t r) {
    double acc = 0.0;
    for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(in[r * cols + c]);
    out[r] = static_cast<T>(acc * scale);
  }, stream, "sum_short_rows");
}

template <typename T>
void max_rows(const T* in, int64_t rows, int64_t cols, T* out, int64_t* index, Stream stream) {
  if (rows == 0) return;
  // Each row's first element seeds the search (the CPU path's rule: the
  // maximum of no elements is undefined, so ops::max rejects it first).
  CRFSEG_CHECK(cols > 0, ValueError, "max_rows: expected rows of at least one element, got ", cols);
  if (cols >= kLongRow) {
    max_long_rows<T><<<row_blocks(rows), kThreads, 0, stream>>>(in, rows, cols, out, index);
    launch_check("max_long_rows");
    return;
  }
  for_each(rows, [=] __device__(int64_t r) {
    const T* row = in + r * cols;
    T bv = row[0];
    int64_t bj = 0;
    for (int64_t c = 1; c < cols; ++c) {
      if (better(row[c], c, bv, bj)) {
        bv = row[c];
        bj = c;
      }
    }
    out[r] = bv;
    index[r] = bj;
  }, stream, "max_short_rows");
}

template <typename T>
void scatter_rows(const T* grad, const int64_t* index, int64_t rows, int64_t cols, T* out, Stream stream) {
  for_each(rows, [=] __device__(int64_t r) { out[r * cols + index[r]] = grad[r]; }, stream, "scatter_rows");
}

#define CRFSEG_REDUCE(T)                                                                \
  template void sum_rows<T>(const T*, int64_t, int64_t, double, T*, double*, Stream);  \
  template void max_rows<T>(const T*, int64_t, int64_t, T*, int64_t*, Stream);         \
  template void scatter_rows<T>(const T*, const int64_t*, int64_t, int64_t, T*, Stream);
CRFSEG_REDUCE(float)
CRFSEG_REDUCE(double)
#undef CRFSEG_REDUCE

}  // namespace crfseg::kernels::cuda
