// StackedFilter (see crf/stacked_filter.h).
#include "crf/stacked_filter.h"

#include <utility>

#include "tensor/error.h"

namespace crfseg::crf {

StackedFilter::StackedFilter(std::vector<std::unique_ptr<GaussianFilter>> parts) : parts_(std::move(parts)) {
  CRFSEG_CHECK(!parts_.empty(), ValueError, "StackedFilter: expected at least one filter, got none");
  for (size_t b = 0; b < parts_.size(); ++b) {
    CRFSEG_CHECK(parts_[b] != nullptr, ValueError, "StackedFilter: filter ", b, " is null");
    CRFSEG_CHECK(parts_[b]->feature_dim() == parts_.front()->feature_dim(), ValueError,
                 "StackedFilter: expected filters of one feature dimension (", parts_.front()->feature_dim(),
                 "), got ", parts_[b]->feature_dim(), " for filter ", b);
    num_points_ += parts_[b]->num_points();
  }
}

template <typename T>
void StackedFilter::run(const T* in, T* out, int64_t channels, bool transpose) const {
  // One part after another: each parallelises inside (OpenMP), and the
  // blocks are disjoint, so the result is each part's, in any order.
  int64_t row = 0;
  for (const std::unique_ptr<GaussianFilter>& part : parts_) {
    part->apply(in + row * channels, out + row * channels, channels, transpose);
    row += part->num_points();
  }
}

void StackedFilter::apply(const float* in, float* out, int64_t channels, bool transpose) const {
  run(in, out, channels, transpose);
}
void StackedFilter::apply(const double* in, double* out, int64_t channels, bool transpose) const {
  run(in, out, channels, transpose);
}

}  // namespace crfseg::crf
