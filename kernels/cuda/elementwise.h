// CUDA elementwise kernels over strided, broadcast operands (geometry.h):
// the GPU side of tensor/ops_elementwise.cpp and the copies and casts of
// tensor/ops_copy.cpp. One thread per output element in a grid-stride loop.
// Operand 0 of the Geometry is the output, then the inputs in argument order.
// The enums list the ops in the same order as their tensor/ops.h twins.
// Test: tests/cuda/test_cuda_elementwise.cpp (against the CPU ops; needs a device).
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"
#include "tensor/half.h"

namespace crfseg::kernels::cuda {

enum class BinaryKind { add, sub, mul, div, maximum, minimum, add_relu };
enum class UnaryKind { neg, exp, log, sqrt, abs, relu, sigmoid, tanh, square, reciprocal };
enum class ScalarKind { add, mul, pow, rsub, rdiv };
enum class CompareKind { eq, ne, lt, le, gt, ge };
enum class UnaryGradKind { exp, log, sqrt, abs, relu, sigmoid, tanh, square, reciprocal };

// T is float or double unless noted.
template <typename T>
void binary(BinaryKind op, const Geometry& g, T* out, const T* a, const T* b, Stream stream);
template <typename T>
void unary(UnaryKind op, const Geometry& g, T* out, const T* x, Stream stream);
template <typename T>
void scalar(ScalarKind op, const Geometry& g, T* out, const T* x, T s, Stream stream);
// T: any of float, double, int32_t, int64_t, uint8_t, float16, bfloat16
// (the 16-bit floats compared as float).
template <typename T>
void compare(CompareKind op, const Geometry& g, uint8_t* out, const T* a, const T* b, Stream stream);
template <typename T>
void where(const Geometry& g, T* out, const uint8_t* mask, const T* a, const T* b, Stream stream);
template <typename T>
void unary_backward(UnaryGradKind op, const Geometry& g, T* out, const T* grad, const T* x, const T* y,
                    Stream stream);
// out = grad * s * x^(s-1)
template <typename T>
void pow_backward(const Geometry& g, T* out, const T* grad, const T* x, T s, Stream stream);
// out = crfseg::convert_element<TD>(src) (tensor/dtype.h: float -> int
// saturates, NaN -> 0; 16-bit floats through float). TD and TS: any of the
// seven element types.
template <typename TD, typename TS>
void copy(const Geometry& g, TD* out, const TS* src, Stream stream);
// out = value (any element type; out may be strided).
template <typename T>
void fill(const Geometry& g, T* out, T value, Stream stream);
// dst = dst + alpha * src (operands 0 and 1 are both dst).
template <typename T>
void add_scaled(const Geometry& g, T* dst, const T* src, T alpha, Stream stream);

}  // namespace crfseg::kernels::cuda
