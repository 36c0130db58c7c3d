// batch_norm and batch_norm_backward: validation, [N, C, inner] geometry and
// dispatch to kernels/cpu/batchnorm.* (math and design in its header).
#include <cstddef>

#include "kernels/cpu/batchnorm.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/batchnorm.h"
#endif

namespace crfseg::ops {

namespace {

// x [N, C, d2, d3, ...] seen as [N, C, inner], inner = d2 * d3 * ... (1 for 2-D x).
struct ChannelView {
  int64_t N = 0, C = 0, inner = 1;
};

ChannelView channel_view(const Shape& shape) {
  ChannelView v{shape[0], shape[1], 1};
  for (size_t d = 2; d < shape.size(); ++d) v.inner *= shape[d];
  return v;
}

// Checks that `t`, when defined, is a [C] per-channel tensor matching `like` [N, C, ...].
void check_per_channel(const char* op, const Tensor& t, const char* name, const Tensor& like) {
  if (!t.defined()) return;
  check_same_device(op, like, t);
  CRFSEG_CHECK(t.dtype() == like.dtype(), DTypeError, op, ": expected ", name, " of dtype ",
               dtype_name(like.dtype()), " like the input, got ", dtype_name(t.dtype()));
  CRFSEG_CHECK(t.shape() == Shape{like.size(1)}, ShapeError, op, ": expected ", name, " of shape [", like.size(1),
               "] for input ", shape_str(like.shape()), ", got ", shape_str(t.shape()));
}

// Checks the input: defined, on the CPU, f32/f64, [N, C, ...].
void check_input(const char* op, const Tensor& x, const char* name) {
  check_defined(op, x, name);
  CRFSEG_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, op, ": expected ", name,
               " of dtype f32 or f64, got ", dtype_name(x.dtype()));
  CRFSEG_CHECK(x.dim() >= 2, ShapeError, op, ": expected ", name, " of shape [N, C, ...] with at least 2 dims, got ",
               shape_str(x.shape()));
}

Tensor contiguous_if_defined(const Tensor& t) { return t.defined() ? contiguous(t) : t; }

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// After a kernel updated `updated` in place: if it is the buffer itself,
// record the write; if it was a contiguous copy of a strided buffer, copy it
// back (copy_ records the write).
void finish_in_place(const Tensor& buffer, const Tensor& updated) {
  if (updated.is_same(buffer)) buffer.bump_version();
  else copy_(buffer, updated);
}

}  // namespace

BatchNormForward batch_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                            const Tensor& running_mean, const Tensor& running_var, bool training, double momentum,
                            double eps, bool fuse_relu, kernels::ReplicaSync* sync) {
  const char* op = "batch_norm";
  check_input(op, x_in, "input");
  check_per_channel(op, weight_in, "weight", x_in);
  check_per_channel(op, bias_in, "bias", x_in);
  check_per_channel(op, running_mean, "running_mean", x_in);
  check_per_channel(op, running_var, "running_var", x_in);
  CRFSEG_CHECK(running_mean.defined() == running_var.defined(), ValueError, op,
               ": expected running_mean and running_var to be both defined or both undefined, got ",
               running_mean.defined() ? "only running_mean" : "only running_var");
  const ChannelView v = channel_view(x_in.shape());
  if (training && !sync) {
    // One value per channel has no spread: var = 0 and y = bias whatever x is (torch refuses too).
    // (Synchronised, the count over all replicas is known only after the kernel's all-gather.)
    CRFSEG_CHECK(v.N * v.inner > 1, ValueError, op,
                 ": expected more than 1 value per channel when training, got input of shape ",
                 shape_str(x_in.shape()));
  } else if (!training) {
    CRFSEG_CHECK(running_mean.defined(), ValueError, op,
                 ": eval mode normalises with the running statistics, but running_mean and running_var are "
                 "undefined");
  }

  const Tensor x = contiguous(x_in), weight = contiguous_if_defined(weight_in), bias = contiguous_if_defined(bias_in);
  // The running buffers are updated in place (training) or read (eval); a
  // strided buffer goes through a contiguous copy.
  const Tensor rm = contiguous_if_defined(running_mean), rv = contiguous_if_defined(running_var);
  BatchNormForward out;
  out.y = Tensor::empty(x.shape(), x.options());
  out.invstd = Tensor::empty({v.C}, x.options());
  double values_per_channel = 0.0;
  if (training) out.mean = Tensor::empty({v.C}, x.options());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      const auto stream = detail::stream_of(x);
      if (training) {
        const Tensor workspace = Tensor::empty({kernels::cuda::batchnorm_workspace_doubles(v.N, v.C, v.inner)},
                                               {DType::f64, x.device()});
        values_per_channel = kernels::cuda::batchnorm_forward_train(
            x.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias), out.y.data<T>(), out.mean.data<T>(),
            out.invstd.data<T>(), data_or_null<T>(rm), data_or_null<T>(rv), v.N, v.C, v.inner, momentum, eps,
            fuse_relu, sync, workspace.data<double>(), stream);
      } else {
        kernels::cuda::batchnorm_forward_eval(x.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias),
                                              rm.data<T>(), rv.data<T>(), out.y.data<T>(), out.invstd.data<T>(),
                                              v.N, v.C, v.inner, eps, fuse_relu, stream);
      }
      return;
    }
