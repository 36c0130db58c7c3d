// Oxford-IIIT Pet (Parkhi et al. 2012) in its published layout:
//
//   ROOT/images/<stem>.jpg                  37 breeds, ~7,390 photos
//   ROOT/annotations/trimaps/<stem>.png     8-bit trimaps: 1 pet, 2 background, 3 border
//   ROOT/annotations/trainval.txt, test.txt one image per line, "Abyssinian_100 1 1 1":
//                                           the first token is the stem (then class
//                                           id, species, breed id, which we do not use)
//
// Classes (TrimapBorder): by default the three trimap values are three classes,
// pet = 0, background = 1, border = 2, as the LBNL system trains; `ignore`
// keeps pet/background and marks the border kIgnoreIndex; `as_pet` and
// `as_background` merge it into that class (two classes).
//
// Odd files. Images are always read as RGB: grayscale ones are replicated,
// RGBA ones lose alpha, and files whose content is another format than the
// extension says (PNGs named .jpg) are decoded by content. All are counted
// (conversions()). Files are checked in one of two ways:
//   - validate = false (default): construction only checks that both files of
//     every listed stem exist (listed stems with a missing file are skipped
//     with a warning); a corrupt file is found when get() reads it and throws
//     IOError naming the path and the decoder's reason.
//   - validate = true: construction also decodes every image and trimap (in
//     parallel, OpenMP); corrupt or unreadable ones are skipped with a warning
//     and counted in skipped(), so training never meets them. An image and
//     trimap of different sizes still throw ShapeError: that is a broken
//     dataset, not a bad file.
// Errors: IOError for a missing root, images/ or trimaps/ folder or split
// file (naming the expected layout); ValueError when a split lists nothing
// usable; at get(), ShapeError for an image/trimap size mismatch and
// ValueError for a trimap value other than 1, 2, 3.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "datasets/conversions.h"
#include "datasets/dataset.h"
#include "datasets/labels.h"
#include "datasets/normalize.h"

namespace crfseg::data {

enum class TrimapBorder { as_class, ignore, as_pet, as_background };

// The image stems a split file ("annotations/trainval.txt") lists, in order:
// the first whitespace-separated token of each line; blank lines and lines
// starting with '#' are skipped. A stem must name a file inside images/, so
// one holding '/', '\\' or a NUL byte, or being "." or "..", throws
// ValueError naming `source` and the line. So does a text listing no stem.
// PetsDataset reads its split files through this function.
std::vector<std::string> parse_pets_split(const std::string& text, const std::string& source);

struct PetsOptions {
  std::string split = "trainval";  // "trainval", "test", or "all" (both files, in that order)
  TrimapBorder border = TrimapBorder::as_class;
  Normalization normalization;  // unit by default; imagenet for pretrained encoders
  bool validate = false;
  WarningSink warn = stderr_warnings();
};

class PetsDataset : public Dataset {
 public:
  explicit PetsDataset(std::string root, PetsOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return options_.border == TrimapBorder::as_class ? 3 : 2; }
  int64_t in_channels() const override { return 3; }
  std::vector<std::string> class_names() const override;
  std::string description() const override;

  int64_t skipped() const { return skipped_; }  // listed stems dropped at construction
  ConversionCounts conversions() const { return conversions_->counts(); }
  const std::string& image_path(int64_t index) const { return entries_.at(static_cast<size_t>(index)).image; }
  const std::string& trimap_path(int64_t index) const { return entries_.at(static_cast<size_t>(index)).trimap; }

 private:
  struct Entry {
    std::string stem, image, trimap;
  };
  std::vector<std::string> read_split(const std::string& split) const;
  void validate_entries();

  std::string root_;
  PetsOptions options_;
  std::vector<Entry> entries_;
  LabelMap trimap_map_;
  int64_t skipped_ = 0;
  std::unique_ptr<ConversionLog> conversions_;
};

}  // namespace crfseg::data
