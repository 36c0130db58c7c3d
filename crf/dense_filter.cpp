// DenseGaussianFilter: the exact O(N^2) sum (see crf/dense_filter.h).
// Weights are computed on the fly in double, one row of the kernel at a
// time, and accumulated in double whatever T is, so the f32 path is as
// accurate as the reference it is meant to be.
#include "crf/dense_filter.h"

#include <algorithm>
#include <cmath>

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
#pragma omp parallel if (N >= 64)
  {
    std::vector<double> acc(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      const double* fi = features_.data() + i * d;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < N; ++j) {
        const double* fj = features_.data() + j * d;
        double dist2 = 0;
        for (int64_t k = 0; k < d; ++k) dist2 += (fi[k] - fj[k]) * (fi[k] - fj[k]);
        const double w = std::exp(-0.5 * dist2);
        const T* x = in + j * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += w * static_cast<double>(x[c]);
      }
      for (int64_t c = 0; c < C; ++c) out[i * C + c] = static_cast<T>(acc[c]);
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
