// conv2d, its backward ops and conv_transpose2d: validation, output shapes
// and dispatch to kernels/cpu/conv2d.*.
//
// conv_transpose2d is the adjoint of a convolution, so it is run as that
// convolution's backward-input: a transposed conv from x [N, C, H, W] to
// y [N, K, Ho, Wo] is the backward-input of the conv2d from y-shaped inputs
// (K channels) to x-shaped outputs (C channels) with the same weight
// [C, K, R, S] read as a conv weight [out = C, in = K, R, S].
#include "kernels/cpu/conv2d.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include <functional>

#include "kernels/conv_autotune.h"
#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/gemm/gemm.h"
#include "tensor/cuda_memory.h"
#endif

namespace crfseg::ops {

namespace {

using kernels::ConvGeometry;

void check_args(const char* op, const Conv2dArgs& a) {
  CRFSEG_CHECK(a.stride_h >= 1 && a.stride_w >= 1 && a.dil_h >= 1 && a.dil_w >= 1 && a.pad_h >= 0 && a.pad_w >= 0,
               ValueError, op, ": expected stride >= 1, dilation >= 1 and padding >= 0, got stride (", a.stride_h,
               ", ", a.stride_w, "), dilation (", a.dil_h, ", ", a.dil_w, "), padding (", a.pad_h, ", ", a.pad_w,
               ")");
}

void check_float(const char* op, const Tensor& t, const char* name) {
  check_defined(op, t, name);
  CRFSEG_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, op, ": expected f32 or f64 ", name,
               ", got ", dtype_name(t.dtype()));
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b, const char* name) {
  check_same_device(op, a, b);
  CRFSEG_CHECK(a.dtype() == b.dtype(), DTypeError, op, ": ", name, " has dtype ", dtype_name(b.dtype()),
               " but the input has ", dtype_name(a.dtype()));
}

int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// The geometry of conv2d(x_shape, weight_shape); validates shapes.
ConvGeometry geometry(const char* op, const Shape& x, const Shape& w, const Conv2dArgs& a) {
  check_args(op, a);
  CRFSEG_CHECK(x.size() == 4, ShapeError, op, ": expected input [N, C, H, W], got ", shape_str(x));
  CRFSEG_CHECK(w.size() == 4, ShapeError, op, ": expected weight [K, C, R, S], got ", shape_str(w));
  CRFSEG_CHECK(w[1] == x[1], ShapeError, op, ": weight ", shape_str(w), " expects ", w[1],
               " input channels, input ", shape_str(x), " has ", x[1]);
  CRFSEG_CHECK(w[0] >= 1 && w[2] >= 1 && w[3] >= 1, ShapeError, op, ": expected a non-empty weight, got ",
               shape_str(w));
  ConvGeometry g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.K = w[0], g.R = w[2], g.S = w[3];
  g.sh = a.stride_h, g.sw = a.stride_w, g.ph = a.pad_h, g.pw = a.pad_w, g.dh = a.dil_h, g.dw = a.dil_w;
  const int64_t eff_h = g.dh * (g.R - 1) + 1, eff_w = g.dw * (g.S - 1) + 1;
  CRFSEG_CHECK(g.H + 2 * g.ph >= eff_h && g.W + 2 * g.pw >= eff_w, ShapeError, op, ": the padded input (",
               g.H + 2 * g.ph, " x ", g.W + 2 * g.pw, ") is smaller than the dilated kernel (", eff_h, " x ", eff_w,
               ") for input ", shape_str(x), " and weight ", shape_str(w));
  g.P = out_size(g.H, g.R, g.sh, g.ph, g.dh);
  g.Q = out_size(g.W, g.S, g.sw, g.pw, g.dw);
  return g;
}

Shape output_shape(const ConvGeometry& g) { return {g.N, g.K, g.P, g.Q}; }

void check_bias(const char* op, const Tensor& x, const Tensor& bias, int64_t channels) {
  if (!bias.defined()) return;
  check_same_dtype(op, x, bias, "bias");
  CRFSEG_CHECK(bias.shape() == Shape{channels}, ShapeError, op, ": expected bias [", channels, "], got ",
               shape_str(bias.shape()));
}

void check_grad(const char* op, const Tensor& grad, const Shape& want) {
  CRFSEG_CHECK(grad.shape() == want, ShapeError, op, ": expected grad of shape ", shape_str(want), ", got ",
               shape_str(grad.shape()));
}

#ifdef CRFSEG_WITH_CUDA
// The im2col workspace of the CUDA convolutions (kernels/cuda/conv2d.h)
// for `images` images at a time.
Tensor col_workspace(const ConvGeometry& g, const Tensor& like, int64_t images) {
  return Tensor::empty({kernels::cuda::col_elems(g, images)}, like.options());
}

// Whether the implicit path runs a backward-input itself: a float one it has
// no tiled kernel for runs im2col's instead (the generic kernel, which f64
// keeps, is a reference many times slower), and is no autotune candidate.
bool implicit_backward_input_runs(const ConvGeometry& g, DType dtype) {
  return dtype != DType::f32 || kernels::cuda::implicit_backward_input_tiled(g);
}

// The algorithm a CUDA convolution pass runs: the process-wide choice, or
// under CRFSEG_CUDA_CONV=auto the tuner's for this pass and geometry. The
// first pass with a key times each applicable algorithm through `run` on the
// current stream (a warm-up run, which also allocates its workspace, then
// the mean of kRepeats runs between two events); each run overwrites the
// pass's output, and the caller runs the chosen one once more.
kernels::cuda::ConvAlgorithm cuda_conv_algorithm(kernels::ConvPass pass, const ConvGeometry& g, const Tensor& like,
                                                 const std::function<void(kernels::cuda::ConvAlgorithm)>& run) {
  namespace kcu = kernels::cuda;
  const kcu::ConvAlgorithm chosen = kcu::conv_algorithm();
  if (chosen != kcu::ConvAlgorithm::autotune) return chosen;
  constexpr int kRepeats = 3;
  std::vector<int> candidates = {static_cast<int>(kcu::ConvAlgorithm::im2col)};
  if (pass != kernels::ConvPass::backward_input || implicit_backward_input_runs(g, like.dtype())) {
    candidates.push_back(static_cast<int>(kcu::ConvAlgorithm::implicit_gemm));
  }
  const bool winograd = kcu::winograd_applies(g) &&
                        (pass != kernels::ConvPass::backward_input ||
                         kcu::winograd_applies(kcu::winograd_backward_input_geometry(g)));
  if (winograd) {
    candidates.push_back(static_cast<int>(kcu::ConvAlgorithm::winograd));
    candidates.push_back(static_cast<int>(kcu::ConvAlgorithm::winograd4));
  }
  const int device = like.device().index;
  auto key = kernels::ConvTuneKey::of(pass, g, static_cast<int>(dtype_size(like.dtype())),
                                      static_cast<int>(cuda::matmul_precision()), device, kcu::conv_workspace_limit());
  key.options = kcu::conv_flipped_backward_input() ? 1 : 0;
  if (like.dtype() == DType::f32) key.options |= kcu::sgemm_production_index() << 1;  // (f64 runs DGEMM)
  const int best = kernels::conv_autotuner().choose(key, candidates, [&](int c) {
    const auto a = static_cast<kcu::ConvAlgorithm>(c);
    run(a);
    cuda::Event start(device), stop(device);
    const cuda::StreamHandle stream = cuda::current_stream(device);
    start.record(stream);
    for (int i = 0; i < kRepeats; ++i) run(a);
    stop.record(stream);
    stop.synchronize();
    return static_cast<double>(stop.elapsed_ms_since(start)) / kRepeats;
  });
  return static_cast<kcu::ConvAlgorithm>(best);
}
#endif

// x [N, C, h, w] zero-padded at the bottom and right to [N, C, H, W] (x
// itself when already that size). With output padding >= stride (allowed
// up to the dilation) the conv2d whose adjoint conv_transpose2d is has a
// larger output than x; x is its gradient with the extra rows and columns 0.
Tensor pad_bottom_right(const Tensor& x, int64_t H, int64_t W) {
  CRFSEG_CHECK(x.dim() == 4 && x.size(2) <= H && x.size(3) <= W, ShapeError, "pad_bottom_right: cannot pad ",
               shape_str(x.shape()), " to ", H, " x ", W);
  if (x.size(2) == H && x.size(3) == W) return x;
  Tensor out = zeros({x.size(0), x.size(1), H, W}, x.options());
  copy_(slice(slice(out, 2, 0, x.size(2)), 3, 0, x.size(3)), x);
  return out;
}

Tensor conv2d_forward(const char* op, const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in,
                      const Conv2dArgs& args, bool relu) {
  check_float(op, x_in, "input");
  check_float(op, w_in, "weight");
  check_same_dtype(op, x_in, w_in, "weight");
  const ConvGeometry g = geometry(op, x_in.shape(), w_in.shape(), args);
  check_bias(op, x_in, bias_in, g.K);
  const Tensor x = contiguous(x_in), w = contiguous(w_in);
  const Tensor bias = bias_in.defined() ? contiguous(bias_in) : Tensor();
  Tensor y = Tensor::empty(output_shape(g), x.options());
  bool relu_done = false;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (x.device().is_cuda()) {
      namespace kcu = kernels::cuda;
      const T* b = bias.defined() ? bias.data<T>() : nullptr;
      const auto run = [&](kcu::ConvAlgorithm a) {
        if (a == kcu::ConvAlgorithm::implicit_gemm) {
          kcu::conv2d_forward_implicit<T>(g, x.data<T>(), w.data<T>(), b, y.data<T>(), detail::stream_of(x));
          return;
        }
        if (const int tile = kcu::winograd_tile(a); tile > 0 && kcu::winograd_applies(g)) {
          const int64_t images = kcu::winograd_group_images(g, tile);
          const Tensor work = Tensor::empty({kcu::winograd_workspace(g, tile, images)}, x.options());
          kcu::conv2d_winograd<T>(g, tile, x.data<T>(), w.data<T>(), false, b, y.data<T>(), work.data<T>(), images,
                                  detail::stream_of(x));
          return;
        }
        const int64_t images = kcu::conv_group_images(g);  // read once: sizes col and the kernel's groups
        const Tensor col = col_workspace(g, x, images);
        kcu::conv2d_forward<T>(g, x.data<T>(), w.data<T>(), b, y.data<T>(), col.data<T>(), images,
                               detail::stream_of(x));
      };
      run(cuda_conv_algorithm(kernels::ConvPass::forward, g, x, run));
      return;
    }
#endif
    check_cpu(op, x);
    kernels::cpu::conv2d_forward<T>(g, x.data<T>(), w.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
                                    y.data<T>(), relu);
    relu_done = true;
  });
  // The device kernels have no ReLU epilogue: a separate pass there,
  // max(0, y) written so that NaN passes through as in the CPU's epilogue
  // (0 >= NaN is false; UnaryOp::relu would map NaN to 0).
  return relu && !relu_done ? binary(BinaryOp::maximum, scalar_tensor(0.0, y.options()), y) : y;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args) {
  return conv2d_forward("conv2d", x, weight, bias, args, false);
}

