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
//
// Boundary accuracy: boundary_band_targets() keeps only the pixels near a
// change of the true label (the "trimap" band of Kohli et al. 2009, used by
// DeepLab to measure what a dense CRF adds at object edges); a confusion
// matrix fed those targets gives the mean IoU inside the band.
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
  // Counted on the predictions' device (ops::confusion_counts), targets
  // moved there if they are elsewhere. On a GPU the counts stay there,
  // summed, until they are read (count(), counts(), the metrics, merge()):
  // a training step adds its batch without waiting for the device. A bad
  // class found there is raised at that read, or at any earlier read from
  // the device (tensor/cuda_deferred.h), and its batch adds nothing.
  void add(const Tensor& predictions, const Tensor& targets);
  // The argmax over dim 1 of logits [N, C, H, W], then add().
  void add_logits(const Tensor& logits, const Tensor& targets);
  void merge(const ConfusionMatrix& other);
  void reset();

  int64_t num_classes() const { return classes_; }
  int64_t count(int64_t truth, int64_t predicted) const { return counts()[truth * classes_ + predicted]; }
  int64_t total() const;
  // The raw counts, row-major [truth][predicted], e.g. to checkpoint a
  // partial epoch; set_counts throws ValueError for a wrong length.
  const std::vector<int64_t>& counts() const {
    if (on_device_.defined()) fetch();
    return counts_;
  }
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
  void fetch() const;  // adds on_device_ into counts_ (one copy to the host)

  int64_t classes_;
  int64_t ignore_index_;
  mutable std::vector<int64_t> counts_;
  // Counts added on a GPU and not yet read: i64 [C, C], replaced (never
  // written in place) by each add, so copies of the matrix may share it.
  mutable Tensor on_device_;
};

// targets [..., H, W] (i64) with every pixel outside the boundary band set to
// ignore_index. A pixel is in the band when the (2 width + 1)^2 square around
// it (clipped at the image's edges) holds a true label other than its own;
// ignored pixels are neither in the band nor count as a different label.
// width 0 keeps no pixel. Throws ValueError for width < 0, DTypeError for a
// non-i64 tensor, ShapeError for fewer than 2 dims.
Tensor boundary_band_targets(const Tensor& targets, int64_t width, int64_t ignore_index = -100);

}  // namespace crfseg::app
