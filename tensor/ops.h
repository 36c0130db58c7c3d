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

#include <functional>
#include <utility>
#include <vector>

#include "kernels/replica_sync.h"
#include "tensor/tensor.h"

namespace crfseg {

class Generator;

// Hyper-parameter structs of the NN ops. They live in namespace crfseg (and
// are re-exported into ops) so that an unqualified conv2d(x, w, b, args)
// finds only the differentiable crfseg::conv2d: were they in crfseg::ops,
// argument-dependent lookup would also find ops::conv2d and the call would
// be ambiguous.
struct Conv2dArgs {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
};

struct Pool2dArgs {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;  // max pool only
  bool ceil_mode = false;
  bool count_include_pad = true;  // average pool only
};

enum class UpsampleMode { nearest, bilinear };

}  // namespace crfseg

namespace crfseg::ops {

using crfseg::Conv2dArgs;
using crfseg::Pool2dArgs;
using crfseg::UpsampleMode;

// ---- elementwise ----
// add_relu: max(a + b, 0) in one pass (a residual block's sum and its ReLU).
enum class BinaryOp { add, sub, mul, div, maximum, minimum, add_relu };
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
Tensor add_relu(const Tensor& a, const Tensor& b);  // max(a + b, 0)

// ---- in place (bump the version counter) ----
void fill_(const Tensor& t, double value);
void zero_(const Tensor& t);
void copy_(const Tensor& dst, const Tensor& src);  // src broadcasts to dst
void add_(const Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha*src
void mul_(const Tensor& dst, double s);

// ---- copies, casts, devices ----
Tensor contiguous(const Tensor& t);  // returns t itself when already contiguous
Tensor clone(const Tensor& t);       // always a fresh contiguous copy
Tensor to_dtype(const Tensor& t, DType dtype);  // float -> int saturates, NaN -> 0 (convert_element)
Tensor to_device(const Tensor& t, Device device);
// A CPU tensor copied to a CUDA device without waiting for the work queued
// there (otherwise as to_device; other moves are to_device's). to_device
// copies on the current stream and waits for the copy, so the host first
// waits for every kernel queued before it: a training loop that reads its
// next batch right after queuing a step's forward would idle until that
// forward ends before queuing the backward. Here the copy runs on the
// device's upload stream (cuda::upload_stream, from that stream's pool),
// the host waits for the copy alone, and the result is marked as used by
// the current stream (record_stream), so its memory is not handed to a
// later upload before the kernels queued after this call have read it.
// before_copy (CUDA only): called with the result once it is allocated and
// before it is filled, e.g. to hand it to a prefetch that starts from the
// host copy (CrfRnn::prefetch_lattices).
Tensor upload_ahead(const Tensor& t, Device device, const std::function<void(const Tensor&)>& before_copy = {});

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
// Confusion counts of two i64 tensors of one shape: out[t][p] (i64
// [classes, classes], on their device) counts the elements whose target is
// t and prediction p; targets equal to ignore_index are skipped. A pair with
// a class outside [0, classes) throws ValueError naming the first (flat
// index, target, prediction). On CUDA nothing is read back (a confusion
// matrix's update without the host waiting): a bad pair there makes every
// count 0 and is a deferred check (tensor/cuda_deferred.h), raised at this
// thread's next read from the device. With add_to (i64 [classes, classes]
// on their device) the result is add_to plus these counts, a new tensor:
// a running count in one launch more.
Tensor confusion_counts(const Tensor& predictions, const Tensor& targets, int64_t classes, int64_t ignore_index,
                        const Tensor& add_to = Tensor());
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
// [0, C); on CUDA that is a deferred check (tensor/cuda_deferred.h), raised
// at this thread's next read from the device, and the loss is NaN. Nothing
// there waits for the device: the backward reads the weight sum and the
// loss's gradient on it.
struct CrossEntropyForward {
  Tensor loss;       // 0-dim
  Tensor log_probs;  // log_softmax(logits, 1), kept for the backward
  double weight_sum;  // on the CPU; NaN on CUDA, where it stays on the device:
  Tensor sums;        // CUDA: f64 [3] (loss sum, weight sum, bad targets), read there by the backward
};
CrossEntropyForward cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& weight,
                                  int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& grad, const CrossEntropyForward& forward, const Tensor& target,
                              const Tensor& weight, int64_t ignore_index);

// ---- loss helpers (tensor/ops_loss.cpp) ----
// one_hot: i64 targets [N, d1, ...] -> [N, num_classes, d1, ...] of `dtype`
// (f32/f64), 1 at the target class and 0 elsewhere; positions equal to
// ignore_index are all-zero. Throws ValueError for a target outside [0, C).
Tensor one_hot(const Tensor& target, int64_t num_classes, DType dtype, int64_t ignore_index = -100);
// Mean binary cross-entropy of logits against targets in [0, 1] (same shape
// and dtype), with a weight pos_weight on the positive term, as
// torch.nn.functional.binary_cross_entropy_with_logits. Returns a 0-dim tensor.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, double pos_weight = 1.0);
Tensor binary_cross_entropy_with_logits_backward(const Tensor& grad, const Tensor& logits, const Tensor& target,
                                                 double pos_weight = 1.0);

// ---- neural-network ops on NCHW tensors (f32/f64, CPU) ----
// Each has a plain reference in kernels/ref/ and the tuned kernel in
// kernels/cpu/ under the same file stem; the raw op validates, makes inputs
// contiguous and calls the tuned kernel.

// Convolution : tensor/ops_conv.cpp, kernels/{ref,cpu}/conv2d.*
// x [N, C, H, W], weight [K, C, R, S], bias [K] or undefined.
// Output [N, K, P, Q] with P = (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args);
// max(conv2d(x, weight, bias), 0), the ReLU applied on the CPU to each block
// of the output while it is in cache (on a device, a separate pass). NaN
// passes through on both, as in batch_norm's fused ReLU, so the folded
// conv-BN-ReLU shows a non-finite output as the unfused layers do. Not
// differentiable: the inference-time conv-BN-ReLU fusion (layers/conv_bn.h)
// calls it only where no gradient is needed.
Tensor conv2d_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args);
// dL/dx given dL/dy [N, K, P, Q]; x_shape is the forward input's shape.
Tensor conv2d_backward_input(const Tensor& grad, const Tensor& weight, const Shape& x_shape, const Conv2dArgs& args);
// dL/dweight given dL/dy and the forward input x. With bias_grad not null,
// *bias_grad also gets dL/dbias, on the CPU from the same pass over dL/dy
// where the kernel allows (kernels/cpu/conv2d.h).
Tensor conv2d_backward_weight(const Tensor& grad, const Tensor& x, const Shape& weight_shape,
                              const Conv2dArgs& args, Tensor* bias_grad = nullptr);
