// dropout_mask: the random keep-and-rescale mask of (inverted) dropout.
//
// Element k, in row-major order, takes the k-th 32-bit draw u of the
// Generator and is kept when u / 2^32 < 1 - p, so P(keep) = 1 - p to within
// 2^-32. Kept elements hold 1 / (1 - p), dropped ones 0, so E[x * mask] = x
// (torch's scaling). The draws are made one after another on one thread:
// the mask depends only on the generator's state, never on the thread
// count, and the generator advances by exactly numel draws.
// p == 1 keeps nothing; the mask is all zeros and 1 / 0 is never formed.
#include "tensor/dispatch.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace crfseg::ops {

Tensor dropout_mask(const Tensor& like, double p, Generator& gen) {
  const char* op = "dropout_mask";
  check_defined(op, like, "like");
  if (like.device().is_cuda()) {
    // Drawn on the host from the same sequential stream, so a CUDA run uses
    // the very mask a CPU run would (one host-to-device copy per call).
    return to_device(dropout_mask(Tensor::empty(like.shape(), {like.dtype()}), p, gen), like.device());
  }
  CRFSEG_CHECK(p >= 0.0 && p <= 1.0, ValueError, op, ": expected a drop probability p in [0, 1], got ", p);
  Tensor mask = Tensor::empty(like.shape(), like.options());
  dispatch_float(like.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const double keep = 1.0 - p;
    const T scale = p < 1.0 ? static_cast<T>(1.0 / keep) : T(0);
    constexpr double kTwoToMinus32 = 1.0 / 4294967296.0;
    T* m = mask.data<T>();
    const int64_t n = mask.numel();
    for (int64_t k = 0; k < n; ++k) {
      const double u = static_cast<double>(gen.next_u32()) * kTwoToMinus32;  // exact, in [0, 1)
      m[k] = u < keep ? scale : T(0);
    }
  });
  return mask;
}

}  // namespace crfseg::ops
