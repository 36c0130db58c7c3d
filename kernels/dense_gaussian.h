// The exact Gaussian filter's row rule (crf/dense_filter.h),
//     out_i = sum_j exp(-|f_i - f_j|^2 / 2) in_j      (j over i's block, i included),
// in host-device code: the CPU filter runs it for every row, the CUDA
// kernel (kernels/cuda/dense_gaussian.cu) in one thread per row and chunk of
// channels, so both sum each output over j in the same order, in double.
// Channels go kDenseChunk at a time: a chunk's accumulators stay in
// registers, and each weight is computed once per chunk (the CRF filters 1
// to 16 channels, so once).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels {

constexpr int64_t kDenseChunk = 16;

// out[i, c] for the channels c0 .. min(c0 + kDenseChunk, C) - 1, summed
// over j = j0 .. j1 - 1 (the rows of i's block: all N for one filter, one
// image's for a batch stacked block-diagonally); features [N x d]
// (double), in and out [N x C].
template <typename T>
CRFSEG_HD void dense_gaussian_row(int64_t i, int64_t c0, int64_t j0, int64_t j1, const double* features, int64_t d,
                                  const T* in, int64_t C, T* out) {
  const int64_t width = C - c0 < kDenseChunk ? C - c0 : kDenseChunk;
  double acc[kDenseChunk];
  for (int64_t c = 0; c < kDenseChunk; ++c) acc[c] = 0.0;
  const double* fi = features + i * d;
  for (int64_t j = j0; j < j1; ++j) {
    const double* fj = features + j * d;
    double dist2 = 0;
    for (int64_t k = 0; k < d; ++k) dist2 += (fi[k] - fj[k]) * (fi[k] - fj[k]);
    const double w = exp(-0.5 * dist2);
    const T* x = in + j * C + c0;
    for (int64_t c = 0; c < width; ++c) acc[c] += w * static_cast<double>(x[c]);
  }
  for (int64_t c = 0; c < width; ++c) out[i * C + c0 + c] = static_cast<T>(acc[c]);
}

}  // namespace crfseg::kernels