// dL/dbias = sum of dL/dy over N, P, Q.
Tensor conv2d_backward_bias(const Tensor& grad);
// Transposed convolution: the adjoint of conv2d. x [N, C, H, W], weight
// [C, K, R, S] (torch's layout), output [N, K, Ho, Wo] with
// Ho = (H - 1) stride_h - 2 pad_h + dil_h (R - 1) + output_pad_h + 1.
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args,
                        int64_t output_pad_h = 0, int64_t output_pad_w = 0);
// Its gradients for x [N, C, H, W] and weight [C, K, R, S] given dL/dy.
Tensor conv_transpose2d_backward_input(const Tensor& grad, const Tensor& weight, const Shape& x_shape,
                                       const Conv2dArgs& args);
Tensor conv_transpose2d_backward_weight(const Tensor& grad, const Tensor& x, const Shape& weight_shape,
                                        const Conv2dArgs& args);

// Pooling : tensor/ops_pool.cpp, kernels/{ref,cpu}/pool2d.*
// Windows follow torch: out = floor((H + 2 pad - dil (k - 1) - 1) / stride) + 1
// (ceil with ceil_mode, where the last window must start inside the padded
// input). Max pool pads with -inf; average pool divides by the window size
// clipped to the padded input (count_include_pad) or to the real input.
struct MaxPool2dForward {
  Tensor y;
  Tensor indices;  // i64, same shape as y: flat h * W + w of the max inside its (n, c) plane,
                  // -1 (and y = -inf) for a window entirely in the padding (dilation only)
};
MaxPool2dForward max_pool2d(const Tensor& x, const Pool2dArgs& args);
// dx [N, C, H, W]: dx[n, c, indices[o]] += grad[o] for every output o of
// plane (n, c) (-1 skipped); any index inside its plane is valid.
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const Shape& x_shape);
// The same for the indices max_pool2d(x, args) wrote: each must also be -1
// or inside its own output's window, which lets CUDA gather one thread per
// input instead of scattering one thread per plane. check_indices = false
// skips checking that (a pass over the indices on the CPU; on CUDA a pass
// and a synchronisation to report it), for indices known to be the
// forward's, as autograd's saved ones are (version-checked); others then
// give unspecified gradients. Autograd calls this form.
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const Shape& x_shape, const Pool2dArgs& args,
                           bool check_indices = true);
