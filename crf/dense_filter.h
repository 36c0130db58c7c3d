// DenseGaussianFilter: the exact Gaussian filter, O(N^2 (d + C)) per call,
//
//     out_i = sum_j exp(-|f_i - f_j|^2 / 2) in_j      (j = i included, weight 1).
//
// The reference the permutohedral lattice is tested against, and the
// layer's `dense` mode for small images (a 64x64 image is 16.8 M pairs per
// call). The kernel is symmetric, so apply(..., transpose = true) is the
// same operator. Each output row is one thread's sum in a fixed order j =
// 0..N-1, so results do not depend on the thread count.
// Test: build-crf/tests/test_crf -tc='*dense*'.
#pragma once

#include <cstdint>
#include <vector>

#include "crf/gaussian_filter.h"

namespace crfseg::crf {

class DenseGaussianFilter : public GaussianFilter {
 public:
  // features: [num_points x dim] row-major, already divided by theta.
  // Throws ValueError for dim < 1, num_points < 1 or a size mismatch.
  DenseGaussianFilter(const std::vector<double>& features, int64_t num_points, int64_t dim);

  int64_t num_points() const override { return num_points_; }
  int64_t feature_dim() const override { return dim_; }
  const std::vector<double>& features() const { return features_; }  // [N x d], for device copies
  void apply(const float* in, float* out, int64_t channels, bool transpose = false) const override;
  void apply(const double* in, double* out, int64_t channels, bool transpose = false) const override;

 private:
  template <typename T>
  void filter(const T* in, T* out, int64_t channels) const;

  int64_t num_points_, dim_;
  std::vector<double> features_;
};

}  // namespace crfseg::crf
