// Loss helpers: one_hot and the fused binary cross-entropy with logits.
//
// BCE with logits x, targets t in [0, 1] and positive-class weight p, in the
// overflow-free form torch uses (softplus(-x) = log(1 + e^-|x|) + max(-x, 0)):
//   l  = (1 - t) x + c softplus(-x),      c = 1 + (p - 1) t
//   dl/dx = c sigmoid(x) - p t            (p = 1: sigmoid(x) - t)
// (The per-element rules are kernels/bce.h, shared with the CUDA kernels.)
// On the CPU the mean is summed in fixed chunks of kChunk elements, each in
// double, and the chunk sums added in order, so the result does not depend
// on the thread count; on CUDA the terms are averaged by the device sum
// (deterministic too), and the backward reads the loss's gradient on the
// device.
#include <cmath>
#include <vector>

#include "kernels/bce.h"
#include "tensor/cuda_deferred.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/loss.h"
#include "tensor/ops_cuda.h"
#endif

namespace crfseg::ops {

namespace {

constexpr int64_t kChunk = 4096;

void check_bce(const Tensor& logits, const Tensor& target, double pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  check_defined(op, logits, "logits");
  check_defined(op, target, "target");
  check_same_device(op, logits, target);
  CRFSEG_CHECK(logits.shape() == target.shape(), ShapeError, op, ": expected target of shape ",
               shape_str(logits.shape()), " (the logits'), got ", shape_str(target.shape()));
  CRFSEG_CHECK(logits.dtype() == target.dtype(), DTypeError, op, ": expected target of dtype ",
               dtype_name(logits.dtype()), " (the logits'), got ", dtype_name(target.dtype()));
  CRFSEG_CHECK(std::isfinite(pos_weight) && pos_weight >= 0, ValueError, op, ": invalid pos_weight ", pos_weight,
               " (expected a finite value >= 0)");
}

}  // namespace

Tensor one_hot(const Tensor& target_in, int64_t num_classes, DType dtype, int64_t ignore_index) {
  const char* op = "one_hot";
  check_defined(op, target_in, "target");
  CRFSEG_CHECK(target_in.dtype() == DType::i64, DTypeError, op, ": expected i64 class indices, got ",
               dtype_name(target_in.dtype()));
  CRFSEG_CHECK(target_in.dim() >= 1, ShapeError, op, ": expected target [N, ...], got a 0-d tensor");
  CRFSEG_CHECK(num_classes >= 1, ValueError, op, ": expected num_classes >= 1, got ", num_classes);
  // Before the device branch, so both devices accept the same dtypes.
  CRFSEG_CHECK(dtype == DType::f32 || dtype == DType::f64, DTypeError, op, ": expected dtype f32 or f64, got ",
               dtype_name(dtype));
  const Tensor target = contiguous(target_in);
  Shape shape = target.shape();
  shape.insert(shape.begin() + 1, num_classes);
#ifdef CRFSEG_WITH_CUDA
  if (target.device().is_cuda()) {
    // One kernel (kernels/cuda/loss.cu): a target outside [0, C) gives a
    // row of zeros and is counted; the count is a deferred check
    // (tensor/cuda_deferred.h), located on the host only when nonzero.
    // Nothing is uploaded or read back, so the host does not wait.
    const Device dev = target.device();
    const int64_t N = target.shape()[0], inner = target.numel() / std::max<int64_t>(N, 1);
    Tensor out = Tensor::empty(shape, {dtype, dev});
    const Tensor bad = zeros({}, {DType::i64, dev});
    const auto stream = detail::stream_of(target);
    dispatch_float(dtype, op, [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::one_hot(target.data<int64_t>(), N, num_classes, inner, ignore_index, out.data<T>(),
                             bad.data<int64_t>(), stream);
    });
    cuda::defer_check(dev.index, stream, bad.data<int64_t>(), [target, num_classes, ignore_index, op](int64_t count) {
      const std::vector<int64_t> t = target.to(Device::cpu()).to_vector<int64_t>();
      for (size_t i = 0; i < t.size(); ++i) {
        CRFSEG_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < num_classes), ValueError, op, ": target ", t[i],
                     " at flat index ", i, " is outside [0, ", num_classes, ")");
      }
      throw ValueError(::crfseg::detail::concat_message(op, ": ", count, " targets outside [0, ", num_classes,
                                                        ") (changed since the op was queued)"));
    });
    return out;
  }
