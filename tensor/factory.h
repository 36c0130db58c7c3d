// Tensor factories: empty/zeros/ones/full/arange and copies from host vectors.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace crfseg {

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
// A 0-dim tensor holding `value`.
Tensor scalar_tensor(double value, TensorOptions options = {});
// [start, start+step, ...) up to but excluding `end`; step may be negative, not 0.
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = {});

Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

// Copies host values into a new tensor of the given shape (dtype from T).
// Throws ShapeError when values.size() != numel(shape).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

}  // namespace crfseg
