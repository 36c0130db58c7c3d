// Differentiable ops: the functions users call to build models.
//
// Each is the raw op from tensor/ops.h plus, when grad mode is on and an
// input requires grad, a backward Node recorded on the output. The backward
// math of each op is documented next to its Node in autograd/ops/<file>.cpp.
// Shapes, dtypes and errors are those of the raw op (see tensor/ops.h).
#pragma once

#include <memory>
#include <vector>

#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace crfseg {

// ---- elementwise (broadcasting) : autograd/ops/binary.cpp ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// max(a + b, 0) in one pass, saving only the output (relu(add(a, b)) keeps
// the sum for its backward): a residual block's join.
Tensor add_relu(const Tensor& a, const Tensor& b);

// ---- scalar : autograd/ops/scalar.cpp ----
Tensor add_scalar(const Tensor& x, double s);
Tensor mul_scalar(const Tensor& x, double s);
Tensor pow(const Tensor& x, double exponent);
Tensor rsub_scalar(const Tensor& x, double s);  // s - x
Tensor rdiv_scalar(const Tensor& x, double s);  // s / x

// ---- unary : autograd/ops/unary.cpp ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);

// ---- reductions (empty dims = all) : autograd/ops/reduce.cpp ----
Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);

// ---- linear algebra : autograd/ops/matmul.cpp ----
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- views and copies : autograd/ops/views.cpp ----
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor contiguous(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType dtype);  // float <-> float casts carry gradients

// ---- softmax family : autograd/ops/softmax.cpp ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

struct CrossEntropyOptions {
  Tensor weight;                // [C] class weights; undefined = all 1
  int64_t ignore_index = -100;  // targets equal to this are skipped (torch's default)
};
// Mean softmax cross-entropy of logits [N, C, ...] against i64 targets
// [N, ...] (see ops::cross_entropy). Returns a 0-dim tensor.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options = {});

// ---- losses : autograd/ops/loss.cpp ----
// Mean binary cross-entropy of logits against float targets in [0, 1] of the
// same shape (see ops::binary_cross_entropy_with_logits). 0-dim.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, double pos_weight = 1.0);

struct DiceOptions {
  int64_t ignore_index = -100;     // targets equal to this count for no class
  double smooth = 1.0;             // s in (2I + s) / (S + s)
  bool include_background = true;  // false: average over classes 1..C-1 only
};
// Soft Dice loss, 1 - mean_c dice_c, of logits [N, C, ...] against i64
// targets [N, ...]; softmax over C, or sigmoid when C == 1 (targets 0/1).
// Per-class sums run over the whole batch. 0-dim.
Tensor dice_loss(const Tensor& logits, const Tensor& target, const DiceOptions& options = {});

// ---- convolution : autograd/ops/conv.cpp ----
// bias may be undefined. Gradients flow to x, weight and bias.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::Conv2dArgs& args = {});
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::Conv2dArgs& args = {},
                        int64_t output_pad_h = 0, int64_t output_pad_w = 0);

// ---- pooling : autograd/ops/pool.cpp ----
Tensor max_pool2d(const Tensor& x, const ops::Pool2dArgs& args);
Tensor avg_pool2d(const Tensor& x, const ops::Pool2dArgs& args);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// ---- upsampling : autograd/ops/upsample.cpp ----
Tensor upsample2d(const Tensor& x, int64_t out_h, int64_t out_w, ops::UpsampleMode mode, bool align_corners = false);

// ---- batch norm : autograd/ops/batchnorm.cpp ----
// Gradients flow to x, weight and bias; the running statistics are buffers
// updated in place (training) and never require grad. sync: synchronised
// batch norm over data-parallel replicas (see ops::batch_norm); then the
// backward is a collective that every replica must reach.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5,
                  bool fuse_relu = false, std::shared_ptr<kernels::ReplicaSync> sync = nullptr);

// ---- dropout : autograd/ops/dropout.cpp ----
// Identity (returns x itself) when !training or p == 0; else x * mask with
// mask = ops::dropout_mask(x, p, gen), 0 or 1 / (1 - p). p in [0, 1].
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

// ---- joining : autograd/ops/join.cpp ----
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

// ---- operators ----
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& x, double s) { return add_scalar(x, s); }
inline Tensor operator+(double s, const Tensor& x) { return add_scalar(x, s); }
inline Tensor operator-(const Tensor& x, double s) { return add_scalar(x, -s); }
inline Tensor operator-(double s, const Tensor& x) { return rsub_scalar(x, s); }
inline Tensor operator*(const Tensor& x, double s) { return mul_scalar(x, s); }
inline Tensor operator*(double s, const Tensor& x) { return mul_scalar(x, s); }
inline Tensor operator/(const Tensor& x, double s) { return mul_scalar(x, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& x) { return rdiv_scalar(x, s); }

}  // namespace crfseg
