// ReducePlan construction (see reduce.h).
#include "kernels/cpu/reduce.h"

#include <algorithm>

namespace crfseg::kernels::cpu {

int64_t ReducePlan::outputs() const {
  int64_t n = 1;
  for (int64_t s : kept_shape) n *= s;
  return n;
}

int64_t ReducePlan::block() const {
  int64_t n = 1;
  for (int64_t s : reduced_shape) n *= s;
  return n;
}

int64_t ReducePlan::base_offset(int64_t o) const {
  int64_t offset = 0;
  for (int64_t d = static_cast<int64_t>(kept_shape.size()) - 1; d >= 0; --d) {
    offset += (o % kept_shape[d]) * kept_strides[d];
    o /= kept_shape[d];
  }
  return offset;
}

ReducePlan make_reduce_plan(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                            const std::vector<int64_t>& sorted_dims) {
  ReducePlan p;
  for (size_t d = 0; d < shape.size(); ++d) {
    const bool reduced = std::binary_search(sorted_dims.begin(), sorted_dims.end(), static_cast<int64_t>(d));
    (reduced ? p.reduced_shape : p.kept_shape).push_back(shape[d]);
    (reduced ? p.reduced_strides : p.kept_strides).push_back(strides[d]);
  }
  return p;
}

}  // namespace crfseg::kernels::cpu
