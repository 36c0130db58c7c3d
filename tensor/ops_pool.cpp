// Pooling raw ops: max_pool2d, avg_pool2d, adaptive_avg_pool2d and their
// backward ops. Each validates its arguments with torch's rules (naming the
// op, the expected and the got), makes the input contiguous, computes the
// output size and dispatches to kernels/cpu/pool2d.* (semantics in
// kernels/ref/pool2d.h).
#include "kernels/cpu/pool2d.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/pool2d.h"
#endif

namespace crfseg::ops {

namespace {

// x must be a defined f32/f64 [N, C, H, W] tensor with C, H, W >= 1 (N may be 0).
void check_pool_input(const char* op, const Tensor& x) {
  check_defined(op, x, "x");
  CRFSEG_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, op,
               ": expected dtype f32 or f64, got ", dtype_name(x.dtype()));
  CRFSEG_CHECK(x.dim() == 4, ShapeError, op, ": expected a 4-D input [N, C, H, W], got ", shape_str(x.shape()));
  CRFSEG_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, ShapeError, op,
               ": expected non-zero C, H and W, got ", shape_str(x.shape()));
}

// Validates `args` against torch's pool2d_shape_check and returns the
// kernel geometry for an input of shape x_shape [N, C, H, W].
kernels::Pool2dGeometry pool_geometry(const char* op, const Shape& x_shape, const Pool2dArgs& a, bool max_pool) {
  CRFSEG_CHECK(a.kernel_h > 0 && a.kernel_w > 0, ValueError, op, ": expected kernel size > 0, got kernel_h=",
               a.kernel_h, ", kernel_w=", a.kernel_w);
  CRFSEG_CHECK(a.stride_h > 0 && a.stride_w > 0, ValueError, op, ": expected stride > 0, got stride_h=", a.stride_h,
               ", stride_w=", a.stride_w);
  if (max_pool) {
    CRFSEG_CHECK(a.dil_h > 0 && a.dil_w > 0, ValueError, op, ": expected dilation > 0, got dil_h=", a.dil_h,
                 ", dil_w=", a.dil_w);
  } else {
    CRFSEG_CHECK(a.dil_h == 1 && a.dil_w == 1, ValueError, op,
                 ": dilation is not supported (max pool only), expected dil_h=1, dil_w=1, got dil_h=", a.dil_h,
                 ", dil_w=", a.dil_w);
  }
  CRFSEG_CHECK(a.pad_h >= 0 && a.pad_w >= 0 && a.pad_h <= a.kernel_h / 2 && a.pad_w <= a.kernel_w / 2, ValueError,
               op, ": expected 0 <= padding <= kernel / 2, got pad_h=", a.pad_h, ", pad_w=", a.pad_w,
               " for kernel ", a.kernel_h, "x", a.kernel_w);
  kernels::Pool2dGeometry g;
  g.planes = x_shape[0] * x_shape[1];
  g.H = x_shape[2];
  g.W = x_shape[3];
  g.kernel_h = a.kernel_h;
  g.kernel_w = a.kernel_w;
  g.stride_h = a.stride_h;
  g.stride_w = a.stride_w;
  g.pad_h = a.pad_h;
  g.pad_w = a.pad_w;
  g.dil_h = a.dil_h;
  g.dil_w = a.dil_w;
  g.P = kernels::pool2d_output_size(g.H, g.kernel_h, g.pad_h, g.stride_h, g.dil_h, a.ceil_mode);
  g.Q = kernels::pool2d_output_size(g.W, g.kernel_w, g.pad_w, g.stride_w, g.dil_w, a.ceil_mode);
  CRFSEG_CHECK(g.P >= 1 && g.Q >= 1, ShapeError, op, ": expected an output size >= 1, got ", g.P, "x", g.Q,
               " for input ", shape_str(x_shape), " with kernel ", a.kernel_h, "x", a.kernel_w, ", stride ",
               a.stride_h, "x", a.stride_w, ", padding ", a.pad_h, "x", a.pad_w, ", dilation ", a.dil_h, "x",
               a.dil_w, " (input too small for the window)");
  return g;
}

// The x_shape argument of a backward op must be 4-D with non-zero C, H, W.
void check_x_shape(const char* op, const Shape& x_shape) {
  CRFSEG_CHECK(x_shape.size() == 4 && x_shape[0] >= 0 && x_shape[1] > 0 && x_shape[2] > 0 && x_shape[3] > 0,
               ShapeError, op, ": expected x_shape [N, C, H, W] with non-zero C, H, W, got ", shape_str(x_shape));
}

