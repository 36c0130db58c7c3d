// DenseGaussianFilter: the exact O(N^2) sum (see crf/dense_filter.h).
// Weights are computed on the fly in double, one row of the kernel at a
// time, and accumulated in double whatever T is, so the f32 path is as
// accurate as the reference it is meant to be (the row rule,
// kernels/dense_gaussian.h, is shared with the CUDA kernel).
#include "crf/dense_filter.h"

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
  // O(N^2 (d + C)) work: parallel from a few dozen points on.
#pragma omp parallel for schedule(static) if (N >= 64)
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t c0 = 0; c0 < C; c0 += kernels::kDenseChunk) {
      kernels::dense_gaussian_row(i, c0, 0, N, features_.data(), d, in, C, out);
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
