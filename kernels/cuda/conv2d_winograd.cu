// Winograd F(2x2, 3x3) convolution on the GPU: the forward, the
// backward-input (a forward of the flipped filters) and the weight
// gradient (F(3x3, 2x2)) of 3x3 stride-1 convolutions (winograd_rules.h has the algorithm, the layouts and the
// rules each thread runs; tests/kernels/test_conv2d.cpp checks them on the
// CPU). Per image group: the input transform (one thread per channel tile,
// 16 values out), one cuBLAS batched GEMM over the 16 (xi, nu) products,
// and the output transform (one thread per output tile, 2x2 outputs plus
// the bias). The filter transform runs once per call. The weight gradient
// transforms the input and output-gradient tiles, sums the 16 products
// over every group's tiles (batched GEMMs accumulating into M), and turns
// M into the 3x3 filter gradients once.
//
// Why: im2col writes and the GEMM reads 9 values per input pixel, and the
// GEMM does C R S multiply-adds per output; here the GEMM's operands hold 4
// per input pixel and 4 per output, and it does 16/4 = 4 multiply-adds
// per output and channel instead of 9 (cuDNN runs Winograd kernels for the
// same U-Net layers in PyTorch's step: bench/results/gpu_h100_s42.md).
// Written without a GPU (session 43): selected only by
// CRFSEG_CUDA_CONV=winograd / set_conv_algorithm until a device has run
// tests/cuda and the benchmarks.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/winograd_rules.h"

namespace crfseg::kernels::cuda {

namespace {

int64_t round64(int64_t n) { return (n + 63) / 64 * 64; }

}  // namespace

int64_t winograd_group_images(const ConvGeometry& g) {
  const WinogradPlan p = winograd_plan(g, "winograd_group_images");
  const int64_t per_image = winograd_workspace_elems(p, 1);
  return std::clamp<int64_t>(conv_workspace_limit() / per_image, 1, std::max<int64_t>(g.N, 1));
}

int64_t winograd_workspace(const ConvGeometry& g, int64_t images) {
  const WinogradPlan p = winograd_plan(g, "winograd_workspace");
  const int64_t T = images * p.tiles();
  return round64(16 * g.K * g.C) + round64(16 * g.C * T) + 16 * g.K * T;
}

template <typename T>
void conv2d_winograd(const ConvGeometry& g, const T* x, const T* w, bool backward, const T* bias, T* y, T* work,
                     int64_t images_in, Stream stream) {
  const WinogradPlan p = winograd_plan(g, "conv2d_winograd");
  CRFSEG_CHECK(images_in >= 1, ValueError, "conv2d_winograd: expected a group of at least 1 image, got ", images_in);
  const int64_t group = std::min(images_in, std::max<int64_t>(g.N, 1));
  const int64_t K = g.K, C = g.C, tiles = p.tiles();
  T* U = work;
  T* V = U + round64(16 * K * C);
  T* M = V + round64(16 * C * group * tiles);
  for_each(K * C, [=] __device__(int64_t o) { winograd_filter_element(o, w, K, C, backward, U); }, stream,
           "conv2d_winograd: filters");
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n), Tn = images * tiles;
    const T* xn = x + n * C * g.hw();
    T* yn = y + n * K * g.pq();
    for_each(images * C * tiles, [=] __device__(int64_t o) { winograd_input_element(o, xn, p, images, V); }, stream,
             "conv2d_winograd: input tiles");
    // M[xi] [K, Tn] = U[xi] [K, C] V[xi] [C, Tn] for the 16 xi.
    if constexpr (std::is_same_v<T, float>) {
      sgemm_strided_batched(false, false, K, Tn, C, 1.0f, U, C, K * C, V, Tn, C * Tn, 0.0f, M, Tn, K * Tn, 16,
                            stream);
    } else {
      dgemm_strided_batched(false, false, K, Tn, C, 1.0, U, C, K * C, V, Tn, C * Tn, 0.0, M, Tn, K * Tn, 16, stream);
    }
    for_each(images * K * tiles, [=] __device__(int64_t o) { winograd_output_element(o, M, p, images, bias, yn); },
             stream, "conv2d_winograd: output tiles");
  }
}

template <typename T>
void conv2d_backward_weight_winograd(const ConvGeometry& g, const T* dy, const T* x, T* dw, T* work,
                                     int64_t images_in, Stream stream) {
  const WinogradPlan p = winograd_plan(g, "conv2d_backward_weight_winograd");
  CRFSEG_CHECK(images_in >= 1, ValueError, "conv2d_backward_weight_winograd: expected a group of at least 1 image, got ",
               images_in);
  const int64_t group = std::min(images_in, std::max<int64_t>(g.N, 1));
  const int64_t K = g.K, C = g.C, tiles = p.tiles();
  T* Mw = work;  // [16][K][C], summed over the groups
  T* V = Mw + round64(16 * K * C);
  T* E = V + round64(16 * C * group * tiles);
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n), Tn = images * tiles;
    const T* xn = x + n * C * g.hw();
    const T* dyn = dy + n * K * g.pq();
    for_each(images * C * tiles, [=] __device__(int64_t o) { winograd_input_element(o, xn, p, images, V); }, stream,
             "conv2d_backward_weight_winograd: input tiles");
    for_each(images * K * tiles, [=] __device__(int64_t o) { winograd_grad_element(o, dyn, p, images, E); }, stream,
             "conv2d_backward_weight_winograd: gradient tiles");
    // Mw[xi] [K, C] (+)= E[xi] [K, Tn] V[xi] [C, Tn]^T for the 16 xi.
    if constexpr (std::is_same_v<T, float>) {
      sgemm_strided_batched(false, true, K, C, Tn, 1.0f, E, Tn, K * Tn, V, Tn, C * Tn, n == 0 ? 0.0f : 1.0f, Mw, C,
                            K * C, 16, stream);
    } else {
      dgemm_strided_batched(false, true, K, C, Tn, 1.0, E, Tn, K * Tn, V, Tn, C * Tn, n == 0 ? 0.0 : 1.0, Mw, C, K * C,
                            16, stream);
    }
  }
  for_each(K * C, [=] __device__(int64_t o) { winograd_filter_grad_element(o, Mw, K, C, dw); }, stream,
           "conv2d_backward_weight_winograd: filter gradient");
}

template void conv2d_winograd<float>(const ConvGeometry&, const float*, const float*, bool, const float*, float*,
                                     float*, int64_t, Stream);
template void conv2d_winograd<double>(const ConvGeometry&, const double*, const double*, bool, const double*,
                                      double*, double*, int64_t, Stream);

}  // namespace crfseg::kernels::cuda

namespace crfseg::kernels::cuda {
template void conv2d_backward_weight_winograd<float>(const ConvGeometry&, const float*, const float*, float*, float*,
                                                     int64_t, Stream);
template void conv2d_backward_weight_winograd<double>(const ConvGeometry&, const double*, const double*, double*,
                                                      double*, int64_t, Stream);
}  // namespace crfseg::kernels::cuda