// grad must be a defined float tensor of exactly shape `want`.
void check_grad(const char* op, const Tensor& grad, const Shape& want) {
  check_defined(op, grad, "grad");
  CRFSEG_CHECK(grad.dtype() == DType::f32 || grad.dtype() == DType::f64, DTypeError, op,
               ": expected grad of dtype f32 or f64, got ", dtype_name(grad.dtype()));
  CRFSEG_CHECK(grad.shape() == want, ShapeError, op, ": expected grad of shape ", shape_str(want), ", got ",
               shape_str(grad.shape()));
}

Shape output_shape(const Shape& x_shape, int64_t P, int64_t Q) { return {x_shape[0], x_shape[1], P, Q}; }

}  // namespace

MaxPool2dForward max_pool2d(const Tensor& x_in, const Pool2dArgs& args) {
  check_pool_input("max_pool2d", x_in);
  const kernels::Pool2dGeometry g = pool_geometry("max_pool2d", x_in.shape(), args, true);
  const Tensor x = contiguous(x_in);
  const Shape out_shape = output_shape(x.shape(), g.P, g.Q);
  MaxPool2dForward out{Tensor::empty(out_shape, x.options()), Tensor::empty(out_shape, {DType::i64, x.device()})};
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      kernels::cuda::max_pool2d_forward(x.data<T>(), out.y.data<T>(), out.indices.data<int64_t>(), g,
                                        detail::stream_of(x));
      return;
    }
#endif
    check_cpu("max_pool2d", x);
    kernels::cpu::max_pool2d_forward(x.data<T>(), out.y.data<T>(), out.indices.data<int64_t>(), g);
  });
  return out;
}

namespace {

// Both max_pool2d_backward forms. With the forward's arguments (`args`
// non-null) every index must also lie in its own window, checked on every
// device unless check_indices is false, and CUDA gathers one thread per
// input; without them any index inside its plane is valid (always checked),
// and CUDA scatters one thread per plane.
Tensor max_pool2d_backward_impl(const Tensor& grad_in, const Tensor& indices_in, const Shape& x_shape,
                                const Pool2dArgs* args, bool check_indices) {
  const char* op = "max_pool2d_backward";
  check_x_shape(op, x_shape);
  check_defined(op, indices_in, "indices");
  check_dtype(op, indices_in, DType::i64);
  kernels::Pool2dGeometry g;  // without args only planes, H, W, P, Q matter
  if (args != nullptr) {
    g = pool_geometry(op, x_shape, *args, true);
    const Shape want = output_shape(x_shape, g.P, g.Q);
    CRFSEG_CHECK(indices_in.shape() == want, ShapeError, op, ": expected indices of shape ", shape_str(want),
                 " for x_shape ", shape_str(x_shape), " and the pooling arguments, got ",
                 shape_str(indices_in.shape()));
  } else {
    CRFSEG_CHECK(indices_in.dim() == 4 && indices_in.size(0) == x_shape[0] && indices_in.size(1) == x_shape[1],
                 ShapeError, op, ": expected indices [", x_shape[0], ", ", x_shape[1], ", P, Q] for x_shape ",
                 shape_str(x_shape), ", got ", shape_str(indices_in.shape()));
    g.planes = x_shape[0] * x_shape[1];
    g.H = x_shape[2];
    g.W = x_shape[3];
    g.P = indices_in.size(2);
    g.Q = indices_in.size(3);
  }
  check_grad(op, grad_in, indices_in.shape());
  check_same_device(op, grad_in, indices_in);
  const Tensor grad = contiguous(grad_in), indices = contiguous(indices_in);
  Tensor dx = Tensor::empty(x_shape, grad.options());
  const auto fail = [&](int64_t bad, int64_t got) {
    CRFSEG_CHECK(bad < 0, ValueError, op, ": expected indices in [0, ", g.H * g.W, ") or -1",
                 args != nullptr ? ", each inside its output's window" : "", ", got ", got, " at flat position ",
                 bad);
  };
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      if (args != nullptr && !check_indices) {  // no pass, no synchronisation
        kernels::cuda::max_pool2d_backward_gather(grad.data<T>(), indices.data<int64_t>(), dx.data<T>(), g,
                                                  nullptr, detail::stream_of(grad));
        return;
      }
      // The first bad index comes back to the host (8 bytes, one synchronisation).
      Tensor first_bad = full({}, -1.0, {DType::i64, grad.device()});  // all ones: UINT64_MAX
      auto* bad_out = reinterpret_cast<unsigned long long*>(first_bad.data<int64_t>());
      if (args != nullptr) {
        kernels::cuda::max_pool2d_backward_gather(grad.data<T>(), indices.data<int64_t>(), dx.data<T>(), g, bad_out,
                                                  detail::stream_of(grad));
      } else {
        kernels::cuda::max_pool2d_backward(grad.data<T>(), indices.data<int64_t>(), dx.data<T>(), g, bad_out,
                                           detail::stream_of(grad));
      }
      const int64_t bad = static_cast<int64_t>(first_bad.item());
      if (bad >= 0)
        fail(bad, indices.to(Device::cpu()).to_vector<int64_t>()[static_cast<size_t>(bad)]);
      return;
    }
#endif
    check_cpu(op, grad);
    if (args != nullptr && check_indices) {
      const int64_t bad = kernels::cpu::max_pool2d_first_outside_window(indices.data<int64_t>(), g);
      if (bad >= 0) fail(bad, indices.data<int64_t>()[bad]);
    }
    const int64_t bad = kernels::cpu::max_pool2d_backward(grad.data<T>(), indices.data<int64_t>(), dx.data<T>(), g);
    if (bad >= 0) fail(bad, indices.data<int64_t>()[bad]);
  });
  return dx;
}

}  // namespace

Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const Shape& x_shape) {
  return max_pool2d_backward_impl(grad, indices, x_shape, nullptr, true);
}

Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const Shape& x_shape, const Pool2dArgs& args,
                           bool check_indices) {
  return max_pool2d_backward_impl(grad, indices, x_shape, &args, check_indices);
}

