// CPU 2-D convolution (NCHW), forward and both backwards, as GEMMs.
//
// Per image n, with col(x) the im2col matrix of shape [C*R*S, P*Q] whose
// entry (c*R*S + r*S + s, p*Q + q) is x[c, p*sh - ph + r*dh, q*sw - pw + s*dw]
// (0 outside the image):
//   forward          y_n  [K, PQ]   = W [K, CRS] . col(x_n)              (+ b[k], written before the GEMM)
//   backward-input   dx_n           = col2im( W^T [CRS, K] . dy_n [K, PQ] )
//   backward-weight  dW   [K, CRS] += dy_n [K, PQ] . col(x_n)^T [PQ, CRS]
//   backward-bias    db[k]          = sum over n, p, q of dy
//
// f32 (the training path) never materialises col(x): the GEMMs run on the
// BLIS loops of the production SGEMM (kernels/cpu/gemm/blis_loops.h), and
// their B-panel packers read im2col entries straight from the image into
// the packed micro-panel (an "implicit im2col"); the weights are packed
// once per call and shared by all threads. 1x1 stride-1 unpadded
// convolutions are plain GEMMs over the pixels (no index arithmetic); for
// images under 256 pixels the batch is folded into one GEMM's columns.
// The forward packs a whole block of columns row by row (each tap reads one
// contiguous run of an input row). Backward-weight packs dy_n once per image
// and splits the CRS columns among threads (small dW, K*C*R*S <= 2^15 from
// 4 images: fixed groups of images instead, one thread each, their partials
// added in group order); for C >= 16 it reads the image
// through a channels-last copy, so its packed rows are contiguous runs of C
// channels (dW is computed with columns in (r, s, c) order and permuted
// back), and for C < 16 it transposes 16 x 16 tiles (transpose_pack.h).
// Backward-input with stride 1 is itself a convolution (of dy with the
// kernel flipped in space and transposed in channels) and runs on the
// forward path; with stride > 1 it computes W^T . dy one column chunk at a
// time into a small per-thread buffer and col2im-adds the chunk into dx
// (stores it, without zeroing dx first, where the windows tile the image:
// kernel = stride, no padding, as in 2x2 stride-2 up-convolutions; and for
// a 1x1 layer whose stride tiles the image, writes its terms with the zeros
// between them).
// Threads take whole blocks of the output (image, rows, columns), so no two
// threads write the same element and every sum runs in the same order
// whatever the thread count: results are bitwise reproducible.
//
// 3x3 stride-1 layers with enough channels (C, K >= 64; a weight gradient
// too large to run in bands from 128; rules measured in conv2d.cpp) run Winograd F(4x4, 3x3)
// instead (conv2d_winograd.h): 4x fewer multiplies, rounding errors a few
// times the direct sum's (~1e-5 of the output's scale), and a non-finite
// input spreads to every output of its 4x4 tiles. Shallow layers (at most
// 32 taps) and wide ones (rows of 128 pixels or more) skip the GEMM where
// the CPU has AVX-512F: the direct kernels of conv2d_direct.h (see
// conv2d_forward_takes_direct below).
// f64 (gradient checks) takes the teaching path: explicit im2col into a
// buffer, dgemm, col2im. Both are tested against kernels/ref/conv2d.h.
#pragma once

#include <cstdint>

#include "kernels/ref/conv2d.h"

namespace crfseg::kernels::cpu {

// col [CRS, PQ] of one image x_img [C, H, W].
template <typename T>
void im2col(const ConvGeometry& g, const T* x_img, T* col);
// dx_img [C, H, W] += the scatter of col [CRS, PQ] (the adjoint of im2col).
template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* dx_img);

// bias may be null. Output buffers are fully overwritten. With relu the
// forward writes max(conv + bias, 0), applied to each block while it is in
// cache (the inference-time conv-BN-ReLU fusion, layers/conv_bn.h); NaN
// passes through, as in batch norm's fused ReLU.
template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, bool relu = false);
template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* dy, const T* w, T* dx);
// db, when not null, also gets the bias gradient: fused into the direct
// kernels' pass over dy, a separate conv2d_backward_bias elsewhere.
template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* dy, const T* x, T* dw, T* db = nullptr);
template <typename T>
void conv2d_backward_bias(const ConvGeometry& g, const T* dy, T* db);

// Where the direct kernels of conv2d_direct.h take over from the implicit
// GEMM (f32, AVX-512F; measured in conv2d.cpp): the forward (not 1x1) with
// at most 32 taps (C*R*S) or output rows of 128 pixels or more (with a
// stride along W only where windows overlap along W and K <= 64: the
// ResNet stem), the stride-1 backward-input when its flipped convolution
// qualifies the same way, and the weight gradient (1x1 and strided too)
// with at most 32 taps, or with rows of 128 or more and C*R*S x K <= 2^20,
// or a small dW. The *_gemm functions always take the implicit-GEMM path (tests
// and benchmarks compare the two); CRFSEG_CONV_DIRECT=0 in the environment
// sends every call that does not run Winograd there, to time whole models
// both ways (with CRFSEG_CONV_WINOGRAD=0 too, every call).
// Whether the call runs Winograd (before any direct or GEMM path);
// CRFSEG_CONV_WINOGRAD=0 in the environment turns it off everywhere.
// 1x1 stride-1 convolutions (forward, and backward-input through it) let the
// GEMM read the input image in place instead of packing it, where the plane
// suits that (not a multiple of 256 pixels); the result is bit for bit the
// same. CRFSEG_CONV_B_IN_PLACE=0 turns it off. Returns the previous setting
// (tests and bench_conv compare the two). The same setting lets the
// Winograd forward (whole batch and in bands) read its transformed inputs
// in place (conv2d_winograd.cpp).
bool set_conv_b_in_place(bool on);
bool conv_b_in_place();
// Whether conv2d_forward's GEMM reads g's input in place (1x1, stride 1, not
// folded into a batch GEMM, a suitable plane, the setting on). With f32.
bool conv2d_forward_reads_b_in_place(const ConvGeometry& g);

bool conv2d_forward_takes_winograd(const ConvGeometry& g);
bool conv2d_backward_input_takes_winograd(const ConvGeometry& g);
bool conv2d_weight_grad_takes_winograd(const ConvGeometry& g);
bool conv2d_forward_takes_direct(const ConvGeometry& g);
bool conv2d_backward_input_takes_direct(const ConvGeometry& g);
bool conv2d_weight_grad_takes_direct(const ConvGeometry& g);
// Whether the forward runs the GEMM with the batch folded into its columns
// (more than one image of fewer than 256 output pixels each; conv2d.cpp,
// fold_batch). The stride-1 backward-input's flipped convolution folds alike.
bool conv2d_forward_folds_batch(const ConvGeometry& g);
void conv2d_forward_gemm(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y,
                         bool relu = false);
void conv2d_backward_input_gemm(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void conv2d_backward_weight_gemm(const ConvGeometry& g, const float* dy, const float* x, float* dw);

}  // namespace crfseg::kernels::cpu
