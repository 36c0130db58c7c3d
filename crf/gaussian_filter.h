// GaussianFilter: the linear operator the CRF-RNN's message passing applies,
// with two implementations, and the feature vectors it is built from.
//
// For N points with features f_i in R^d (already divided by their
// bandwidths theta), a Gaussian filter maps values in [N x C] (point-major:
// row i holds the C channels of point i) to
//
//     out_i = sum_j k(f_i, f_j) in_j,    k(f_i, f_j) = exp(-|f_i - f_j|^2 / 2),
//
// self-contribution (j == i, weight 1) INCLUDED. The CRF divides every
// message by the filtered all-ones image, so what matters is the normalised
// weighted average; including self keeps that denominator >= the self
// weight > 0 for isolated pixels (a 1x1 image, or a pixel whose colour no
// neighbour shares). See crf/mean_field.h for the full argument.
//
// Implementations:
//   - PermutohedralLattice (crf/permutohedral.h): O(N d^2 + M d C),
//     approximate (Adams, Baek, Davis 2010);
//   - DenseGaussianFilter (crf/dense_filter.h): the exact O(N^2 (d + C)) sum,
//     the reference for tests and a mode of the layer for small images.
// Both are fixed linear operators once built, so apply(..., transpose=true)
// is their exact adjoint (what the backward pass needs).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace crfseg::crf {

enum class FilterMode { lattice, dense };
const char* filter_mode_name(FilterMode mode);  // "lattice" / "dense"

class GaussianFilter {
 public:
  virtual ~GaussianFilter() = default;
  virtual int64_t num_points() const = 0;
  virtual int64_t feature_dim() const = 0;
  // out = K in (transpose = false) or K^T in (transpose = true); in and out
  // are [num_points x channels], row-major, and must not alias. Each call
  // parallelises internally with OpenMP; filters are immutable once built,
  // so concurrent calls from several threads are safe.
  virtual void apply(const float* in, float* out, int64_t channels, bool transpose = false) const = 0;
  virtual void apply(const double* in, double* out, int64_t channels, bool transpose = false) const = 0;
};

// Builds a filter of the given mode over `features` ([num_points x dim],
// row-major, already scaled by 1 / theta). for_gpu: a lattice whose tables
// only go to the GPU, without the CPU blur's structures
// (LatticeOptions::cpu_blur); the dense filter ignores it.
std::unique_ptr<GaussianFilter> make_gaussian_filter(FilterMode mode, const std::vector<double>& features,
                                                     int64_t num_points, int64_t dim, bool for_gpu = false);

// ---- CRF features of one image (pixel i = y * width + x, row-major) ----
// Spatial: (x / theta_gamma, y / theta_gamma), d = 2.
std::vector<double> spatial_features(int64_t height, int64_t width, double theta_gamma);
// Bilateral: (x / theta_alpha, y / theta_alpha, c_0 / theta_beta, ..., c_{C-1} / theta_beta),
// d = 2 + C, from one image's planes `image` [C x height x width] (C = 3 RGB, 1 grayscale).
std::vector<double> bilateral_features(const double* image, int64_t channels, int64_t height, int64_t width,
                                       double theta_alpha, double theta_beta);

}  // namespace crfseg::crf