Tensor conv2d_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args) {
  return conv2d_forward("conv2d_relu", x, weight, bias, args, true);
}

Tensor conv2d_backward_input(const Tensor& grad_in, const Tensor& w_in, const Shape& x_shape,
                             const Conv2dArgs& args) {
  const char* op = "conv2d_backward_input";
  check_float(op, grad_in, "grad");
  check_float(op, w_in, "weight");
  check_same_dtype(op, grad_in, w_in, "weight");
  const ConvGeometry g = geometry(op, x_shape, w_in.shape(), args);
  check_grad(op, grad_in, output_shape(g));
  const Tensor grad = contiguous(grad_in), w = contiguous(w_in);
  Tensor dx = Tensor::empty(x_shape, grad.options());
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      namespace kcu = kernels::cuda;
      const auto run = [&](kcu::ConvAlgorithm a) {
        if (a == kcu::ConvAlgorithm::implicit_gemm && implicit_backward_input_runs(g, grad.dtype())) {
          const Tensor work = Tensor::empty({kcu::implicit_backward_input_workspace<T>(g)}, grad.options());
          kcu::conv2d_backward_input_implicit<T>(g, grad.data<T>(), w.data<T>(), dx.data<T>(), work.data<T>(),
                                                 detail::stream_of(grad));
          return;
        }
        // conv(grad, flipped w^T); an empty input plane (H or W 0) leaves it to im2col.
        const ConvGeometry b = kcu::winograd_backward_input_geometry(g);
        if (const int tile = kcu::winograd_tile(a); tile > 0 && kcu::winograd_applies(g) && kcu::winograd_applies(b)) {
          const int64_t images = kcu::winograd_group_images(b, tile);
          const Tensor work = Tensor::empty({kcu::winograd_workspace(b, tile, images)}, grad.options());
          kcu::conv2d_winograd<T>(b, tile, grad.data<T>(), w.data<T>(), true, nullptr, dx.data<T>(), work.data<T>(),
                                  images, detail::stream_of(grad));
          return;
        }
        const kcu::BackwardInputPlan plan = kcu::backward_input_plan<T>(g);  // read once: sizes col and the run
        const Tensor col = Tensor::empty({plan.workspace}, grad.options());
        kcu::conv2d_backward_input<T>(g, grad.data<T>(), w.data<T>(), dx.data<T>(), col.data<T>(), plan,
                                      detail::stream_of(grad));
      };
      run(cuda_conv_algorithm(kernels::ConvPass::backward_input, g, grad, run));
      return;
    }
