// softmax, log_softmax and the fused cross-entropy: validation and dispatch
// to kernels/cpu/softmax.* and kernels/cpu/cross_entropy.*.
#include <cmath>
#include <limits>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/softmax.h"
#include "tensor/cuda_deferred.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/softmax.h"
#endif

namespace crfseg::ops {

namespace {

// The [outer, C, inner] view of a contiguous tensor around `dim`.
struct ColumnView {
  int64_t outer = 1, C = 1, inner = 1;
};

ColumnView column_view(const Shape& shape, int64_t dim) {
  ColumnView v;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) v.outer *= shape[d];
    else if (d == dim) v.C = shape[d];
    else v.inner *= shape[d];
  }
  return v;
}

Tensor softmax_impl(const char* op, const Tensor& x_in, int64_t dim, bool log) {
  check_defined(op, x_in, "x");
  const Tensor x = contiguous(x_in);
  const ColumnView v = column_view(x.shape(), x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), op));
  Tensor y = Tensor::empty(x.shape(), x.options());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      kernels::cuda::softmax_forward(x.data<T>(), y.data<T>(), v.outer, v.C, v.inner, log, detail::stream_of(x));
      return;
    }
#endif
    check_cpu(op, x);
    kernels::cpu::softmax_forward(x.data<T>(), y.data<T>(), v.outer, v.C, v.inner, log);
  });
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl("log_softmax", x, dim, true); }

Tensor softmax_backward(const Tensor& grad, const Tensor& y_in, int64_t dim, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  CRFSEG_CHECK(grad.shape() == y_in.shape() && grad.dtype() == y_in.dtype(), ShapeError, op, ": grad ",
               grad.str(), " does not match output ", y_in.str());
  check_same_device(op, grad, y_in);
  const Tensor g = contiguous(grad), y = contiguous(y_in);
  const ColumnView v = column_view(y.shape(), y.dim() == 0 ? 0 : normalize_dim(dim, y.dim(), op));
  Tensor dx = Tensor::empty(y.shape(), y.options());
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (y.device().is_cuda()) {
      kernels::cuda::softmax_backward(g.data<T>(), y.data<T>(), dx.data<T>(), v.outer, v.C, v.inner, log,
                                      detail::stream_of(y));
      return;
    }
#endif
    check_cpu(op, y);
    kernels::cpu::softmax_backward(g.data<T>(), y.data<T>(), dx.data<T>(), v.outer, v.C, v.inner, log);
  });
  return dx;
}

namespace {

// Checks logits [N, C, ...] (or the forward's log-probabilities), target
// [N, ...] i64 and weight [C]; returns the column view.
ColumnView check_cross_entropy(const char* op, const Tensor& logits, const Tensor& target, const Tensor& weight) {
  check_defined(op, logits, "logits");
  check_defined(op, target, "target");
  check_same_device(op, logits, target);
  if (weight.defined()) check_same_device(op, logits, weight);
  CRFSEG_CHECK(logits.dim() >= 2, ShapeError, op, ": expected logits [N, C, ...], got ", shape_str(logits.shape()));
  CRFSEG_CHECK(target.dtype() == DType::i64, DTypeError, op, ": expected i64 class-index targets, got ",
               dtype_name(target.dtype()));
  Shape want = logits.shape();
  want.erase(want.begin() + 1);
  CRFSEG_CHECK(target.shape() == want, ShapeError, op, ": expected target of shape ", shape_str(want),
               " for logits ", shape_str(logits.shape()), ", got ", shape_str(target.shape()));
  if (weight.defined()) {
    CRFSEG_CHECK(weight.shape() == Shape{logits.size(1)} && weight.dtype() == logits.dtype(), ShapeError, op,
                 ": expected class weights [", logits.size(1), "] ", dtype_name(logits.dtype()), ", got ",
                 weight.str());
  }
  return column_view(logits.shape(), 1);
}

}  // namespace

