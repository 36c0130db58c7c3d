// Normalisation and channel statistics (see normalize.h).
#include "datasets/normalize.h"

#include <cmath>
#include <sstream>

namespace crfseg::data {

Normalization Normalization::mean_std(std::vector<float> mean, std::vector<float> std) {
  CRFSEG_CHECK(!mean.empty() && mean.size() == std.size(), ValueError,
               "Normalization::mean_std: expected equally long, non-empty mean and std, got ", mean.size(), " and ",
               std.size(), " values");
  for (float s : std) {
    CRFSEG_CHECK(s > 0 && std::isfinite(s), ValueError, "Normalization::mean_std: expected std > 0, got ", s);
  }
  return {Mode::mean_std, std::move(mean), std::move(std)};
}

std::string Normalization::describe() const {
  if (mode == Mode::unit) return "unit";
  if (mode == Mode::imagenet) return "imagenet";
  auto list = [](const std::vector<float>& v) {
    std::ostringstream out;
    out << '[';
    for (size_t i = 0; i < v.size(); ++i) out << (i ? ", " : "") << v[i];
    out << ']';
    return out.str();
  };
  return "mean_std(mean=" + list(mean) + ", std=" + list(std) + ")";
}

void normalize_(const Tensor& image, const Normalization& norm) {
  if (norm.mode == Normalization::Mode::unit) return;
  CRFSEG_CHECK(image.dim() == 3 && image.is_contiguous(), ShapeError,
               "normalize_: expected a contiguous [C, H, W] image, got ", shape_str(image.shape()));
  const int64_t C = image.size(0), plane = image.size(1) * image.size(2);
  const size_t n = norm.mean.size();
  CRFSEG_CHECK(n == 1 || static_cast<int64_t>(n) == C, ShapeError, "normalize_: ", norm.describe(), " has ", n,
               " channel statistics, the image has ", C, " channels",
               norm.mode == Normalization::Mode::imagenet ? " (ImageNet statistics need RGB input)" : "");
  float* x = image.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float m = norm.mean[n == 1 ? 0 : c], inv = 1.0f / norm.std[n == 1 ? 0 : c];
    for (int64_t p = 0; p < plane; ++p) x[c * plane + p] = (x[c * plane + p] - m) * inv;
  }
  image.bump_version();
}

ChannelStats compute_channel_stats(const Dataset& dataset, int64_t max_samples) {
  const int64_t n = max_samples > 0 ? std::min(max_samples, dataset.size()) : dataset.size();
  CRFSEG_CHECK(n > 0, ValueError, "compute_channel_stats: the dataset is empty");
  const int64_t C = dataset.in_channels();
  // Sums in double: a few thousand images of 10^5 pixels would lose digits in f32.
  std::vector<double> sum(C, 0.0), sum_sq(C, 0.0);
  double count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor image = dataset.get(i).image;
    const int64_t plane = image.size(1) * image.size(2);
    const float* x = image.data<float>();
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t p = 0; p < plane; ++p) {
        sum[c] += x[c * plane + p];
        sum_sq[c] += double(x[c * plane + p]) * x[c * plane + p];
      }
    }
    count += static_cast<double>(plane);
  }
  ChannelStats stats;
  for (int64_t c = 0; c < C; ++c) {
    const double mean = sum[c] / count;
    stats.mean.push_back(static_cast<float>(mean));
    stats.std.push_back(static_cast<float>(std::sqrt(std::max(sum_sq[c] / count - mean * mean, 1e-12))));
  }
  return stats;
}

}  // namespace crfseg::data
