// Shapes and strides, outermost dimension first (row-major, NCHW), as in PyTorch.
//
// Strides are counted in elements, not bytes. A dimension of size 1 may have
// any stride; broadcasting gives a dimension stride 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crfseg {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3, 4]"

// Numpy broadcasting of two shapes (aligned at the right). Throws ShapeError
// naming `op` when a pair of sizes is neither equal nor 1.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Strides that read a tensor of (shape, strides) as if it had shape `target`
// (a broadcast of it): missing leading dims and size-1 dims get stride 0.
Strides broadcast_strides(const Shape& shape, const Strides& strides, const Shape& target);

// Maps dim in [-ndim, ndim) to [0, ndim); throws ShapeError naming `op`.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace crfseg
