// Subsets and splits (see subset.h).
#include "datasets/subset.h"

#include <algorithm>
#include <cmath>

#include "datasets/seeding.h"
#include "tensor/random.h"

namespace crfseg::data {

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices, std::string label)
    : base_(std::move(base)), indices_(std::move(indices)), label_(std::move(label)) {
  CRFSEG_CHECK(base_ != nullptr, ValueError, "SubsetDataset: base dataset is null");
  for (int64_t i : indices_) {
    CRFSEG_CHECK(i >= 0 && i < base_->size(), ValueError, "SubsetDataset: index ", i,
                 " out of range for a base dataset of ", base_->size(), " samples");
  }
}

Sample SubsetDataset::get(int64_t index) const {
  check_index(index, "SubsetDataset::get");
  return base_->get(indices_[static_cast<size_t>(index)]);
}

std::string SubsetDataset::description() const {
  return label_ + " of " + std::to_string(size()) + " samples of " + base_->description();
}

std::vector<int64_t> random_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  Generator gen(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[i], order[uniform_index(gen, i + 1)]);
  }
  return order;
}

TrainValSplit random_split(std::shared_ptr<const Dataset> dataset, double val_fraction, uint64_t seed) {
  CRFSEG_CHECK(dataset != nullptr, ValueError, "random_split: dataset is null");
  CRFSEG_CHECK(val_fraction > 0 && val_fraction < 1, ValueError, "random_split: expected val_fraction in (0, 1), got ",
               val_fraction);
  const int64_t n = dataset->size();
  CRFSEG_CHECK(n >= 2, ValueError, "random_split: need at least 2 samples to split, got ", n, " in ",
               dataset->description());
  const int64_t n_val = std::clamp<int64_t>(std::llround(static_cast<double>(n) * val_fraction), 1, n - 1);
  std::vector<int64_t> order = random_permutation(n, derive_seed(seed, SeedDomain::split, {static_cast<uint64_t>(n)}));
  std::vector<int64_t> val(order.begin(), order.begin() + n_val), train(order.begin() + n_val, order.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return {std::make_shared<SubsetDataset>(dataset, std::move(train), "train split"),
          std::make_shared<SubsetDataset>(dataset, std::move(val), "validation split")};
}

std::shared_ptr<const Dataset> range_subset(std::shared_ptr<const Dataset> dataset, int64_t begin, int64_t end) {
  CRFSEG_CHECK(dataset != nullptr, ValueError, "range_subset: dataset is null");
  const int64_t n = dataset->size();
  if (end < 0) end = n;
  CRFSEG_CHECK(0 <= begin && begin < end && end <= n, ValueError, "range_subset: expected 0 <= begin < end <= ", n,
               ", got [", begin, ", ", end, ")");
  std::vector<int64_t> indices;
  for (int64_t i = begin; i < end; ++i) indices.push_back(i);
  return std::make_shared<SubsetDataset>(dataset, std::move(indices),
                                         "range [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
}

}  // namespace crfseg::data
