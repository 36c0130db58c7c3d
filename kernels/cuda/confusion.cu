// CUDA confusion counts (see kernels/cuda/confusion.h).
#include "kernels/cuda/confusion.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
// Each block counts into shared memory when the classes^2 counters fit
// (48 KiB: up to 78 classes), then adds its counts to the global ones: a
// few classes and a million pixels would otherwise put a million atomics
// on a handful of addresses.
constexpr int64_t kSharedBins = 6144;

__global__ void confusion_kernel(const int64_t* __restrict__ pred, const int64_t* __restrict__ target, int64_t n,
                                 int64_t classes, int64_t ignore, unsigned long long* counts) {
  extern __shared__ unsigned long long block_counts[];
  const int64_t bins = classes * classes;
  const bool local = bins <= kSharedBins;
  if (local) {
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) block_counts[b] = 0;
    __syncthreads();
  }
  unsigned long long* into = local ? block_counts : counts;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const int64_t t = target[i];
    if (t == ignore) continue;
    const int64_t p = pred[i];
    if (t < 0 || t >= classes || p < 0 || p >= classes) {
      atomicMax(counts + bins, static_cast<unsigned long long>(n - i));  // the largest n - i: the first i
      continue;
    }
    atomicAdd(into + t * classes + p, 1ull);
  }
  if (local) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) {
      if (block_counts[b] != 0) atomicAdd(counts + b, block_counts[b]);
    }
  }
}

}  // namespace

void confusion_counts(const int64_t* predictions, const int64_t* targets, int64_t n, int64_t classes,
                      int64_t ignore_index, int64_t* counts, Stream stream) {
  if (n <= 0) return;
  const int64_t bins = classes * classes;
  const size_t shared = bins <= kSharedBins ? static_cast<size_t>(bins) * sizeof(unsigned long long) : 0;
  // A block per 8 elements a thread at least: each block's shared counters
  // are cleared and flushed once, so fewer, fuller blocks than for_each's.
  const int blocks = grid_for((n + 7) / 8, kThreads);
  static_assert(sizeof(unsigned long long) == sizeof(int64_t));
  confusion_kernel<<<blocks, kThreads, shared, stream>>>(predictions, targets, n, classes, ignore_index,
                                                         reinterpret_cast<unsigned long long*>(counts));
  launch_check("confusion_counts");
}

void confusion_finish(const int64_t* counts, int64_t bins, const int64_t* add_to, int64_t* out, Stream stream) {
  for_each(bins, [=] __device__(int64_t i) {
    out[i] = (add_to != nullptr ? add_to[i] : 0) + (counts[bins] == 0 ? counts[i] : 0);
  }, stream, "confusion_finish");
}

}  // namespace crfseg::kernels::cuda
