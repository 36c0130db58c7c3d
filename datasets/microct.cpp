// Micro-CT slice datasets (see microct.h).
#include "datasets/microct.h"

#include <algorithm>
#include <filesystem>

#include "datasets/files.h"

namespace crfseg::data {

namespace {

const char* kLayout = "expected ROOT/images/ and ROOT/labels/ holding slice images (PNG, PGM or TIFF)";

std::string sub(const std::string& root, const std::string& dir) {
  require_directory(root, "MicroCtDataset", "volume folder", kLayout);
  return (std::filesystem::path(root) / dir).string();
}

// The smallest value v with at least `percent` % of the pixels at or below it.
double percentile(const std::vector<int64_t>& histogram, double percent) {
  int64_t total = 0;
  for (int64_t c : histogram) total += c;
  if (percent <= 0) {
    for (size_t v = 0; v < histogram.size(); ++v) {
      if (histogram[v] > 0) return static_cast<double>(v);
    }
  }
  const double target = percent / 100.0 * static_cast<double>(total);
  int64_t seen = 0;
  for (size_t v = 0; v < histogram.size(); ++v) {
    seen += histogram[v];
    if (histogram[v] > 0 && static_cast<double>(seen) >= target) return static_cast<double>(v);
  }
  return static_cast<double>(histogram.size() - 1);
}

}  // namespace

MicroCtDataset::MicroCtDataset(std::string root, MicroCtOptions options)
    : root_(std::move(root)),
      options_(std::move(options)),
      images_(sub(root_, options_.images_dir), "MicroCtDataset"),
      labels_(sub(root_, options_.labels_dir), "MicroCtDataset") {
  CRFSEG_CHECK(options_.context >= 0, ValueError, "MicroCtDataset: context must be >= 0, got ", options_.context);
  CRFSEG_CHECK(0 <= options_.low_percentile && options_.low_percentile < options_.high_percentile &&
                   options_.high_percentile <= 100,
               ValueError, "MicroCtDataset: expected 0 <= low_percentile < high_percentile <= 100, got ",
               options_.low_percentile, " and ", options_.high_percentile);
  CRFSEG_CHECK(std::isnan(options_.intensity_low) == std::isnan(options_.intensity_high), ValueError,
               "MicroCtDataset: give both intensity_low and intensity_high, or neither");
  CRFSEG_CHECK(images_.size() == labels_.size(), ShapeError, "MicroCtDataset: '", root_, "' has ", images_.size(),
               " image slices in ", options_.images_dir, "/ but ", labels_.size(), " label slices in ",
               options_.labels_dir, "/");

  const bool window_given = !std::isnan(options_.intensity_low);
  if (window_given && options_.num_classes > 0) {
    // Trust the caller: no scan. Labels are class indices below num_classes.
    low_ = options_.intensity_low;
    high_ = options_.intensity_high;
    rule_.num_classes = options_.num_classes;
    rule_.map = LabelMap::identity(options_.num_classes);
    if (options_.ignore_value >= 0) rule_.map.set(options_.ignore_value, kIgnoreIndex);
  } else {
    std::vector<int64_t> intensity(65536, 0), label(65536, 0);
    scan_volume(intensity, label);
    low_ = window_given ? options_.intensity_low : percentile(intensity, options_.low_percentile);
    high_ = window_given ? options_.intensity_high : percentile(intensity, options_.high_percentile);
    rule_ = infer_label_rule(label, options_.num_classes, options_.ignore_value,
                             "MicroCtDataset '" + root_ + "'");
  }
  CRFSEG_CHECK(high_ >= low_, ValueError, "MicroCtDataset: intensity window [", low_, ", ", high_, "] is empty");
  if (high_ == low_) high_ = low_ + 1;  // a constant volume maps to 0 rather than dividing by zero
}

Image MicroCtDataset::read_gray(int64_t z) const {
  Image slice = images_.read(z);
  return slice.channels == 1 ? slice : convert_channels(slice, 1);
}

void MicroCtDataset::scan_volume(std::vector<int64_t>& intensity, std::vector<int64_t>& label) {
  int64_t height = -1, width = -1;
  for (int64_t z = 0; z < size(); ++z) {
    const Image image = read_gray(z);
    const Image labels = to_label_channel(labels_.read(z), labels_.location(z), "MicroCtDataset");
    if (z == 0) {
      height = image.height;
      width = image.width;
    }
    CRFSEG_CHECK(image.height == height && image.width == width, ShapeError, "MicroCtDataset: slice ",
                 images_.location(z), " is ", image.height, "x", image.width, ", slice 0 is ", height, "x", width);
    CRFSEG_CHECK(labels.height == height && labels.width == width, ShapeError, "MicroCtDataset: label slice ",
                 labels_.location(z), " is ", labels.height, "x", labels.width, " but image slice ",
                 images_.location(z), " is ", height, "x", width, " (HxW)");
    accumulate_histogram(image, intensity);
    accumulate_histogram(labels, label);
  }
}

Sample MicroCtDataset::get(int64_t index) const {
  check_index(index, "MicroCtDataset::get");
  const int64_t k = options_.context, depth = size();
  std::vector<Image> channels;
  for (int64_t d = -k; d <= k; ++d) channels.push_back(read_gray(std::clamp<int64_t>(index + d, 0, depth - 1)));
  const Image labels = to_label_channel(labels_.read(index), labels_.location(index), "MicroCtDataset");
  const Image& centre = channels[static_cast<size_t>(k)];
  for (int64_t d = -k; d <= k; ++d) {
    const Image& c = channels[static_cast<size_t>(d + k)];
    CRFSEG_CHECK(c.height == centre.height && c.width == centre.width, ShapeError, "MicroCtDataset: slice ",
                 images_.location(std::clamp<int64_t>(index + d, 0, depth - 1)), " is ", c.height, "x", c.width,
                 ", slice ", images_.location(index), " is ", centre.height, "x", centre.width);
  }
  CRFSEG_CHECK(labels.height == centre.height && labels.width == centre.width, ShapeError,
               "MicroCtDataset: label slice ", labels_.location(index), " is ", labels.height, "x", labels.width,
               " but image slice ", images_.location(index), " is ", centre.height, "x", centre.width, " (HxW)");

  const int64_t plane = centre.height * centre.width;
  Tensor image = Tensor::empty({2 * k + 1, centre.height, centre.width});
  float* out = image.data<float>();
  const double scale = 1.0 / (high_ - low_);
  for (size_t c = 0; c < channels.size(); ++c) {
    for (int64_t p = 0; p < plane; ++p) {
      const double x = (channels[c].pixels[static_cast<size_t>(p)] - low_) * scale;
      out[static_cast<int64_t>(c) * plane + p] = static_cast<float>(std::clamp(x, 0.0, 1.0));
    }
  }
  normalize_(image, options_.normalization);
  return {image, rule_.map.apply(labels, labels_.location(index)), images_.name(index)};
}

std::vector<std::string> MicroCtDataset::class_names() const {
  if (rule_.binary_255) return {"background", "foreground"};
  std::vector<std::string> names;
  for (int64_t c = 0; c < num_classes(); ++c) names.push_back("class_" + std::to_string(c));
  return names;
}

std::string MicroCtDataset::description() const {
  return "microct '" + root_ + "': " + std::to_string(size()) + " slices, " + std::to_string(in_channels()) +
         " channels, " + std::to_string(num_classes()) + " classes, intensity window [" + std::to_string(low_) + ", " +
         std::to_string(high_) + "]";
}

}  // namespace crfseg::data
