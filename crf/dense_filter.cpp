// DenseGaussianFilter: the exact O(N^2) sum (see crf/dense_filter.h).
// Weights are computed on the fly in double, one row of the kernel at a
// time, and accumulated in double whatever T is, so the f32 path is as
// accurate as the reference it is meant to be (the row rule,
// kernels/dense_gaussian.h, is shared with the CUDA kernel).
#include "crf/dense_filter.h"

#include <algorithm>
#include <vector>

#include "kernels/dense_gaussian.h"
#include "tensor/error.h"

namespace crfseg::crf {

DenseGaussianFilter::DenseGaussianFilter(const std::vector<double>& features, int64_t num_points, int64_t dim)
    : num_points_(num_points), dim_(dim), features_(features) {
  const char* op = "DenseGaussianFilter";
  CRFSEG_CHECK(dim >= 1, ValueError, op, ": expected feature dimension d >= 1, got ", dim);
  CRFSEG_CHECK(num_points >= 1, ValueError, op, ": expected at least one point, got ", num_points);
  CRFSEG_CHECK(static_cast<int64_t>(features.size()) == num_points * dim, ValueError, op, ": expected ",
               num_points, " x ", dim, " = ", num_points * dim, " features, got ", features.size());
}

template <typename T>
void DenseGaussianFilter::filter(const T* in, T* out, int64_t C) const {
  const int64_t N = num_points_, d = dim_;
  // O(N^2 (d + C)) work: parallel from a few dozen points on. A row's
  // weights are computed once, then summed into each chunk of channels in
  // order j = 0 .. N - 1 (the CUDA kernel's sums, kernels/dense_gaussian.h).
#pragma omp parallel if (N >= 64)
  {
    std::vector<double> w(static_cast<size_t>(N));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      const double* fi = features_.data() + i * d;
      for (int64_t j = 0; j < N; ++j) w[j] = kernels::dense_gaussian_weight(fi, features_.data() + j * d, d);
      for (int64_t c0 = 0; c0 < C; c0 += kernels::kDenseChunk) {
        const int64_t width = std::min(kernels::kDenseChunk, C - c0);
        double acc[kernels::kDenseChunk] = {};
        for (int64_t j = 0; j < N; ++j) kernels::dense_gaussian_accumulate(w[j], in + j * C + c0, width, acc);
        for (int64_t c = 0; c < width; ++c) out[i * C + c0 + c] = static_cast<T>(acc[c]);
      }
    }
  }
}

// The kernel matrix is symmetric: K^T = K, so `transpose` changes nothing.
void DenseGaussianFilter::apply(const float* in, float* out, int64_t channels, bool /*transpose*/) const {
  filter(in, out, channels);
}
void DenseGaussianFilter::apply(const double* in, double* out, int64_t channels, bool /*transpose*/) const {
  filter(in, out, channels);
}

}  // namespace crfseg::crf
