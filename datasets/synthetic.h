// Synthetic shapes: the embedded default dataset (nothing to download).
//
// Each sample is a smooth, drifting background with 1-3 filled shapes
// (ellipses, rotated rectangles, triangles), drawn with soft (2x2
// supersampled) edges, then blurred and given Gaussian noise:
//   background   a random level per channel in [0.10, 0.40]
//   drift        a linear + quadratic ramp of amplitude `drift` across the
//                image, so no global threshold separates the classes
//   shapes       brighter than the background by 0.20-0.45 (per channel
//                0.5-1.0 times that, for colour), radius 10-30 % of the side;
//                later shapes cover earlier ones, in the mask as well
//   blur, noise  Gaussian blur of sigma `blur_sigma` px on the image only (the
//                mask keeps hard edges, which is where a CRF helps), then
//                N(0, noise_std) per pixel, clamped to [0, 1]
// Classes: 0 is background. num_classes = 2 marks every shape 1 (binary);
// 3 draws ellipses (1) and rectangles (2); 4 adds triangles (3).
//
// Sample i is a pure function of (seed, i): it draws from its own Generator
// seeded with derive_seed(seed, synthetic, {i}), so it is thread-safe,
// independent of access order, and identical across runs (bit-identical
// wherever the C library's sin/cos/exp/log agree, e.g. one glibc).
#pragma once

#include "datasets/dataset.h"
#include "datasets/normalize.h"

namespace crfseg::data {

struct SyntheticOptions {
  int64_t size = 1000;  // samples
  int64_t height = 64, width = 64;
  int64_t channels = 3;     // 1 or 3
  int64_t num_classes = 2;  // 2, 3 or 4 (see above)
  uint64_t seed = 0;
  int64_t max_shapes = 3;   // 1..max_shapes shapes per image
  double noise_std = 0.06;
  double blur_sigma = 1.0;  // 0: no blur
  double drift = 0.3;
  Normalization normalization;
};

class SyntheticDataset : public Dataset {
 public:
  // Throws ValueError for sizes < 8 pixels, channels other than 1/3,
  // num_classes outside 2..4, size < 1 or negative noise/blur/drift.
  explicit SyntheticDataset(SyntheticOptions options = {});

  int64_t size() const override { return options_.size; }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return options_.num_classes; }
  int64_t in_channels() const override { return options_.channels; }
  std::vector<std::string> class_names() const override;
  std::string description() const override;
  const SyntheticOptions& options() const { return options_; }

 private:
  SyntheticOptions options_;
};

}  // namespace crfseg::data