#endif
  check_cpu(op, target);
  Tensor out = zeros(shape, {dtype});
  const int64_t N = target.shape()[0], inner = target.numel() / std::max<int64_t>(N, 1);
  const int64_t* t = target.data<int64_t>();
  dispatch_float(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t c = t[n * inner + i];
        if (c == ignore_index) continue;
        CRFSEG_CHECK(c >= 0 && c < num_classes, ValueError, op, ": target ", c, " at flat index ", n * inner + i,
                     " is outside [0, ", num_classes, ")");
        o[(n * num_classes + c) * inner + i] = T(1);
      }
    }
  });
  return out;
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits_in, const Tensor& target_in, double pos_weight) {
  check_bce(logits_in, target_in, pos_weight);
  const Tensor x = contiguous(logits_in), t = contiguous(target_in);
  const int64_t n = x.numel();
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    if (n == 0) return full({}, NAN, x.options());
    Tensor terms = Tensor::empty(x.shape(), x.options());
    dispatch_float(x.dtype(), "binary_cross_entropy_with_logits", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::bce_terms<T>(n, x.data<T>(), t.data<T>(), static_cast<T>(pos_weight), terms.data<T>(),
                                  detail::stream_of(x));
    });
    return mean(terms, {}, false);
  }
#endif
  check_cpu("binary_cross_entropy_with_logits", x);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  dispatch_float(x.dtype(), "binary_cross_entropy_with_logits", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* tp = t.data<T>();
    const T p = static_cast<T>(pos_weight);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
        s += static_cast<double>(kernels::bce_term(xp[i], tp[i], p));
      }
      partial[static_cast<size_t>(c)] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return scalar_tensor(n == 0 ? NAN : total / static_cast<double>(n), {x.dtype()});
}

Tensor binary_cross_entropy_with_logits_backward(const Tensor& grad, const Tensor& logits_in,
                                                 const Tensor& target_in, double pos_weight) {
  check_bce(logits_in, target_in, pos_weight);
  CRFSEG_CHECK(grad.defined() && grad.numel() == 1, ShapeError,
               "binary_cross_entropy_with_logits_backward: expected a scalar grad, got ",
               grad.defined() ? grad.str() : std::string("an undefined tensor"));
  const Tensor x = contiguous(logits_in), t = contiguous(target_in);
  Tensor dx = Tensor::empty(x.shape(), x.options());
  const int64_t n = x.numel();
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    check_same_device("binary_cross_entropy_with_logits_backward", x, grad);
    const Tensor g = contiguous(to_dtype(grad, x.dtype()));
    dispatch_float(x.dtype(), "binary_cross_entropy_with_logits_backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::bce_backward<T>(n, g.data<T>(), x.data<T>(), t.data<T>(), static_cast<T>(pos_weight),
                                     dx.data<T>(), detail::stream_of(x));
    });
    return dx;
  }
#endif
  check_cpu("binary_cross_entropy_with_logits_backward", x);
  dispatch_float(x.dtype(), "binary_cross_entropy_with_logits_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* tp = t.data<T>();
    T* d = dx.data<T>();
    const T p = static_cast<T>(pos_weight);
    const T scale = static_cast<T>(grad.item() / static_cast<double>(n));
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
    for (int64_t i = 0; i < n; ++i) d[i] = scale * kernels::bce_grad(xp[i], tp[i], p);
  });
  return dx;
}

}  // namespace crfseg::ops
