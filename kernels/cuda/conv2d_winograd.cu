// Winograd F(m x m, 3x3) convolution on the GPU, m = 2 or 4: the forward,
// the backward-input (a forward of the flipped filters) and the weight
// gradient (F(3x3, m x m)) of 3x3 stride-1 convolutions (winograd_rules.h
// has the algorithm, the layouts and the rules each thread runs;
// tests/kernels/test_conv2d.cpp checks them on the CPU).
//
// Per image group: the input transform (one thread per channel tile,
// (m + 2)^2 values out), one batched GEMM over the (xi, nu) products (the
// production GEMM; cuBLAS in FP32 at tf32/bf16 precision, see products()),
// and the output transform (one thread per output tile, m x m outputs plus
// the bias); the filter transform runs once per call. The
// weight gradient transforms the input and output-gradient tiles, sums the
// products over every group's tiles (batched GEMMs accumulating into Mw),
// and turns Mw into the 3x3 filter gradients once.
//
// Why: im2col writes and the GEMM reads 9 values per input pixel, and the
// GEMM does 9 multiply-adds per output, channel and input channel; here
// the GEMM's operands hold (m + 2)^2 / m^2 values per input pixel and per
// output (4 for m = 2, 2.25 for m = 4), and it does that many
// multiply-adds instead of 9. cuDNN runs Winograd kernels for the same
// U-Net layers in PyTorch's step (bench/results/gpu_h100_s42.md). m = 4
// does fewer operations and moves fewer bytes; its transforms'
// coefficients (up to 8 and 1/24) cost accuracy, as on the CPU, which
// uses F(4x4, 3x3).
//
// Written without a GPU (session 43): selected only by
// CRFSEG_CUDA_CONV=winograd (m = 2) or winograd4 (m = 4) /
// set_conv_algorithm until a device has run tests/cuda and the benchmarks.
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

// The batched products over the (m + 2)^2 transform points, in FP32 at
// every matmul precision. Rounding U and V (the transformed filters and
// tiles) to TF32 or BF16 is not rounding x and w: the output transform's
// coefficients (up to 8 in F(4x4)'s A^T) amplify it. An emulation over
// 32-64 channels gave F(4x4) at BF16 a relative RMS error of 2.3e-2
// against FP64, 11x im2col's 2.1e-3 at BF16 (TF32: 2-3e-3, 7-9x). At fp32
// precision the production GEMM runs as everywhere else; at tf32/bf16,
// cuBLAS in FP32 (the autotuner then weighs that cost against the
// reduced-precision im2col on time alone, as before).
template <typename T>
void products(bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t stride_a, const T* B,
              int64_t ldb, int64_t stride_b, T beta, T* C, int64_t ldc, int64_t stride_c, int64_t batch,
              Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_precision() != GemmPrecision::fp32) {
      sgemm_strided_batched_at(GemmPrecision::fp32, false, trans_b, M, N, K, 1.0f, A, lda, stride_a, B, ldb, stride_b,
                               beta, C, ldc, stride_c, batch, stream);
      return;
    }
  }
  gemm_strided_batched<T>(false, trans_b, M, N, K, T(1), A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
                          batch, stream);
}

template <int kM, typename T>
void forward_tiles(const ConvGeometry& g, const T* x, const T* w, bool backward, const T* bias, T* y, T* work,
                   int64_t group, Stream stream) {
  constexpr int64_t kPoints = (kM + 2) * (kM + 2);
  const WinogradPlan p = winograd_plan(g, kM, "conv2d_winograd");
  const int64_t K = g.K, C = g.C, tiles = p.tiles();
  T* U = work;
  T* V = U + round64(kPoints * K * C);
  T* M = V + round64(kPoints * C * group * tiles);
  for_each(K * C, [=] __device__(int64_t o) { winograd_filter_element<kM>(o, w, K, C, backward, U); }, stream,
           "conv2d_winograd: filters");
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n), Tn = images * tiles;
    const T* xn = x + n * C * g.hw();
    T* yn = y + n * K * g.pq();
    for_each(images * C * tiles, [=] __device__(int64_t o) { winograd_input_element<kM>(o, xn, p, images, V); },
             stream, "conv2d_winograd: input tiles");
    // M[xi] [K, Tn] = U[xi] [K, C] V[xi] [C, Tn] for every xi.
    products<T>(false, K, Tn, C, U, C, K * C, V, Tn, C * Tn, T(0), M, Tn, K * Tn, kPoints, stream);
    for_each(images * K * tiles,
             [=] __device__(int64_t o) { winograd_output_element<kM>(o, M, p, images, bias, yn); }, stream,
             "conv2d_winograd: output tiles");
  }
}

