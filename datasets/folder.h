// A generic folder of images and masks:
//
//   ROOT/images/<stem>.<png|jpg|jpeg|bmp|tif|tiff|pgm|ppm|gif>
//   ROOT/masks/<stem>.<png|tif|tiff|pgm|bmp>
//
// Pairs are matched by stem (the name without extension); images without a
// mask are skipped with a warning (skipped() counts them), masks without an
// image are ignored. Samples are in natural name order.
//
// Masks are single-channel images of class indices, read by the rule of
// infer_label_rule (labels.h), decided once over all masks: values 0..K-1 are
// classes (K = max + 1 unless num_classes is given), except that masks holding
// only 0 and 255 are binary (255 = class 1, the usual "white = object" export).
// ignore_value names a raw value (e.g. 255 for VOC borders) that becomes
// kIgnoreIndex. Every mask is therefore read at construction; images are read
// at get(), or also at construction with validate = true (unreadable images
// are then skipped with a warning, as in PetsDataset).
//
// Errors: IOError for a missing root/images/masks folder or an empty one;
// ValueError when no image has a mask or two images share a stem; ShapeError
// for an image and mask of different sizes (at get(), or at construction with
// validate); IOError naming the path for an unreadable file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "datasets/conversions.h"
#include "datasets/dataset.h"
#include "datasets/labels.h"
#include "datasets/normalize.h"

namespace crfseg::data {

struct FolderOptions {
  std::string images_dir = "images", masks_dir = "masks";
  int64_t channels = 3;       // input channels: 1 or 3 (files are converted)
  int64_t num_classes = 0;    // 0: inferred from the masks
  int64_t ignore_value = -1;  // raw mask value read as kIgnoreIndex (-1: none)
  Normalization normalization;
  bool validate = false;
  WarningSink warn = stderr_warnings();
};

class FolderDataset : public Dataset {
 public:
  explicit FolderDataset(std::string root, FolderOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return rule_.num_classes; }
  int64_t in_channels() const override { return options_.channels; }
  std::vector<std::string> class_names() const override;
  std::string description() const override;

  int64_t skipped() const { return skipped_; }
  ConversionCounts conversions() const { return conversions_->counts(); }
  const LabelRule& label_rule() const { return rule_; }

 private:
  struct Entry {
    std::string stem, image, mask;
  };
  std::string root_;
  FolderOptions options_;
  std::vector<Entry> entries_;
  LabelRule rule_;
  int64_t skipped_ = 0;
  std::unique_ptr<ConversionLog> conversions_;
};

}  // namespace crfseg::data
