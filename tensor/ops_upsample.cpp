// Upsampling raw ops: upsample2d (nearest, bilinear) and its backward.
// Validation follows torch.nn.functional.interpolate with an output size;
// the work is done by kernels/cpu/upsample.* (coordinate maps in
// kernels/ref/upsample.h).
#include "kernels/cpu/upsample.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/upsample.h"
#endif

namespace crfseg::ops {

namespace {

const char* mode_name(UpsampleMode mode) { return mode == UpsampleMode::nearest ? "nearest" : "bilinear"; }

// Shared argument checks: output size >= 1, and align_corners only with
// bilinear (torch raises for nearest too: corners mean nothing there).
void check_upsample_args(const char* op, int64_t out_h, int64_t out_w, UpsampleMode mode, bool align_corners) {
  CRFSEG_CHECK(out_h >= 1 && out_w >= 1, ValueError, op, ": expected an output size >= 1, got ", out_h, "x", out_w);
  CRFSEG_CHECK(mode == UpsampleMode::bilinear || !align_corners, ValueError, op,
               ": align_corners=true needs mode bilinear, got mode ", mode_name(mode));
}

// The forward kernel of `mode`: contiguous [planes, H, W] -> [planes, P, Q].
template <typename T>
void run_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q, UpsampleMode mode,
                 bool align_corners) {
  if (mode == UpsampleMode::nearest) kernels::cpu::upsample_nearest2d_forward(x, y, planes, H, W, P, Q);
  else kernels::cpu::upsample_bilinear2d_forward(x, y, planes, H, W, P, Q, align_corners);
}

// The backward kernel of `mode`: contiguous [planes, P, Q] -> [planes, H, W].
template <typename T>
void run_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                  UpsampleMode mode, bool align_corners) {
  if (mode == UpsampleMode::nearest) kernels::cpu::upsample_nearest2d_backward(grad, dx, planes, H, W, P, Q);
  else kernels::cpu::upsample_bilinear2d_backward(grad, dx, planes, H, W, P, Q, align_corners);
}

#ifdef CRFSEG_WITH_CUDA
// One dimension's tap tables (built on the host, as the CPU kernels build
// them) uploaded to `device`; the tensors keep the memory alive.
struct UploadedTaps {
  Tensor index, weight;  // i64 [i0 | i1 | lo | hi], f64 [w0 | w1]
  kernels::cuda::DeviceTaps view;
};

template <typename T>
UploadedTaps upload_taps(int64_t in, int64_t out, UpsampleMode mode, bool align_corners, Device device) {
  const kernels::cpu::UpsampleTaps t =
      kernels::cpu::upsample_taps<T>(in, out, mode == UpsampleMode::bilinear, align_corners);
  std::vector<int64_t> index = t.i0;
  index.insert(index.end(), t.i1.begin(), t.i1.end());
  index.insert(index.end(), t.lo.begin(), t.lo.end());
  index.insert(index.end(), t.hi.begin(), t.hi.end());
  std::vector<double> weight = t.w0;
  weight.insert(weight.end(), t.w1.begin(), t.w1.end());
  UploadedTaps u;
  u.index = from_vector<int64_t>(index, {static_cast<int64_t>(index.size())}).to(device);
  u.weight = from_vector<double>(weight, {static_cast<int64_t>(weight.size())}).to(device);
  const int64_t* pi = u.index.data<int64_t>();
  const double* pw = u.weight.data<double>();
  u.view = {pi, pi + out, pw, pw + out, pi + 2 * out, pi + 2 * out + in};
  return u;
}
#endif

}  // namespace

Tensor upsample2d(const Tensor& x_in, int64_t out_h, int64_t out_w, UpsampleMode mode, bool align_corners) {
  const char* op = "upsample2d";
  check_defined(op, x_in, "x");
  CRFSEG_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::f64, DTypeError, op,
               ": expected dtype f32 or f64, got ", dtype_name(x_in.dtype()));
  CRFSEG_CHECK(x_in.dim() == 4, ShapeError, op, ": expected a 4-D input [N, C, H, W], got ", shape_str(x_in.shape()));
  CRFSEG_CHECK(x_in.size(1) > 0 && x_in.size(2) > 0 && x_in.size(3) > 0, ShapeError, op,
               ": expected non-zero C, H and W, got ", shape_str(x_in.shape()));
  check_upsample_args(op, out_h, out_w, mode, align_corners);
  const Tensor x = contiguous(x_in);
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      const UploadedTaps rows = upload_taps<T>(x.size(2), out_h, mode, align_corners, x.device());
      const UploadedTaps cols = upload_taps<T>(x.size(3), out_w, mode, align_corners, x.device());
      kernels::cuda::upsample2d_forward(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), x.size(2), x.size(3), out_h,
                                        out_w, rows.view, cols.view, mode == UpsampleMode::nearest, detail::stream_of(x));
      return;
    }
#endif
    check_cpu(op, x);
    run_forward(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), x.size(2), x.size(3), out_h, out_w, mode,
                align_corners);
  });
  return y;
}

Tensor upsample2d_backward(const Tensor& grad_in, const Shape& x_shape, UpsampleMode mode, bool align_corners) {
  const char* op = "upsample2d_backward";
  CRFSEG_CHECK(x_shape.size() == 4 && x_shape[0] >= 0 && x_shape[1] > 0 && x_shape[2] > 0 && x_shape[3] > 0,
               ShapeError, op, ": expected x_shape [N, C, H, W] with non-zero C, H, W, got ", shape_str(x_shape));
  check_defined(op, grad_in, "grad");
  CRFSEG_CHECK(grad_in.dtype() == DType::f32 || grad_in.dtype() == DType::f64, DTypeError, op,
               ": expected grad of dtype f32 or f64, got ", dtype_name(grad_in.dtype()));
  CRFSEG_CHECK(grad_in.dim() == 4 && grad_in.size(0) == x_shape[0] && grad_in.size(1) == x_shape[1], ShapeError, op,
               ": expected grad [", x_shape[0], ", ", x_shape[1], ", P, Q] for x_shape ", shape_str(x_shape),
               ", got ", shape_str(grad_in.shape()));
  check_upsample_args(op, grad_in.size(2), grad_in.size(3), mode, align_corners);
  const Tensor grad = contiguous(grad_in);
  Tensor dx = Tensor::empty(x_shape, grad.options());
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      const UploadedTaps rows = upload_taps<T>(x_shape[2], grad.size(2), mode, align_corners, grad.device());
      const UploadedTaps cols = upload_taps<T>(x_shape[3], grad.size(3), mode, align_corners, grad.device());
      kernels::cuda::upsample2d_backward(grad.data<T>(), dx.data<T>(), x_shape[0] * x_shape[1], x_shape[2],
                                         x_shape[3], grad.size(2), grad.size(3), rows.view, cols.view,
                                         mode == UpsampleMode::nearest, detail::stream_of(grad));
      return;
    }
#endif
    check_cpu(op, grad);
    run_backward(grad.data<T>(), dx.data<T>(), x_shape[0] * x_shape[1], x_shape[2], x_shape[3], grad.size(2),
                 grad.size(3), mode, align_corners);
  });
  return dx;
}

}  // namespace crfseg::ops