#endif
    check_cpu(op, x);
    if (training) {
      values_per_channel = kernels::cpu::batchnorm_forward_train(
          x.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias), out.y.data<T>(), out.mean.data<T>(),
          out.invstd.data<T>(), data_or_null<T>(rm), data_or_null<T>(rv), v.N, v.C, v.inner, momentum, eps,
          fuse_relu, sync);
    } else {
      kernels::cpu::batchnorm_forward_eval(x.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias),
                                           rm.data<T>(), rv.data<T>(), out.y.data<T>(), out.invstd.data<T>(), v.N,
                                           v.C, v.inner, eps, fuse_relu);
    }
  });
  // Every replica sees the same total, so every replica throws here (none is
  // left waiting in a collective).
  CRFSEG_CHECK(!training || values_per_channel > 1, ValueError, op,
               ": expected more than 1 value per channel over all ", sync ? sync->replicas() : 1,
               " replicas when training, got ", values_per_channel, " (this replica's input ",
               shape_str(x_in.shape()), ")");
  if (training && running_mean.defined()) {
    finish_in_place(running_mean, rm);
    finish_in_place(running_var, rv);
  }
  // A snapshot, not the buffer: a later training step must not change the
  // statistic this forward used (nor trip the saved-tensor version check).
  if (!training) out.mean = clone(running_mean);
  return out;
}

BatchNormGrads batch_norm_backward(const Tensor& grad_in, const Tensor& x_in, const Tensor& weight_in,
                                   const BatchNormForward& forward, bool training, bool fuse_relu,
                                   kernels::ReplicaSync* sync) {
  const char* op = "batch_norm_backward";
  check_input(op, grad_in, "grad");
  CRFSEG_CHECK(x_in.defined() || !training, ValueError, op, ": the input x is needed in training mode");
  if (x_in.defined()) {
    CRFSEG_CHECK(x_in.shape() == grad_in.shape() && x_in.dtype() == grad_in.dtype(), ShapeError, op, ": grad ",
                 grad_in.str(), " does not match input ", x_in.str());
    check_same_device(op, grad_in, x_in);
  }
  if (fuse_relu) {
    check_defined(op, forward.y, "forward.y (needed with fuse_relu)");
    CRFSEG_CHECK(forward.y.shape() == grad_in.shape() && forward.y.dtype() == grad_in.dtype(), ShapeError, op,
                 ": grad ", grad_in.str(), " does not match output ", forward.y.str());
    check_same_device(op, grad_in, forward.y);
  }
  check_defined(op, forward.mean, "forward.mean");
  check_defined(op, forward.invstd, "forward.invstd");
  check_per_channel(op, forward.mean, "forward.mean", grad_in);
  check_per_channel(op, forward.invstd, "forward.invstd", grad_in);
  check_per_channel(op, weight_in, "weight", grad_in);

  const ChannelView v = channel_view(grad_in.shape());
  const Tensor g = contiguous(grad_in), x = contiguous_if_defined(x_in), weight = contiguous_if_defined(weight_in);
  const Tensor y = fuse_relu ? contiguous(forward.y) : Tensor();
  const Tensor mean = contiguous(forward.mean), invstd = contiguous(forward.invstd);
  BatchNormGrads out;
  out.dx = Tensor::empty(g.shape(), g.options());
  out.dbias = Tensor::empty({v.C}, g.options());
  if (weight.defined() && x.defined()) out.dweight = Tensor::empty({v.C}, g.options());
  dispatch_float(g.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (g.device().is_cuda()) {
      const Tensor workspace = Tensor::empty({kernels::cuda::batchnorm_workspace_doubles(v.N, v.C, v.inner)},
                                             {DType::f64, g.device()});
      kernels::cuda::batchnorm_backward(g.data<T>(), data_or_null<T>(x), data_or_null<T>(y), data_or_null<T>(weight),
                                        mean.data<T>(), invstd.data<T>(), out.dx.data<T>(),
                                        data_or_null<T>(out.dweight), out.dbias.data<T>(), v.N, v.C, v.inner,
                                        training, sync, workspace.data<double>(), detail::stream_of(g));
      return;
    }
#endif
    check_cpu(op, g);
    kernels::cpu::batchnorm_backward(g.data<T>(), data_or_null<T>(x), data_or_null<T>(y), data_or_null<T>(weight),
                                     mean.data<T>(), invstd.data<T>(), out.dx.data<T>(),
                                     data_or_null<T>(out.dweight), out.dbias.data<T>(), v.N, v.C, v.inner,
                                     training, sync);
  });
  return out;
}

}  // namespace crfseg::ops
