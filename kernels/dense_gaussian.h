// The exact Gaussian filter's row rule (crf/dense_filter.h),
//     out_i = sum_j exp(-|f_i - f_j|^2 / 2) in_j      (j over i's block, i included),
// in host-device code: the CPU filter runs it for every row, the CUDA
// kernel (kernels/cuda/dense_gaussian.cu) in one thread per row and chunk of
// channels, so both sum each output over j in the same order, in double.
// Channels go kDenseChunk at a time, so a chunk's accumulators stay in
// registers; the device recomputes the weights for each chunk (the CRF's
// spatial filter takes the batch's B L channels), the CPU computes a row's
// weights once.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels {

constexpr int64_t kDenseChunk = 16;

// The weight of the pair (i, j): exp(-|f_i - f_j|^2 / 2).
CRFSEG_HD inline double dense_gaussian_weight(const double* fi, const double* fj, int64_t d) {
#ifndef __CUDA_ARCH__
  using std::exp;
#endif
  double dist2 = 0;
  for (int64_t k = 0; k < d; ++k) dist2 += (fi[k] - fj[k]) * (fi[k] - fj[k]);
  return exp(-0.5 * dist2);
}

// One step j of a row's sums over a chunk of `width` <= kDenseChunk
// channels: acc[c] += w x[c]. (Unrolled over the whole chunk with a guard,
// so the device keeps acc in registers.)
template <typename T>
CRFSEG_HD void dense_gaussian_accumulate(double w, const T* x, int64_t width, double* acc) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int64_t c = 0; c < kDenseChunk; ++c) {
    if (c < width) acc[c] += w * static_cast<double>(x[c]);
  }
}

// out[i, c] for the channels c0 .. min(c0 + kDenseChunk, C) - 1, summed
// over j = j0 .. j1 - 1 (the rows of i's block: all N for one filter, one
// image's for a batch stacked block-diagonally); features [N x d]
// (double), in and out [N x C]. The device runs this per (row, chunk),
// computing each weight on the fly; the CPU computes a row's weights once
// and runs the same accumulation per chunk: the same sums in the same order.
template <typename T>
CRFSEG_HD void dense_gaussian_row(int64_t i, int64_t c0, int64_t j0, int64_t j1, const double* features, int64_t d,
                                  const T* in, int64_t C, T* out) {
  const int64_t width = C - c0 < kDenseChunk ? C - c0 : kDenseChunk;
  double acc[kDenseChunk] = {};
  const double* fi = features + i * d;
  for (int64_t j = j0; j < j1; ++j) {
    dense_gaussian_accumulate(dense_gaussian_weight(fi, features + j * d, d), in + j * C + c0, width, acc);
  }
  for (int64_t c = 0; c < width; ++c) out[i * C + c0 + c] = static_cast<T>(acc[c]);
}

}  // namespace crfseg::kernels