Tensor avg_pool2d(const Tensor& x, const Pool2dArgs& args);
Tensor avg_pool2d_backward(const Tensor& grad, const Shape& x_shape, const Pool2dArgs& args);
// Adaptive average pooling to [out_h, out_w]: window i covers
// [floor(i H / out_h), ceil((i + 1) H / out_h)) as in torch. (1, 1) = global average.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad, const Shape& x_shape);

// Upsampling : tensor/ops_upsample.cpp, kernels/{ref,cpu}/upsample.*
// nearest: src = min(floor(dst * (in / out)), in - 1) evaluated in float32 as
// torch's 'nearest' does (not 'nearest-exact'), for f32 and f64 alike.
// bilinear: align_corners=false maps dst centre to src = (dst + 0.5) in/out - 0.5,
// clamped at 0; align_corners=true maps corners to corners.
Tensor upsample2d(const Tensor& x, int64_t out_h, int64_t out_w, UpsampleMode mode, bool align_corners = false);
Tensor upsample2d_backward(const Tensor& grad, const Shape& x_shape, UpsampleMode mode, bool align_corners = false);

// Batch norm : tensor/ops_batchnorm.cpp, kernels/{ref,cpu}/batchnorm.*
// Over dim 1 of x [N, C, ...]. weight/bias [C] or undefined (1 and 0).
// training: normalise with the batch statistics (biased variance), and when
// running_mean/var are defined update them in place with
// running = (1 - momentum) running + momentum stat (unbiased variance, as torch).
// eval: normalise with running_mean/var. fuse_relu applies max(0, .) to y.
// Throws ValueError when training with one value per channel (N * spatial
// == 1, as torch) and in eval mode without running statistics.
//
// sync (kernels/replica_sync.h): synchronised batch norm for data-parallel
// training. In training, the statistics are those of the union of every
// replica's batch (each replica passes its own x; the batch may be empty on
// some of them), and the backward's dx accounts for every replica's
// gradient; dweight/dbias stay this replica's share. Every replica must call
// the forward and the backward, in the same order. Ignored in eval mode.
struct BatchNormForward {
  Tensor y;
  Tensor mean;    // [C] statistics used (batch, or a copy of the running mean)
  Tensor invstd;  // [C] 1 / sqrt(var + eps)
};
BatchNormForward batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                            const Tensor& running_var, bool training, double momentum, double eps,
                            bool fuse_relu = false, kernels::ReplicaSync* sync = nullptr);
struct BatchNormGrads {
  Tensor dx;
  Tensor dweight;  // [C]; undefined when weight or x is undefined
  Tensor dbias;    // [C], the per-channel sum of the (masked) gradient; always returned
};
// `y` is the forward output (needed only with fuse_relu, to mask the gradient).
// x is needed in training; in eval mode dx does not depend on it, so it may
// be undefined (a frozen BatchNorm then need not keep its input alive).
BatchNormGrads batch_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight,
                                   const BatchNormForward& forward, bool training, bool fuse_relu,
                                   kernels::ReplicaSync* sync = nullptr);

// Dropout : tensor/ops_dropout.cpp
// Mask of the same dtype as `like` holding 0 or 1 / (1 - p), Bernoulli(1 - p)
// from `gen`, drawn sequentially so it does not depend on the thread count.
// p must be in [0, 1]; p == 1 gives an all-zero mask (ValueError otherwise).
Tensor dropout_mask(const Tensor& like, double p, Generator& gen);

// ---- joining ----
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);

}  // namespace crfseg::ops
