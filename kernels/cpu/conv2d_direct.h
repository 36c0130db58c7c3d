// Direct (no GEMM) f32 convolution for layers with few input taps: the
// first layer of an image network, C = 1 or 3 channels and a 3x3 kernel,
// where the implicit GEMM of conv2d.cpp has a depth of only C*R*S = 27.
//
// Why a separate path: a 27-deep GEMM does 27 multiply-adds per packed
// element, so packing the im2col panel costs as much as the arithmetic,
// and the weight gradient's GEMM (depth = the pixels, 27 columns) packs
// col(x)^T as a transpose. Read directly, the taps are shifted loads of a
// few padded input rows held in L1:
//   forward:  y[n,k,p,q0:q0+16] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n,c,p sh - ph + r dh, q0 - pw + s dw : +16]
//     registers: 8 output channels x 3 vectors of 16 pixels (24 zmm), each
//     tap one weight broadcast per channel and 3 loads;
//   backward-weight: dW[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] x[n,c,...]
//     registers: 8 channels x 3 taps of one (c, r) row, 16 pixel lanes each,
//     summed over the lanes at the end.
// Requirements (conv2d_direct_applies): AVX-512F, stride 1 along W (so the
// 16 pixels of a vector read 16 adjacent inputs), C*R*S <= 64. Other
// geometries take the GEMM path. Each output element (forward), and each
// (k block, image) partial of dW, is computed by one thread in a fixed
// order, and the images' partials are summed in image order: results are
// bitwise the same for any thread count.
// Tested against kernels/ref/conv2d.h in tests/kernels/test_conv2d.cpp;
// bench_conv times it beside the GEMM path ("crfseg-gemm") and oneDNN.
#pragma once

#include "kernels/ref/conv2d.h"

namespace crfseg::kernels::cpu {

// Forward: AVX-512F, stride 1 along W, a non-empty output.
bool conv2d_direct_forward_applies(const ConvGeometry& g);
// Weight gradient: the same and C*R*S <= 64.
bool conv2d_direct_weight_grad_applies(const ConvGeometry& g);

// bias may be null; y is fully overwritten. Throw NotImplementedError
// naming the kernel and the geometry where the *_applies above is false.
void conv2d_direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
// dw [K, C, R, S] is fully overwritten.
void conv2d_direct_backward_weight(const ConvGeometry& g, const float* dy, const float* x, float* dw);
// The weight gradient for deep layers: output channels in the lanes (any
// C*R*S; applies where the forward does). See conv2d_direct.cpp.
void conv2d_direct_backward_weight_klanes(const ConvGeometry& g, const float* dy, const float* x, float* dw);

}  // namespace crfseg::kernels::cpu
