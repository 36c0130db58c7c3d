// grad_norm / clip_grad_norm_ / clip_grads_with_norm_ (see clip_grad.h). The norm is a reduction in
// double over fixed 4096-element blocks: blocks run in parallel and their
// partial results are combined in block order, so the value is the same for
// any OpenMP thread count (a plain `reduction(+:)` would not be).
#include "layers/optim/clip_grad.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/autograd_meta.h"
#include "layers/optim/optimizer.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace crfseg::optim {

namespace {

enum class NormKind { l1, l2, linf, lp };

// max that propagates NaN (as torch's max does): once NaN, always NaN.
double nan_max(double acc, double a) { return (a > acc || std::isnan(a)) && !std::isnan(acc) ? a : acc; }

// Sum of |x|^p (or max |x| for linf) over n contiguous elements.
template <typename T>
double reduce_abs_pow(const T* x, int64_t n, NormKind kind, double p) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    double acc = 0.0;
    switch (kind) {  // one loop per kind keeps the inner loops branch-free
      case NormKind::l1:
        for (int64_t i = lo; i < hi; ++i) acc += std::abs(static_cast<double>(x[i]));
        break;
      case NormKind::l2:
        for (int64_t i = lo; i < hi; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
        break;
      case NormKind::linf:
        for (int64_t i = lo; i < hi; ++i) acc = nan_max(acc, std::abs(static_cast<double>(x[i])));
        break;
      case NormKind::lp:
        for (int64_t i = lo; i < hi; ++i) acc += std::pow(std::abs(static_cast<double>(x[i])), p);
        break;
    }
    partial[static_cast<size_t>(b)] = acc;
  }
  double total = 0.0;
  for (double v : partial) total = kind == NormKind::linf ? nan_max(total, v) : total + v;
  return total;
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params, double norm_type) {
  CRFSEG_CHECK(norm_type > 0.0 && !std::isnan(norm_type), ValueError, "grad_norm: invalid norm_type ", norm_type,
               " (expected > 0 or infinity)");
  const NormKind kind = std::isinf(norm_type) ? NormKind::linf
                        : norm_type == 1.0    ? NormKind::l1
                        : norm_type == 2.0    ? NormKind::l2
                                              : NormKind::lp;
  // Sum (or max) over every gradient element at once: for p < inf this is
  // (sum_i ||g_i||_p^p)^(1/p), the p-norm of the per-tensor norms that torch takes.
  double acc = 0.0;
  auto add = [&](double part) { acc = kind == NormKind::linf ? nan_max(acc, part) : acc + part; };
  // Device parts wait on their device and come back together (one copy and
  // one synchronisation per call, not one per parameter); they are added
  // in parameter order all the same.
  std::vector<Tensor> pending;
  auto flush = [&] {
    if (pending.empty()) return;
    for (double part : ops::concat(pending, 0).to(Device::cpu()).to_vector<double>()) add(part);
    pending.clear();
  };
  for (const Tensor& p : params) {
    const Tensor g = crfseg::grad(p);
    if (!g.defined()) continue;
    if (g.device().is_cuda() && g.numel() > 0) {
      // The same sum (or max) from the device's reductions (f64 on the way,
      // as the CPU loop accumulates in double).
      // (x^2 needs no abs: one pass over the f64 copy fewer.)
      const Tensor d = ops::to_dtype(g, DType::f64);
      const Tensor r = kind == NormKind::l2 ? ops::sum(ops::unary(ops::UnaryOp::square, d)) : [&] {
        const Tensor a = ops::unary(ops::UnaryOp::abs, d);
        return kind == NormKind::linf ? ops::max(a)
               : kind == NormKind::l1 ? ops::sum(a)
                                      : ops::sum(ops::scalar_op(ops::ScalarOp::pow, a, norm_type));
      }();
      if (!pending.empty() && pending.front().device() != g.device()) flush();
      pending.push_back(ops::reshape(r, {1}));
      continue;
    }
    flush();
    const Tensor flat = ops::contiguous(g);
    const double part = dispatch_float(flat.dtype(), "grad_norm", [&](auto tag) {
      using T = decltype(tag);
      return reduce_abs_pow<T>(flat.data<T>(), flat.numel(), kind, norm_type);
    });
    add(part);
  }
  flush();
  switch (kind) {
    case NormKind::l1:
    case NormKind::linf: return acc;
    case NormKind::l2: return std::sqrt(acc);
    case NormKind::lp: return std::pow(acc, 1.0 / norm_type);
  }
  return acc;
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  CRFSEG_CHECK(std::isfinite(max_norm) && max_norm >= 0.0, ValueError, "clip_grad_norm_: invalid max_norm ",
               max_norm, " (expected a finite value >= 0)");
  const double total = grad_norm(params, norm_type);
  CRFSEG_CHECK(!error_if_nonfinite || std::isfinite(total), ValueError, "clip_grad_norm_: the total norm of order ",
               norm_type, " of the gradients is ", total,
               ", so it cannot be clipped; pass error_if_nonfinite = false to scale by it anyway");
  clip_grads_with_norm_(params, max_norm, total);
  return total;
}

void clip_grads_with_norm_(const std::vector<Tensor>& params, double max_norm, double total_norm) {
  CRFSEG_CHECK(std::isfinite(max_norm) && max_norm >= 0.0, ValueError, "clip_grads_with_norm_: invalid max_norm ",
               max_norm, " (expected a finite value >= 0)");
  // torch multiplies by min(scale, 1); scaling by exactly 1 changes nothing,
  // so only scale < 1 is applied. A NaN scale (NaN total) is applied too,
  // as in torch, so the NaN shows up in the gradients instead of being hidden.
  const double scale = max_norm / (total_norm + 1e-6);
  if (scale >= 1.0) return;
  for (const Tensor& p : params) {
    const Tensor g = crfseg::grad(p);
    if (g.defined()) ops::mul_(g, scale);  // in place, strided, bumps the version
  }
}

}  // namespace crfseg::optim