template <int kM, typename T>
void weight_grad_tiles(const ConvGeometry& g, const T* dy, const T* x, T* dw, T* work, int64_t group, Stream stream) {
  constexpr int64_t kPoints = (kM + 2) * (kM + 2);
  const WinogradPlan p = winograd_plan(g, kM, "conv2d_backward_weight_winograd");
  const int64_t K = g.K, C = g.C, tiles = p.tiles();
  if (g.N == 0) {  // no images: a zero gradient, as the other paths give (Mw would stay unwritten)
    for_each(K * C * 9, [=] __device__(int64_t i) { dw[i] = T(0); }, stream, "conv2d_backward_weight_winograd: zero");
    return;
  }
  T* Mw = work;  // [points][K][C], summed over the groups
  T* V = Mw + round64(kPoints * K * C);
  T* E = V + round64(kPoints * C * group * tiles);
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n), Tn = images * tiles;
    const T* xn = x + n * C * g.hw();
    const T* dyn = dy + n * K * g.pq();
    for_each(images * C * tiles, [=] __device__(int64_t o) { winograd_input_element<kM>(o, xn, p, images, V); },
             stream, "conv2d_backward_weight_winograd: input tiles");
    for_each(images * K * tiles, [=] __device__(int64_t o) { winograd_grad_element<kM>(o, dyn, p, images, E); },
             stream, "conv2d_backward_weight_winograd: gradient tiles");
    // Mw[xi] [K, C] (+)= E[xi] [K, Tn] V[xi] [C, Tn]^T for every xi.
    products<T>(true, K, C, Tn, E, Tn, K * Tn, V, Tn, C * Tn, n > 0 ? T(1) : T(0), Mw, C, K * C, kPoints, stream);
  }
  for_each(K * C, [=] __device__(int64_t o) { winograd_filter_grad_element<kM>(o, Mw, K, C, dw); }, stream,
           "conv2d_backward_weight_winograd: filter gradient");
}

}  // namespace

int64_t winograd_group_images(const ConvGeometry& g, int tile) {
  const WinogradPlan p = winograd_plan(g, tile, "winograd_group_images");
  return conv_images_within_limit(winograd_workspace_elems(p, tile, 1), g.N);
}

int64_t winograd_workspace(const ConvGeometry& g, int tile, int64_t images) {
  const WinogradPlan p = winograd_plan(g, tile, "winograd_workspace");
  const int64_t points = (tile + 2) * (tile + 2), T = images * p.tiles();
  return round64(points * g.K * g.C) + round64(points * g.C * T) + points * g.K * T;
}

template <typename T>
void conv2d_winograd(const ConvGeometry& g, int tile, const T* x, const T* w, bool backward, const T* bias, T* y,
                     T* work, int64_t images, Stream stream) {
  const int64_t group = conv_checked_group(g, images, "conv2d_winograd");
  if (tile == 4) {
    forward_tiles<4>(g, x, w, backward, bias, y, work, group, stream);
  } else {
    winograd_plan(g, tile, "conv2d_winograd");  // names a tile that is neither 2 nor 4
    forward_tiles<2>(g, x, w, backward, bias, y, work, group, stream);
  }
}

template <typename T>
void conv2d_backward_weight_winograd(const ConvGeometry& g, int tile, const T* dy, const T* x, T* dw, T* work,
                                     int64_t images, Stream stream) {
  const int64_t group = conv_checked_group(g, images, "conv2d_backward_weight_winograd");
  if (tile == 4) {
    weight_grad_tiles<4>(g, dy, x, dw, work, group, stream);
  } else {
    winograd_plan(g, tile, "conv2d_backward_weight_winograd");
    weight_grad_tiles<2>(g, dy, x, dw, work, group, stream);
  }
}

template void conv2d_winograd<float>(const ConvGeometry&, int, const float*, const float*, bool, const float*, float*,
                                     float*, int64_t, Stream);
template void conv2d_winograd<double>(const ConvGeometry&, int, const double*, const double*, bool, const double*,
                                      double*, double*, int64_t, Stream);
template void conv2d_backward_weight_winograd<float>(const ConvGeometry&, int, const float*, const float*, float*,
                                                     float*, int64_t, Stream);
template void conv2d_backward_weight_winograd<double>(const ConvGeometry&, int, const double*, const double*,
                                                      double*, double*, int64_t, Stream);

}  // namespace crfseg::kernels::cuda
