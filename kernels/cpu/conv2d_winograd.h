// Winograd convolution (Lavin and Gray 2016, "Fast Algorithms for
// Convolutional Neural Networks"), f32, 3x3 kernels, stride 1, no dilation:
// F(4x4, 3x3), every pass.
//
// Why: a deep 3x3 layer (256 channels and more) spends almost all its time
// in the GEMM, and F(4x4, 3x3) computes each 4x4 output tile with 36
// multiplies per (input, output) channel pair where the direct form takes
// 144: the arithmetic drops 4x, the transforms cost O(1) per channel.
//
// In one dimension, for a 6-element input tile d and a 3-tap filter g, the
// 4 outputs y_i = sum_j g_j d_{i+j} are
//   y = A^T [ (G g) . (B^T d) ]          (. elementwise over 6 points)
// and in two, for a 6x6 tile and a 3x3 filter,
//   Y = A^T [ (G g G^T) . (B^T d B) ] A.
// Summed over input channels c, each of the 36 points xi is an independent
// product of a [K x C] matrix with a [C x tiles] one, so a layer becomes:
//   U[xi] [K, C]     = (G w[k,c] G^T)[xi]          filter transform
//   V[xi] [C, T]     = (B^T d[c,t] B)[xi]          input transform, T tiles
//   M[xi] [K, T]     = U[xi] . V[xi]               36 SGEMMs
//   y tile [k, t]    = A^T M[., k, t] A (+ bias)   output transform
// Backward-input (stride 1) is the forward of dy with the flipped,
// channel-transposed kernel. Backward-weight is the same bilinear form with
// the roles of filter and output swapped (the transposition principle):
//   dW[k,c] = G^T [ sum_t (A dY[k,t] A^T) . (B^T d[c,t] B) ] G,
// 36 SGEMMs [K, T] . [T, C] over the tiles, with dY's tiles zero beyond the
// output. The transform matrices use the points 0, +-1, +-2 (Lavin's); in
// f32 the results differ from the direct sum by a few 1e-6 relative to the
// magnitudes summed (tests/kernels/test_conv2d_winograd.cpp).
//
// The transforms run in plain C++ (the compiler folds the constant
// matrices); everything else is the production SGEMM. Each output element
// is produced by one thread in a fixed order, so results are bitwise the
// same for a given thread count (the SGEMM's own rule).
#pragma once

#include <cstdint>

#include "kernels/ref/conv2d.h"

namespace crfseg::kernels::cpu {

// 3x3, stride 1, dilation 1, any padding, a non-empty output.
bool conv2d_winograd_applies(const ConvGeometry& g);

// bias may be null; y is fully overwritten. Throw NotImplementedError
// naming the kernel and the geometry where conv2d_winograd_applies is false.
void conv2d_winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                             bool relu = false);
// dx is fully overwritten.
void conv2d_winograd_backward_input(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// dw [K, C, 3, 3] is fully overwritten (the bias gradient is separate).
// Runs in bands of tile rows, each band's transforms in cache, where
// conv2d_winograd_weight_grad_in_bands (C K <= 256^2, 32 tiles per image
// where C and K are 128 or more, and at least 4 bands, the groups that
// threads share; where C K >= 128 x 256, 4 or at least 8); else over the
// whole batch in chunks.
bool conv2d_winograd_weight_grad_in_bands(const ConvGeometry& g);
// Deep layers on small images (C K >= 512^2 and at most 64 tiles in each of
// the batch's chunks, images_per_chunk in the .cpp; the weight gradient: 16
// tiles in the whole batch) transform their filters in blocks inside the
// products instead of writing all 36 K C transformed filters to memory
// first (forward; the backward-input's is the forward of its flipped
// geometry), or untransform the products block by block as they come
// (weight gradient).
bool conv2d_winograd_forward_fused(const ConvGeometry& g);
bool conv2d_winograd_weight_grad_fused(const ConvGeometry& g);
// The 4 x 4 output tiles of the whole batch, N ceil(P / 4) ceil(Q / 4).
int64_t conv2d_winograd_tiles(const ConvGeometry& g);
void conv2d_winograd_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw);

}  // namespace crfseg::kernels::cpu