#endif
    check_cpu(op, grad);
    kernels::cpu::conv2d_backward_input<T>(g, grad.data<T>(), w.data<T>(), dx.data<T>());
  });
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& grad_in, const Tensor& x_in, const Shape& weight_shape,
                              const Conv2dArgs& args, Tensor* bias_grad) {
  const char* op = "conv2d_backward_weight";
  check_float(op, grad_in, "grad");
  check_float(op, x_in, "input");
  check_same_dtype(op, grad_in, x_in, "input");
  const ConvGeometry g = geometry(op, x_in.shape(), weight_shape, args);
  check_grad(op, grad_in, output_shape(g));
  const Tensor grad = contiguous(grad_in), x = contiguous(x_in);
  Tensor dw = Tensor::empty(weight_shape, grad.options());
  // On the device the bias is its own reduction; on the CPU the kernel fills it.
  if (bias_grad) {
    *bias_grad = grad.device().is_cuda() ? conv2d_backward_bias(grad) : Tensor::empty({g.K}, grad.options());
  }
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (grad.device().is_cuda()) {
      namespace kcu = kernels::cuda;
      const auto run = [&](kcu::ConvAlgorithm a) {
        if (a == kcu::ConvAlgorithm::implicit_gemm) {
          const Tensor work = Tensor::empty({kcu::implicit_backward_weight_workspace<T>(g)}, grad.options());
          kcu::conv2d_backward_weight_implicit<T>(g, grad.data<T>(), x.data<T>(), dw.data<T>(), work.data<T>(),
                                                  detail::stream_of(grad));
          return;
        }
        if (const int tile = kcu::winograd_tile(a); tile > 0 && kcu::winograd_applies(g)) {
          const int64_t images = kcu::winograd_group_images(g, tile);
          const Tensor work = Tensor::empty({kcu::winograd_workspace(g, tile, images)}, grad.options());
          kcu::conv2d_backward_weight_winograd<T>(g, tile, grad.data<T>(), x.data<T>(), dw.data<T>(), work.data<T>(),
                                                  images, detail::stream_of(grad));
          return;
        }
        const int64_t images = kcu::conv_weight_grad_images(g);
        const Tensor col = Tensor::empty({kcu::col_elems_weight_grad(g, images)}, grad.options());
        kcu::conv2d_backward_weight<T>(g, grad.data<T>(), x.data<T>(), dw.data<T>(), col.data<T>(), images,
                                       detail::stream_of(grad));
      };
      run(cuda_conv_algorithm(kernels::ConvPass::backward_weight, g, grad, run));
      return;
    }
#endif
    check_cpu(op, grad);
    kernels::cpu::conv2d_backward_weight<T>(g, grad.data<T>(), x.data<T>(), dw.data<T>(),
                                            bias_grad ? bias_grad->data<T>() : nullptr);
  });
  return dw;
}

