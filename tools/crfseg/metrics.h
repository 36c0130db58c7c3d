// Segmentation metrics from a confusion matrix, accumulated over batches.
//
// counts[t][p] = number of pixels of true class t predicted as p (pixels
// whose target is ignore_index are skipped). From it, per class c:
//   IoU_c  = TP / (TP + FP + FN)        Dice_c = 2 TP / (2 TP + FP + FN)
// with TP = counts[c][c], FP = column sum - TP, FN = row sum - TP, and
//   pixel accuracy = trace / total.
// A class with TP + FP + FN == 0 (absent from both prediction and target)
// has no IoU/Dice: it is reported as NaN and left out of the means, as in
// torchmetrics' and scikit-learn's "ignore absent classes" convention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::app {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes, int64_t ignore_index = -100);

  // predictions and targets: i64 tensors of the same shape (e.g. [N, H, W]);
  // throws ShapeError/DTypeError/ValueError (a class outside [0, C)).
  void add(const Tensor& predictions, const Tensor& targets);
  // The argmax over dim 1 of logits [N, C, H, W], then add().
  void add_logits(const Tensor& logits, const Tensor& targets);
  void merge(const ConfusionMatrix& other);
  void reset();

  int64_t num_classes() const { return classes_; }
  int64_t count(int64_t truth, int64_t predicted) const { return counts_[truth * classes_ + predicted]; }
  int64_t total() const;
  // The raw counts, row-major [truth][predicted], e.g. to checkpoint a
  // partial epoch; set_counts throws ValueError for a wrong length.
  const std::vector<int64_t>& counts() const { return counts_; }
  void set_counts(const std::vector<int64_t>& counts);

  double pixel_accuracy() const;  // NaN when empty
  double iou(int64_t c) const;
  double dice(int64_t c) const;
  double mean_iou() const;   // over classes with a defined IoU
  double mean_dice() const;

  // A markdown table: one row per class (name, IoU, Dice, pixels), then the means.
  std::string table(const std::vector<std::string>& class_names) const;
  // CSV: a header "truth\\predicted,<names>", then one row per true class.
  std::string csv(const std::vector<std::string>& class_names) const;

 private:
  int64_t classes_;
  int64_t ignore_index_;
  std::vector<int64_t> counts_;
};

}  // namespace crfseg::app
