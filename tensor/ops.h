// Raw tensor ops: no autograd, no graph. The differentiable versions that
// users normally call are in autograd/functions.h and are built on these.
//
// Conventions:
//  - Binary ops broadcast (numpy rules) and require equal dtypes and devices.
//  - Results are new contiguous tensors unless the op is a view (documented).
//  - In-place ops end in '_' and bump the storage version counter.
//  - Unsupported dtype/device/shape -> DTypeError/NotImplementedError/ShapeError
//    naming the op, the expected and the actual.
// CPU ops run on f32 and f64; the casts and copies also take i32/i64/u8.
#pragma once

#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::ops {

// ---- elementwise ----
enum class BinaryOp { add, sub, mul, div, maximum, minimum };
enum class UnaryOp { neg, exp, log, sqrt, abs, relu, sigmoid, tanh, square, reciprocal };
enum class ScalarOp { add, mul, pow, rsub, rdiv };  // x+s, x*s, x^s, s-x, s/x
enum class CompareOp { eq, ne, lt, le, gt, ge };
// Derivative of a UnaryOp, given the op's input x and output y: dx = g * f'(x).
enum class UnaryGradOp { exp, log, sqrt, abs, relu, sigmoid, tanh, square, reciprocal };

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary(UnaryOp op, const Tensor& x);
Tensor scalar_op(ScalarOp op, const Tensor& x, double s);
Tensor compare(CompareOp op, const Tensor& a, const Tensor& b);  // u8 mask, broadcast
// g * f'(x) for the given op; `x` is the op's input and `y` its output.
Tensor unary_backward(UnaryGradOp op, const Tensor& grad, const Tensor& x, const Tensor& y);
// grad * s * x^(s-1), the derivative of x^s.
Tensor pow_scalar_backward(const Tensor& grad, const Tensor& x, double s);
// where(mask, a, b): elementwise select, all broadcast together (mask is u8).
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

// ---- in place (bump the version counter) ----
void fill_(const Tensor& t, double value);
void zero_(const Tensor& t);
void copy_(const Tensor& dst, const Tensor& src);  // src broadcasts to dst
void add_(const Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha*src
void mul_(const Tensor& dst, double s);

// ---- copies, casts, devices ----
Tensor contiguous(const Tensor& t);  // returns t itself when already contiguous
Tensor clone(const Tensor& t);       // always a fresh contiguous copy
Tensor to_dtype(const Tensor& t, DType dtype);
Tensor to_device(const Tensor& t, Device device);

// ---- views (share storage) ----
Tensor reshape(const Tensor& t, Shape shape);  // a view when possible, else a copy; one -1 allowed
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& t, int64_t d0, int64_t d1);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor expand(const Tensor& t, const Shape& shape);  // broadcast view, stride 0
Tensor flatten(const Tensor& t, int64_t start_dim = 0, int64_t end_dim = -1);

// ---- reductions over any set of dims (empty = all dims) ----
Tensor sum(const Tensor& t, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& t, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor max(const Tensor& t, std::vector<int64_t> dims = {}, bool keepdim = false);
// Max with the position of the (first) maximum inside each reduced block, as
// a row-major index over the reduced dims (i64). Used by max's backward.
std::pair<Tensor, Tensor> max_with_index(const Tensor& t, std::vector<int64_t> dims, bool keepdim);
// Scatters grad (shape of max's output) to the positions in `index`.
Tensor max_backward(const Tensor& grad, const Tensor& index, const Shape& input_shape,
                    std::vector<int64_t> dims, bool keepdim);
// Index of the first maximum along `dim` (i64).
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);
// Sums `t` down to `shape`, the inverse of broadcasting (used by backward of broadcast ops).
Tensor sum_to(const Tensor& t, const Shape& shape);
// Sorted, normalised, de-duplicated dims; empty input means all dims.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op);

// ---- linear algebra ----
// a @ b for a [..., M, K] and b [..., K, N] (leading dims broadcast), or 2-D.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- softmax family (any dim; the input is made contiguous) ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Gradient of softmax (log=false) or log_softmax (log=true) given its output y.
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, bool log);

// Fused softmax cross-entropy over dim 1 of logits [N, C, d1, ...] with
// integer targets [N, d1, ...] (i64), optional class weights [C] (undefined =
// all 1), positions whose target equals ignore_index skipped; mean reduction
// weighted as in torch.nn.functional.cross_entropy (NaN when every position
// is ignored, as there). Throws ValueError naming the first target outside
// [0, C).
struct CrossEntropyForward {
  Tensor loss;       // 0-dim
  Tensor log_probs;  // log_softmax(logits, 1), kept for the backward
  double weight_sum;
};
CrossEntropyForward cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& weight,
                                  int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& grad, const CrossEntropyForward& forward, const Tensor& target,
                              const Tensor& weight, int64_t ignore_index);

// ---- joining ----
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);

}  // namespace crfseg::ops