Tensor avg_pool2d(const Tensor& x_in, const Pool2dArgs& args) {
  check_pool_input("avg_pool2d", x_in);
  const kernels::Pool2dGeometry g = pool_geometry("avg_pool2d", x_in.shape(), args, false);
  const Tensor x = contiguous(x_in);
  Tensor y = Tensor::empty(output_shape(x.shape(), g.P, g.Q), x.options());
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      kernels::cuda::avg_pool2d_forward(x.data<T>(), y.data<T>(), g, args.count_include_pad, detail::stream_of(x));
      return;
    }
#endif
    check_cpu("avg_pool2d", x);
    kernels::cpu::avg_pool2d_forward(x.data<T>(), y.data<T>(), g, args.count_include_pad);
  });
  return y;
}

Tensor avg_pool2d_backward(const Tensor& grad_in, const Shape& x_shape, const Pool2dArgs& args) {
  const char* op = "avg_pool2d_backward";
  check_x_shape(op, x_shape);
  const kernels::Pool2dGeometry g = pool_geometry(op, x_shape, args, false);
  check_grad(op, grad_in, output_shape(x_shape, g.P, g.Q));
  const Tensor grad = contiguous(grad_in);
  Tensor dx = Tensor::empty(x_shape, grad.options());
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      kernels::cuda::avg_pool2d_backward(grad.data<T>(), dx.data<T>(), g, args.count_include_pad,
                                         detail::stream_of(grad));
      return;
    }
#endif
    check_cpu(op, grad);
    kernels::cpu::avg_pool2d_backward(grad.data<T>(), dx.data<T>(), g, args.count_include_pad);
  });
  return dx;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, int64_t out_h, int64_t out_w) {
  const char* op = "adaptive_avg_pool2d";
  check_pool_input(op, x_in);
  CRFSEG_CHECK(out_h >= 1 && out_w >= 1, ValueError, op, ": expected an output size >= 1, got ", out_h, "x",
               out_w);
  const Tensor x = contiguous(x_in);
  const int64_t H = x.size(2), W = x.size(3);
  Tensor y = Tensor::empty(output_shape(x.shape(), out_h, out_w), x.options());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      kernels::cuda::adaptive_avg_pool2d_forward(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), H, W, out_h, out_w,
                                                 detail::stream_of(x));
      return;
    }
#endif
    check_cpu(op, x);
    kernels::cpu::adaptive_avg_pool2d_forward(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), H, W, out_h, out_w);
  });
  return y;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_in, const Shape& x_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_x_shape(op, x_shape);
  check_defined(op, grad_in, "grad");
  CRFSEG_CHECK(grad_in.dim() == 4 && grad_in.size(2) >= 1 && grad_in.size(3) >= 1, ShapeError, op,
               ": expected grad [", x_shape[0], ", ", x_shape[1], ", P, Q] with P, Q >= 1, got ",
               shape_str(grad_in.shape()));
  check_grad(op, grad_in, output_shape(x_shape, grad_in.size(2), grad_in.size(3)));
  const Tensor grad = contiguous(grad_in);
  Tensor dx = Tensor::empty(x_shape, grad.options());
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      kernels::cuda::adaptive_avg_pool2d_backward(grad.data<T>(), dx.data<T>(), x_shape[0] * x_shape[1], x_shape[2],
                                                  x_shape[3], grad.size(2), grad.size(3), detail::stream_of(grad));
      return;
    }
#endif
    check_cpu(op, grad);
    kernels::cpu::adaptive_avg_pool2d_backward(grad.data<T>(), dx.data<T>(), x_shape[0] * x_shape[1], x_shape[2],
                                               x_shape[3], grad.size(2), grad.size(3));
  });
  return dx;
}

}  // namespace crfseg::ops
