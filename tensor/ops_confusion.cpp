// Confusion counts (ops::confusion_counts): the CPU loop below is the
// reference; CUDA counts on the device (kernels/cuda/confusion.cu) and
// reads nothing back: a bad pair is a deferred check.
#include "tensor/cuda_deferred.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/confusion.h"
#endif

namespace crfseg::ops {

namespace {

[[noreturn]] void throw_outside(int64_t classes, int64_t i, int64_t target, int64_t prediction) {
  throw ValueError(::crfseg::detail::concat_message("confusion_counts: class outside [0, ", classes,
                                                    ") at flat index ", i, ": target ", target, ", prediction ",
                                                    prediction));
}

}  // namespace

Tensor confusion_counts(const Tensor& predictions, const Tensor& targets, int64_t classes, int64_t ignore_index,
                        const Tensor& add_to) {
  const char* op = "confusion_counts";
  check_defined(op, predictions, "predictions");
  check_defined(op, targets, "targets");
  CRFSEG_CHECK(predictions.dtype() == DType::i64 && targets.dtype() == DType::i64, DTypeError, op,
               ": expected i64 predictions and targets, got ", dtype_name(predictions.dtype()), " and ",
               dtype_name(targets.dtype()));
  CRFSEG_CHECK(predictions.shape() == targets.shape(), ShapeError, op, ": predictions ",
               shape_str(predictions.shape()), " and targets ", shape_str(targets.shape()), " differ in shape");
  check_same_device(op, predictions, targets);
  CRFSEG_CHECK(classes >= 1 && classes <= 65536, ValueError, op,
               ": expected between 1 and 65536 classes, got ", classes);
  if (add_to.defined()) {
    CRFSEG_CHECK(add_to.dtype() == DType::i64 && add_to.shape() == (Shape{classes, classes}), ShapeError, op,
                 ": expected add_to i64 [", classes, ", ", classes, "], got ", add_to.str());
    check_same_device(op, predictions, add_to);
  }
  const Tensor p = contiguous(predictions), t = contiguous(targets);
  const Tensor acc = add_to.defined() ? contiguous(add_to) : Tensor();
  const int64_t n = p.numel(), bins = classes * classes;
#ifdef CRFSEG_WITH_CUDA
  if (p.device().is_cuda()) {
    const Tensor raw = zeros({bins + 1}, {DType::i64, p.device()});  // the last: the first bad pair (header)
    const auto stream = detail::stream_of(p);
    kernels::cuda::confusion_counts(p.data<int64_t>(), t.data<int64_t>(), n, classes, ignore_index,
                                    raw.data<int64_t>(), stream);
    Tensor out = Tensor::empty({classes, classes}, {DType::i64, p.device()});
    kernels::cuda::confusion_finish(raw.data<int64_t>(), bins, acc.defined() ? acc.data<int64_t>() : nullptr,
                                    out.data<int64_t>(), stream);
    cuda::defer_check(p.device().index, stream, raw.data<int64_t>() + bins, [p, t, n, classes](int64_t last) {
      if (last <= 0) return;
      const int64_t i = n - last;  // the pair's values, read back for the message
      const auto at = [&](const Tensor& x) { return to_device(slice(reshape(x, {n}), 0, i, i + 1), Device::cpu()); };
      throw_outside(classes, i, at(t).data<int64_t>()[0], at(p).data<int64_t>()[0]);
    });
    return out;
  }
#endif
  check_cpu(op, p);
  Tensor out = acc.defined() ? clone(acc) : zeros({classes, classes}, {DType::i64, Device::cpu()});
  int64_t* counts = out.data<int64_t>();
  const int64_t* pp = p.data<int64_t>();
  const int64_t* tp = t.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (tp[i] == ignore_index) continue;
    if (tp[i] < 0 || tp[i] >= classes || pp[i] < 0 || pp[i] >= classes) throw_outside(classes, i, tp[i], pp[i]);
    ++counts[tp[i] * classes + pp[i]];
  }
  return out;
}

}  // namespace crfseg::ops
