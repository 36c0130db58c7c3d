// Micro-CT volumes, trained slice by slice.
//
// Layout (folder names configurable):
//   ROOT/images/   the reconstructed volume: one image per slice (8/16-bit PNG,
//                  PGM, single-page TIFF) and/or multi-page TIFF stacks
//   ROOT/labels/   the label volume, stored the same way (the two folders may
//                  use different file names and even different containers)
// Slices are taken in natural file-name order, then page order (SliceStack);
// slice z of images/ is labelled by slice z of labels/. Both stacks must have
// the same number of slices, and all slices the same size.
//
// Input: 1 channel (colour slices are reduced to luma). Intensities are
// mapped to [0, 1] through a window over the whole volume: by default the
// volume's minimum and maximum (16-bit aware: a 12-bit detector's range
// 0..4095 spans [0, 1]); low/high_percentile clip outliers (e.g. 0.5 and
// 99.5); intensity_low/high set it by hand. Then `normalization` applies.
// With context = k (2.5D), slices z-k .. z+k become 2k + 1 channels, clamped
// at the first and last slice of the volume.
//
// Labels follow infer_label_rule (labels.h): class indices, or binary 0/255.
//
// Splits: the dataset holds the whole volume; range_subset(ds, 0, k) and
// range_subset(ds, k) give a train/validation split by slice ranges, sharing
// the intensity window (the volume is scanned once).
//
// Construction reads every slice once (the intensity window, the label values
// and the size checks need it) unless intensity_low/high and num_classes are
// all given; then only the slice counts are checked, and sizes at get().
// Errors: IOError for missing folders, empty folders or unreadable slices;
// ShapeError for differing slice counts or sizes (naming both files).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/labels.h"
#include "datasets/normalize.h"
#include "datasets/slice_stack.h"

namespace crfseg::data {

struct MicroCtOptions {
  std::string images_dir = "images", labels_dir = "labels";
  int64_t context = 0;  // 2.5D half-width: in_channels = 2 * context + 1
  double low_percentile = 0.0, high_percentile = 100.0;
  double intensity_low = NAN, intensity_high = NAN;  // raw values; both or neither
  int64_t num_classes = 0;   // 0: inferred from the labels
  int64_t ignore_value = -1; // a raw label value read as kIgnoreIndex (-1: none)
  Normalization normalization;
};

class MicroCtDataset : public Dataset {
 public:
  explicit MicroCtDataset(std::string root, MicroCtOptions options = {});

  int64_t size() const override { return images_.size(); }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return rule_.num_classes; }
  int64_t in_channels() const override { return 2 * options_.context + 1; }
  std::vector<std::string> class_names() const override;
  std::string description() const override;

  // The raw intensity window mapped to [0, 1].
  double intensity_low() const { return low_; }
  double intensity_high() const { return high_; }
  const LabelRule& label_rule() const { return rule_; }

 private:
  void scan_volume(std::vector<int64_t>& intensity_histogram, std::vector<int64_t>& label_histogram);
  Image read_gray(int64_t z) const;

  std::string root_;
  MicroCtOptions options_;
  SliceStack images_, labels_;
  double low_ = 0, high_ = 1;
  LabelRule rule_;
};

}  // namespace crfseg::data
