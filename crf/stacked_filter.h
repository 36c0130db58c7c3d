// StackedFilter: Gaussian filters over consecutive blocks of rows, as one
// block-diagonal operator. Part b filters rows [sum of the previous parts'
// points, + its points) of [num_points x C] values, and nothing crosses
// between blocks. The composed mean-field stacks a batch's per-image
// bilateral filters this way, so that one call filters the whole batch's
// [B n, L] values; on CUDA the stack becomes one set of lattice tables
// (crf/permutohedral_cuda.h, lattice_tables), one launch per step for all
// the images instead of one per image.
// Test: tests/crf/test_mean_field_composed.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "crf/gaussian_filter.h"

namespace crfseg::crf {

class StackedFilter final : public GaussianFilter {
 public:
  // Throws ValueError for no parts, a null part, or parts of different
  // feature dimensions.
  explicit StackedFilter(std::vector<std::unique_ptr<GaussianFilter>> parts);

  int64_t num_points() const override { return num_points_; }
  int64_t feature_dim() const override { return parts_.front()->feature_dim(); }
  void apply(const float* in, float* out, int64_t channels, bool transpose = false) const override;
  void apply(const double* in, double* out, int64_t channels, bool transpose = false) const override;

  const std::vector<std::unique_ptr<GaussianFilter>>& parts() const { return parts_; }

 private:
  template <typename T>
  void run(const T* in, T* out, int64_t channels, bool transpose) const;

  std::vector<std::unique_ptr<GaussianFilter>> parts_;
  int64_t num_points_ = 0;
};

// The parts of `f` (a StackedFilter's, or f itself) as filters of type T;
// empty unless every part is one (e.g. the lattices that lattice_tables
// stacks for the GPU).
template <typename T>
std::vector<const T*> parts_of_type(const GaussianFilter& f) {
  std::vector<const T*> out;
  const auto* stack = dynamic_cast<const StackedFilter*>(&f);
  const size_t count = stack != nullptr ? stack->parts().size() : 1;
  for (size_t i = 0; i < count; ++i) {
    const auto* part = dynamic_cast<const T*>(stack != nullptr ? stack->parts()[i].get() : &f);
    if (part == nullptr) return {};
    out.push_back(part);
  }
  return out;
}

}  // namespace crfseg::crf
