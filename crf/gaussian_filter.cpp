// The filter factory and the CRF's spatial and bilateral features.
#include "crf/gaussian_filter.h"

#include "crf/dense_filter.h"
#include "crf/permutohedral.h"
#include "kernels/lattice_rules.h"
#include "tensor/error.h"

namespace crfseg::crf {

const char* filter_mode_name(FilterMode mode) { return mode == FilterMode::lattice ? "lattice" : "dense"; }

std::unique_ptr<GaussianFilter> make_gaussian_filter(FilterMode mode, const std::vector<double>& features,
                                                     int64_t num_points, int64_t dim, bool for_gpu) {
  if (mode == FilterMode::dense) return std::make_unique<DenseGaussianFilter>(features, num_points, dim);
  LatticeOptions options;
  options.cpu_blur = !for_gpu;
  return std::make_unique<PermutohedralLattice>(features, num_points, dim, options);
}

std::vector<double> spatial_features(int64_t height, int64_t width, double theta_gamma) {
  std::vector<double> f(static_cast<size_t>(height * width * 2));
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      f[(y * width + x) * 2 + 0] = static_cast<double>(x) / theta_gamma;
      f[(y * width + x) * 2 + 1] = static_cast<double>(y) / theta_gamma;
    }
  }
  return f;
}

std::vector<double> bilateral_features(const double* image, int64_t channels, int64_t height, int64_t width,
                                       double theta_alpha, double theta_beta) {
  const int64_t d = 2 + channels, hw = height * width;
  std::vector<double> f(static_cast<size_t>(hw * d));
  for (int64_t i = 0; i < hw; ++i) {
    kernels::bilateral_feature(image, channels, height, width, i, theta_alpha, theta_beta, f.data() + i * d);
  }
  return f;
}

}  // namespace crfseg::crf
