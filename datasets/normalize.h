// Image normalisation, applied by every dataset to its [0, 1]-scaled images.
//
//   unit      leave the [0, 1] values as they are (the default);
//   imagenet  (x - mean) / std with torchvision's ImageNet statistics, for
//             encoders initialised from pretrained weights (3 channels only);
//   mean_std  (x - mean) / std with caller-given statistics, one value per
//             channel or one for all (e.g. from compute_channel_stats).
#pragma once

#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace crfseg::data {

struct Normalization {
  enum class Mode { unit, imagenet, mean_std };
  Mode mode = Mode::unit;
  std::vector<float> mean, std;  // mean_std only

  static Normalization unit_range() { return {}; }
  static Normalization imagenet() { return {Mode::imagenet, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
  // Throws ValueError for empty or mismatched lists or a std <= 0.
  static Normalization mean_std(std::vector<float> mean, std::vector<float> std);

  std::string describe() const;  // "unit", "imagenet", "mean_std(mean=[0.5], std=[0.2])"
};

// Normalises a [C, H, W] f32 image in place. Throws ShapeError when the
// statistics' channel count does not match C (one value applies to all).
void normalize_(const Tensor& image, const Normalization& norm);

struct ChannelStats {
  std::vector<float> mean, std;  // one per channel
};

// Per-channel mean and (population) standard deviation of the images of a
// dataset, over its first max_samples samples (0: all). Use a dataset built
// with unit normalisation, then pass the result to Normalization::mean_std.
ChannelStats compute_channel_stats(const Dataset& dataset, int64_t max_samples = 0);

}  // namespace crfseg::data
