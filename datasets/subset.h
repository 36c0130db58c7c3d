// Subsets and deterministic splits of a dataset.
//
// A SubsetDataset is a view: sample i is base->get(indices[i]). Splits are
// pure functions of their arguments (and seed), so a train/validation split
// made in one run is the same in the next, and in a resumed run.
#pragma once

#include <memory>
#include <vector>

#include "datasets/dataset.h"

namespace crfseg::data {

class SubsetDataset : public Dataset {
 public:
  // Throws ValueError for a null base or an index outside [0, base->size()).
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices, std::string label = "subset");

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return base_->num_classes(); }
  int64_t in_channels() const override { return base_->in_channels(); }
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  int64_t ignore_index() const override { return base_->ignore_index(); }
  std::string description() const override;

  const std::vector<int64_t>& indices() const { return indices_; }
  const Dataset& base() const { return *base_; }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
  std::string label_;
};

// A uniformly random permutation of 0..n-1 (Fisher-Yates), a pure function of
// (n, seed). The DataLoader's shuffle uses it too.
std::vector<int64_t> random_permutation(int64_t n, uint64_t seed);

struct TrainValSplit {
  std::shared_ptr<const Dataset> train, val;
};

// Shuffles the indices with `seed` and puts round(n * val_fraction) of them
// (at least 1 and at most n - 1 when n >= 2) in validation; both subsets list
// their indices in ascending order. Throws ValueError for val_fraction outside
// (0, 1) or a dataset of fewer than 2 samples.
TrainValSplit random_split(std::shared_ptr<const Dataset> dataset, double val_fraction, uint64_t seed);

// The samples [begin, end) in order (e.g. a range of slices). end = -1 means size().
std::shared_ptr<const Dataset> range_subset(std::shared_ptr<const Dataset> dataset, int64_t begin, int64_t end = -1);

}  // namespace crfseg::data
