// Label images: reading them, and mapping their raw values to class indices.
//
// Label (mask) files hold one value per pixel. Grayscale PNG/TIFF/PGM is the
// expected form; a colour file whose channels are all equal (gray saved as
// RGB) is accepted, an alpha channel is ignored, and anything else, notably a
// palette PNG (which stb expands to colours, losing the indices), is
// rejected with a message saying how to save the mask.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/image_io.h"

namespace crfseg::data {

// One channel of raw values; IOError naming `op` and the path otherwise.
Image load_label_image(const std::string& path, const char* op);
// The same check and reduction for an image already decoded from `source`
// (a path, or a description such as "'stack.tif' page 3").
Image to_label_channel(const Image& image, const std::string& source, const char* op);

// A lookup from raw label values (0..65535) to class indices or kIgnoreIndex.
class LabelMap {
 public:
  LabelMap();                                   // maps nothing
  static LabelMap identity(int64_t num_classes);  // v -> v for v < num_classes
  LabelMap& set(int64_t value, int64_t class_index);

  // [H, W] i64. A value without a mapping throws ValueError naming `source`,
  // the value, its pixel and the mapping (describe()).
  Tensor apply(const Image& labels, const std::string& source) const;
  std::string describe() const;  // "0->0, 1->1, 255->ignore"

 private:
  std::vector<int64_t> table_;
};

// How folder and micro-CT masks are read, decided once from the histogram of
// raw values over all label images of the dataset (histogram[v] = pixel count):
//   - binary 0/255 masks: when the values are exactly {0, 255} or {255} (and
//     num_classes is 0 or 2), 255 is class 1;
//   - otherwise values are class indices: num_classes = max value + 1 (at
//     least 2) when num_classes is 0, and a value >= num_classes is a
//     ValueError naming `what`, the value and its pixel count.
// ignore_value >= 0 names a raw value that becomes kIgnoreIndex (e.g. 255
// for VOC-style borders); it is left out of the inference.
struct LabelRule {
  int64_t num_classes = 0;
  LabelMap map;
  bool binary_255 = false;
};
LabelRule infer_label_rule(const std::vector<int64_t>& histogram, int64_t num_classes, int64_t ignore_value,
                           const std::string& what);

// Adds an image's values to a 65536-bin histogram.
void accumulate_histogram(const Image& image, std::vector<int64_t>& histogram);

}  // namespace crfseg::data