CrossEntropyForward cross_entropy(const Tensor& logits_in, const Tensor& target_in, const Tensor& weight_in,
                                  int64_t ignore_index) {
  const ColumnView v = check_cross_entropy("cross_entropy", logits_in, target_in, weight_in);
  const Tensor logits = contiguous(logits_in), target = contiguous(target_in);
  const Tensor weight = weight_in.defined() ? contiguous(weight_in) : Tensor();
  CrossEntropyForward out;
  out.log_probs = Tensor::empty(logits.shape(), logits.options());
  out.loss = Tensor::empty({}, logits.options());
#ifdef CRFSEG_WITH_CUDA
  if (logits.device().is_cuda()) {
    // log_softmax, per-position terms, their sums and the loss, all on the
    // device: the host does not wait, and the backward reads the weight sum
    // there. A target outside [0, C) makes the loss NaN and is a deferred
    // check, located on the host (for the message) only when there is one.
    const int64_t P = v.outer * v.inner;
    const auto stream = detail::stream_of(logits);
    Tensor terms = Tensor::empty({3, P}, {DType::f64, logits.device()});
    const Tensor bad = Tensor::empty({}, {DType::i64, logits.device()});
    dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::softmax_forward(logits.data<T>(), out.log_probs.data<T>(), v.outer, v.C, v.inner, true, stream);
      kernels::cuda::cross_entropy_terms(out.log_probs.data<T>(), target.data<int64_t>(),
                                         weight.defined() ? weight.data<T>() : nullptr, v.outer, v.C, v.inner,
                                         ignore_index, terms.data<double>(), stream);
      out.sums = sum(terms, {1});
      kernels::cuda::cross_entropy_finish(out.sums.data<double>(), out.loss.data<T>(), bad.data<int64_t>(), stream);
    });
    out.weight_sum = std::numeric_limits<double>::quiet_NaN();
    const int64_t C = v.C;
    cuda::defer_check(logits.device().index, stream, bad.data<int64_t>(), [target, C, ignore_index](int64_t count) {
      if (count == 0) return;
      const std::vector<int64_t> t = target.to(Device::cpu()).to_vector<int64_t>();
      for (size_t p = 0; p < t.size(); ++p) {
        CRFSEG_CHECK(t[p] == ignore_index || (t[p] >= 0 && t[p] < C), ValueError, "cross_entropy: target ", t[p],
                     " at flat position ", p, " is outside [0, ", C, ") and is not ignore_index (", ignore_index,
                     ")");
      }
      throw ValueError(::crfseg::detail::concat_message("cross_entropy: ", count, " targets outside [0, ", C,
                                                        ") (changed since the loss was queued)"));
    });
    return out;
  }
#endif
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const auto sums = kernels::cpu::cross_entropy_forward(
        logits.data<T>(), target.data<int64_t>(), weight.defined() ? weight.data<T>() : nullptr,
        out.log_probs.data<T>(), v.outer, v.C, v.inner, ignore_index);
    CRFSEG_CHECK(sums.first_bad < 0, ValueError, "cross_entropy: target ",
                 target.data<int64_t>()[sums.first_bad], " at flat position ", sums.first_bad,
                 " is outside [0, ", v.C, ") and is not ignore_index (", ignore_index, ")");
    out.weight_sum = sums.weight_sum;
    // 0/0 = NaN when every position is ignored, matching torch.
    out.loss.data<T>()[0] = static_cast<T>(sums.weight_sum == 0.0 ? std::numeric_limits<double>::quiet_NaN()
                                                                   : sums.loss_sum / sums.weight_sum);
  });
  return out;
}

Tensor cross_entropy_backward(const Tensor& grad, const CrossEntropyForward& fwd, const Tensor& target_in,
                              const Tensor& weight_in, int64_t ignore_index) {
  // The raw op is public: a caller may pass other tensors than the forward saw.
  const char* op = "cross_entropy_backward";
  const ColumnView v = check_cross_entropy(op, fwd.log_probs, target_in, weight_in);
  check_defined(op, grad, "grad");  // read with item(): any device
  CRFSEG_CHECK(grad.numel() == 1, ShapeError, op, ": expected the loss's gradient (one element), got ",
               shape_str(grad.shape()));
  const Tensor target = contiguous(target_in);
  const Tensor weight = weight_in.defined() ? contiguous(weight_in) : Tensor();
  Tensor dx = Tensor::empty(fwd.log_probs.shape(), fwd.log_probs.options());
#ifdef CRFSEG_WITH_CUDA
  if (dx.device().is_cuda()) {
    // scale = g / W is formed by each thread from the device's values (the
    // loss's gradient, the forward's weight sum): no wait for the device.
    // A forward made elsewhere (sums undefined) gives its weight sum here.
    const Tensor g = contiguous(to_dtype(to_device(grad, dx.device()), dx.dtype()));
    const Tensor w_sum = fwd.sums.defined() ? to_device(slice(fwd.sums, 0, 1, 2), dx.device())
                                            : full({1}, fwd.weight_sum, {DType::f64, dx.device()});
    CRFSEG_CHECK(w_sum.dtype() == DType::f64, DTypeError, op, ": expected the forward's sums in f64, got ",
                 dtype_name(w_sum.dtype()));
    dispatch_float(dx.dtype(), "cross_entropy_backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::cross_entropy_backward(g.data<T>(), w_sum.data<double>(), fwd.log_probs.data<T>(),
                                            target.data<int64_t>(), weight.defined() ? weight.data<T>() : nullptr,
                                            dx.data<T>(), v.outer, v.C, v.inner, ignore_index, detail::stream_of(dx));
    });
    return dx;
  }
#endif
  dispatch_float(dx.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::cross_entropy_backward(static_cast<T>(grad.item()), fwd.log_probs.data<T>(),
                                         target.data<int64_t>(), weight.defined() ? weight.data<T>() : nullptr,
                                         fwd.weight_sum, dx.data<T>(), v.outer, v.C, v.inner, ignore_index);
  });
  return dx;
}

}  // namespace crfseg::ops