Tensor conv2d_backward_bias(const Tensor& grad_in) {
  const char* op = "conv2d_backward_bias";
  check_float(op, grad_in, "grad");
  CRFSEG_CHECK(grad_in.dim() == 4, ShapeError, op, ": expected grad [N, K, P, Q], got ",
               shape_str(grad_in.shape()));
  if (grad_in.device().is_cuda()) return sum(grad_in, {0, 2, 3});  // a row reduction on the device
  const Tensor grad = contiguous(grad_in);
  ConvGeometry g;
  g.N = grad.size(0), g.K = grad.size(1), g.P = grad.size(2), g.Q = grad.size(3);
  Tensor db = Tensor::empty({g.K}, grad.options());
  dispatch_float(grad.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::conv2d_backward_bias<T>(g, grad.data<T>(), db.data<T>());
  });
  return db;
}

Tensor conv_transpose2d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, const Conv2dArgs& args,
                        int64_t output_pad_h, int64_t output_pad_w) {
  const char* op = "conv_transpose2d";
  check_float(op, x_in, "input");
  check_float(op, w_in, "weight");
  check_same_dtype(op, x_in, w_in, "weight");
  check_args(op, args);
  CRFSEG_CHECK(x_in.dim() == 4 && w_in.dim() == 4 && w_in.size(0) == x_in.size(1), ShapeError, op,
               ": expected input [N, C, H, W] and weight [C, K, R, S], got input ", shape_str(x_in.shape()),
               " and weight ", shape_str(w_in.shape()));
  // As torch: the output padding must be smaller than the stride or the dilation.
  CRFSEG_CHECK(output_pad_h >= 0 && output_pad_w >= 0 &&
                   output_pad_h < std::max(args.stride_h, args.dil_h) &&
                   output_pad_w < std::max(args.stride_w, args.dil_w),
               ValueError, op, ": expected 0 <= output padding < max(stride, dilation), got output padding (",
               output_pad_h, ", ", output_pad_w, ") with stride (", args.stride_h, ", ", args.stride_w,
               ") and dilation (", args.dil_h, ", ", args.dil_w, ")");
  const Shape& w = w_in.shape();
  const int64_t ho = (x_in.size(2) - 1) * args.stride_h - 2 * args.pad_h + args.dil_h * (w[2] - 1) + output_pad_h + 1;
  const int64_t wo = (x_in.size(3) - 1) * args.stride_w - 2 * args.pad_w + args.dil_w * (w[3] - 1) + output_pad_w + 1;
  CRFSEG_CHECK(ho >= 1 && wo >= 1, ShapeError, op, ": input ", shape_str(x_in.shape()), " and weight ", shape_str(w),
               " give an empty output (", ho, " x ", wo, ")");
  check_bias(op, x_in, bias_in, w[1]);
  const Shape y_shape{x_in.size(0), w[1], ho, wo};
  const ConvGeometry g = geometry(op, y_shape, w_in.shape(), args);
  Tensor y = conv2d_backward_input(pad_bottom_right(x_in, g.P, g.Q), w_in, y_shape, args);
  if (bias_in.defined()) add_(y, reshape(bias_in, {1, w[1], 1, 1}));
  return y;
}

Tensor conv_transpose2d_backward_input(const Tensor& grad, const Tensor& weight, const Shape& x_shape,
                                       const Conv2dArgs& args) {
  // The adjoint conv2d of grad, cut to x's size (it is larger when the
  // output padding is >= the stride; see pad_bottom_right).
  const Tensor d = conv2d(grad, weight, Tensor(), args);
  return slice(slice(d, 2, 0, x_shape[2]), 3, 0, x_shape[3]);
}

Tensor conv_transpose2d_backward_weight(const Tensor& grad, const Tensor& x, const Shape& weight_shape,
                                        const Conv2dArgs& args) {
  const ConvGeometry g = geometry("conv_transpose2d_backward_weight", grad.shape(), weight_shape, args);
  return conv2d_backward_weight(pad_bottom_right(x, g.P, g.Q), grad, weight_shape, args);
}

}  // namespace crfseg::ops
