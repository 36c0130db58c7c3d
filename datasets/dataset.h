// Dataset: the interface every data source implements, and what a sample is.
//
// A Sample is one image and its label mask:
//   image  [C, H, W] f32, normalised (datasets/normalize.h)
//   mask   [H, W] i64, class indices in [0, num_classes()), or ignore_index()
//          (-100, the cross-entropy default) for pixels that count for nothing
//   name   a stable identifier (file stem, "slice_0042", "synthetic_17")
//
// Contract for implementations, relied on by the DataLoader's worker threads:
//   - get(i) is const and safe to call from several threads at once;
//   - get(i) returns the same sample every time (a pure function of i and the
//     construction options), so epochs and resumed runs see identical data.
// Errors: get() throws ValueError for an index out of range, and IOError /
// ShapeError / ValueError naming the file for unreadable or inconsistent data.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::data {

// The mask value for ignored pixels; equal to CrossEntropyOptions::ignore_index's default.
inline constexpr int64_t kIgnoreIndex = -100;

struct Sample {
  Tensor image;  // [C, H, W] f32
  Tensor mask;   // [H, W] i64
  std::string name;
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index) const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int64_t in_channels() const = 0;
  // One name per class, in class-index order.
  virtual std::vector<std::string> class_names() const = 0;
  virtual int64_t ignore_index() const { return kIgnoreIndex; }
  // One line for logs, e.g. "pets '/data/pets' trainval: 3680 images, 3 classes".
  virtual std::string description() const = 0;

 protected:
  // Throws ValueError "<op>: index i out of range for a dataset of n samples".
  void check_index(int64_t index, const char* op) const;
};

// Where datasets report what they skipped or converted. The default prints
// "crfseg: warning: <message>" to stderr; tests install a collector.
using WarningSink = std::function<void(const std::string&)>;
WarningSink stderr_warnings();

}  // namespace crfseg::data
