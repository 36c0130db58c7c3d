// bench_conv_cuda: the CUDA convolution paths on the U-Net layer shapes of
// issue #3 (3x3, pad 1, batch 4 by default; and two 2x2 stride-2 layers,
// the up-convolutions' kernels): im2col + GEMM (cuBLAS),
// implicit GEMM, and Winograd F(2x2, 3x3) and F(4x4, 3x3) (all three
// passes), forward + backward-input + backward-weight,
// each timed with CUDA events (median of R runs after W warm-ups). The
// other paths are checked against im2col's results (relative error printed). bench/peers/
// torch_conv_cuda.py times PyTorch (cuDNN, TF32 off) on the same shapes;
// scripts/gpu-check.sh runs both.
//
//   build/bench/bench_conv_cuda [--quick] [--batch N] [--repeats R] [--precision fp32|tf32|bf16]
//
// --precision: the GEMMs' input precision (cuda::MatmulPrecision) for every
// path: at bf16 im2col's cuBLAS products take BF16 columns and the implicit
// GEMM runs its tensor-core kernel (gemm/tiled_bf16.cuh); the peer's twin
// is torch_conv_cuda.py --precision bf16 (BF16 tensors, as autocast).
//
// Without a device it prints why and exits 0.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/cuda_memory.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/random.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/conv2d.h"
#endif

using namespace crfseg;

int main(int argc, char** argv) {
  int64_t batch = 4;
  int repeats = 10, warmup = 2;
  cuda::MatmulPrecision precision = cuda::MatmulPrecision::fp32;
  // 3x3 pad 1, or (R = 2) the U-Net's up-convolution kernel, 2x2 stride 2:
  // its conv_transpose2d's three passes are this conv2d's, exchanged (the
  // forward is the backward-input, whose windows do not overlap).
  struct Layer {
    int64_t C, HW, K, R = 3;
  };
  std::vector<Layer> layers = {{3, 256, 64},    {64, 256, 64},  {128, 128, 128},  {256, 64, 256},
                               {512, 32, 512},  {1024, 16, 1024}, {64, 256, 128, 2}, {512, 32, 1024, 2}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") repeats = 2, warmup = 1, layers = {{3, 32, 8}, {16, 16, 16}, {8, 16, 16, 2}};
    else if (a == "--batch" && i + 1 < argc) batch = std::max<int64_t>(1, std::atoll(argv[++i]));
    else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--precision" && i + 1 < argc) {
      try {
        precision = cuda::parse_matmul_precision(argv[++i]);
      } catch (const ValueError& e) {
        std::fprintf(stderr, "bench_conv_cuda: %s\n", e.what());
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: bench_conv_cuda [--quick] [--batch N] [--repeats R] [--precision fp32|tf32|bf16]\n");
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    std::printf("bench_conv_cuda: skipped: %s\n",
                cuda::is_compiled() ? "no CUDA device visible" : "crfseg was built without CUDA");
    return 0;
  }
#ifdef CRFSEG_WITH_CUDA
  namespace kcu = kernels::cuda;
  const Device dev = Device::cuda(0);
  Generator gen(2);
  const cuda::MatmulPrecisionGuard guard(precision);
  std::printf("# CUDA conv2d 3x3 pad 1 (2x2 stride 2 where marked), batch %lld, f32 tensors, %s GEMM inputs; fwd + "
              "bwd-input + bwd-weight, median of %d\n",
              static_cast<long long>(batch), cuda::matmul_precision_name(precision), repeats);
  std::printf(
      "| C -> K @ HxW | im2col+GEMM ms | implicit GEMM ms | implicit / im2col | rel diff | Winograd 2x2 ms | / im2col "
      "| rel diff | Winograd 4x4 ms | / im2col | rel diff |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Layer& l : layers) {
    const Tensor x = randn({batch, l.C, l.HW, l.HW}, {DType::f32, dev}, gen);
    const bool up = l.R == 2;
    const Conv2dArgs args = up ? Conv2dArgs{.stride_h = 2, .stride_w = 2} : Conv2dArgs{.pad_h = 1, .pad_w = 1};
    const int64_t out = up ? l.HW / 2 : l.HW;
    const Tensor w = randn({l.K, l.C, l.R, l.R}, {DType::f32, dev}, gen);
    const Tensor g = randn({batch, l.K, out, out}, {DType::f32, dev}, gen);
    auto pass = [&] {
      const Tensor y = ops::conv2d(x, w, Tensor(), args);
      const Tensor dx = ops::conv2d_backward_input(g, w, x.shape(), args);
      const Tensor dw = ops::conv2d_backward_weight(g, x, w.shape(), args);
      return std::vector<Tensor>{y, dx, dw};
    };
    auto time = [&](kcu::ConvAlgorithm a, std::vector<Tensor>* out) {
      const kcu::ConvAlgorithm previous = kcu::set_conv_algorithm(a);
      *out = pass();
      for (int i = 0; i < warmup; ++i) pass();
      std::vector<double> ms;
      cuda::Event start(0), stop(0);
      for (int i = 0; i < repeats; ++i) {
        start.record(cuda::current_stream(0));
        pass();
        stop.record(cuda::current_stream(0));
        stop.synchronize();
        ms.push_back(stop.elapsed_ms_since(start));
      }
      kcu::set_conv_algorithm(previous);
      std::sort(ms.begin(), ms.end());
      return ms[ms.size() / 2];
    };
    std::vector<Tensor> a, b, c, d;
    const double t_im2col = time(kcu::ConvAlgorithm::im2col, &a);
    const double t_implicit = time(kcu::ConvAlgorithm::implicit_gemm, &b);
    // (Winograd takes 3x3 stride-1 layers; the 2x2 ones would rerun im2col.)
    const double t_winograd = up ? NAN : time(kcu::ConvAlgorithm::winograd, &c);
    const double t_winograd4 = up ? NAN : time(kcu::ConvAlgorithm::winograd4, &d);
    // Relative Frobenius distance from im2col's three results (NaN never passes).
    auto distance = [&](const std::vector<Tensor>& other) {
      double num = 0, den = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        const std::vector<float> va = a[i].to(Device::cpu()).to_vector<float>();
        const std::vector<float> vb = other[i].to(Device::cpu()).to_vector<float>();
        for (size_t k = 0; k < va.size(); ++k) {
          const double d = static_cast<double>(vb[k]) - va[k];
          num += std::isnan(d) ? INFINITY : d * d;
          den += static_cast<double>(va[k]) * va[k];
        }
      }
      return std::sqrt(num / std::max(den, 1e-30));
    };
    std::printf("| %lld -> %lld @ %lldx%lld%s | %.2f | %.2f | %.2f | %.1e |", static_cast<long long>(l.C),
                static_cast<long long>(l.K), static_cast<long long>(l.HW), static_cast<long long>(l.HW),
                up ? " (2x2 s2)" : "", t_im2col, t_implicit, t_implicit / t_im2col, distance(b));
    if (up) {
      std::printf(" n/a | | | n/a | | |\n");
    } else {
      std::printf(" %.2f | %.2f | %.1e | %.2f | %.2f | %.1e |\n", t_winograd, t_winograd / t_im2col, distance(c),
                  t_winograd4, t_winograd4 / t_im2col, distance(d));
    }
  }
  std::printf("%s", cuda::memory_summary(0).c_str());
#endif
  return 0;
}
