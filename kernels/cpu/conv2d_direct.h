// Direct (no GEMM, nothing packed) f32 convolution kernels, AVX-512F.
// conv2d.cpp dispatches to them where they beat its implicit GEMM (the
// rules and the measurements behind them are there).
//
// Why: an implicit GEMM packs im2col panels, and each packed element is
// reused only as often as the other operand is long: 64 times for a
// 64-channel layer, so packing costs 17-30% of the U-Net's full-resolution
// layers, and as much as the arithmetic for a 3-channel first layer (27
// taps deep). Read directly, a tap is a shifted load of a padded input row.
//   forward:  y[n,k,p,q0+l] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n,c,p sh - ph + r dh, (q0 + l) sw - pw + s dw]
//     for the 16 lanes l (with sw > 1 read from rows stored as stride phases)
//     registers: 8 output channels x 3 vectors of 16 pixels (24 zmm); per
//     tap, 3 loads and 8 weight broadcasts for 24 FMAs. The C*R padded rows
//     of one output row are gathered once for all K channels. Outputs over
//     8 MiB are written with streaming stores.
//   backward-weight, few taps (C*R*S <= 64): 8 channels x 3 taps of one
//     (c, r) row, 16 pixels in the lanes, summed over the lanes at the end.
//   backward-weight, deep layers ("k-lanes"): 16 output channels per
//     vector, from a channels-last copy of 2 rows of dy at a time; per pixel
//     4 vectors of dy times 5 broadcast taps into 20 whole-sum accumulators.
// The stride-1 backward-input is a forward convolution of dy with the
// flipped weights (conv2d.cpp), so it runs on the forward kernel.
// Requirements: AVX-512F. The 16 pixels of a vector read 16 adjacent
// inputs: with a stride along W, the forward and the k-lanes weight
// gradient store their padded input rows split into stride phases; the
// few-tap weight gradient needs stride 1 along W. Each output element (forward), and each
// partial of dW (per image, or per 32-row slab), is computed by one thread
// in a fixed order, and partials are summed in order: results are bitwise
// the same for any thread count.
// Tested against kernels/ref/conv2d.h in tests/kernels/test_conv2d.cpp;
// bench_conv times them beside the GEMM path ("crfseg-gemm") and oneDNN.
#pragma once

#include "kernels/ref/conv2d.h"

namespace crfseg::kernels::cpu {

// Forward: AVX-512F, a non-empty output.
bool conv2d_direct_forward_applies(const ConvGeometry& g);
// Weight gradient (few taps): the same, stride 1 along W and C*R*S <= 64.
bool conv2d_direct_weight_grad_applies(const ConvGeometry& g);

// bias may be null; y is fully overwritten. Throw NotImplementedError
// naming the kernel and the geometry where the *_applies above is false.
void conv2d_direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                           bool relu = false);
// dw [K, C, R, S] is fully overwritten. db [K], when not null, gets the
// bias gradient (dy summed over images and pixels) from the same pass over
// dy, which a separate conv2d_backward_bias would read from memory again.
void conv2d_direct_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                   float* db = nullptr);
// The weight gradient for deep layers: output channels in the lanes (any
// C*R*S, any stride and dilation; needs AVX-512F). See conv2d_direct.cpp.
bool conv2d_direct_weight_grad_klanes_applies(const ConvGeometry& g);
void conv2d_direct_backward_weight_klanes(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                          float* db = nullptr);
// Its unit of work: a slab of 32 output rows of one image; N ceil(P / 32) of them.
int64_t conv2d_direct_weight_grad_klanes_slabs(const ConvGeometry& g);
// Its scratch, in floats: one [C*R*S x K] partial per slab (before padding
// C*R*S and K to its blocks).
int64_t conv2d_direct_weight_grad_klanes_partials(const ConvGeometry& g);

}  // namespace crfseg::kernels::cpu
