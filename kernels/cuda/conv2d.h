// CUDA convolution, three paths. im2col + GEMM forward, GEMM + col2im
// backward-input, im2col + GEMM backward-weight (the safe reference path;
// the GEMMs go through kernels/cuda/gemm, so cuBLAS by default); an
// implicit GEMM that gathers its tiles from the tensors (conv2d_implicit.cu);
// and Winograd F(2x2, 3x3) or F(4x4, 3x3) for 3x3 stride-1 layers
// (conv2d_winograd.cu).
// The GPU side of tensor/ops_conv.cpp, with kernels/ref/conv2d.h's geometry.
//
// Per image n, with CRS = C*R*S and PQ = P*Q:
//   forward          col = im2col(x_n) [CRS, PQ];  y_n [K, PQ] = W [K, CRS] @ col; y += bias
//   backward-input   col = W^T @ g_n [CRS, PQ];    dx_n = col2im(col)
//                    (or, stride 1: the forward of the flipped filters over g;
//                    see backward_input_plan)
//   backward-weight  dW [K, CRS] += g_n [K, PQ] @ im2col(x_n)^T
// (several images per step: conv_group_images, conv_weight_grad_images).
// col2im gathers (each input pixel sums the columns that read it), so no
// atomics: every result is deterministic. `col` is a caller-provided workspace:
// col_elems(g, images) elements for the forward (which takes the group
// size), backward_input_plan(g).workspace for the backward-input,
// col_elems_weight_grad(g, images) for the weight gradient.
// Test: tests/cuda/test_cuda_conv.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"
#include "kernels/cuda/winograd_rules.h"
#include "kernels/ref/conv2d.h"

namespace crfseg::kernels::cuda {

// The forward and the backward-input run up to conv_group_images(g)
// images per step: one im2col or col2im over their channels together (the
// images are contiguous, so they are C' = images C channels of one
// [C', H, W] block) and one strided-batched GEMM, so that deep layers'
// small per-image products give the GPU enough tiles. The group is as many
// images as fit a column workspace of conv_workspace_limit() elements (at
// least one image). The weight gradient sums over a group's images in one
// GEMM instead (conv_weight_grad_images, col_elems_weight_grad).
int64_t conv_group_images(const ConvGeometry& g);
// The limit in elements (default 2^26: 256 MB of f32 columns); the setter
// returns the previous one (tests make groups that do not divide N).
int64_t conv_workspace_limit();
int64_t set_conv_workspace_limit(int64_t elems);
// The images of a group whose per_image workspace elements fit the limit
// (at least 1, at most N): the rule of every path's groups.
int64_t conv_images_within_limit(int64_t per_image, int64_t N);
// A caller's group size, checked (ValueError naming `op` below 1) and cut to N.
int64_t conv_checked_group(const ConvGeometry& g, int64_t images, const char* op);

// Workspace elements for `images` images (none for pointwise convolutions,
// which read x or write dx in place of columns).
inline int64_t col_elems(const ConvGeometry& g, int64_t images) {
  return g.is_pointwise() ? 0 : images * g.crs() * g.pq();
}
// The weight gradient's workspace: one image needs its columns (none when
// pointwise); a group of several needs its columns (or its x, transposed,
// when pointwise) and its g, each regrouped channel by channel.
// g's copy starts at weight_grad_g_offset, a multiple of 64 elements (256
// bytes for f32), as cuBLAS's tensor-core kernels prefer.
inline int64_t weight_grad_g_offset(const ConvGeometry& g, int64_t images) {
  return (images * (g.is_pointwise() ? g.C : g.crs()) * g.pq() + 63) / 64 * 64;
}
inline int64_t col_elems_weight_grad(const ConvGeometry& g, int64_t images) {
  if (images <= 1) return col_elems(g, 1);
  return weight_grad_g_offset(g, images) + images * g.K * g.pq();
}
// As conv_group_images, for the weight gradient's workspace; 1 for planes
// of 4096 outputs and more, whose per-image GEMMs are deep enough already
// (grouping would only add the copies).
int64_t conv_weight_grad_images(const ConvGeometry& g);

// `images`: the group size the caller sized `col` for, col_elems(g, images)
// elements (conv_group_images(g), read once: the limit is process-wide).
template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* col, int64_t images,
                    Stream stream);
// The backward-input of a stride-1, undilated layer may also run as the
// forward of the flipped, transposed filters (W'[c, k, r, s] = W[k, c, R-1-r,
// S-1-s] at padding R-1-p, im2col_rules.h) over im2col of the output
// gradient: K R S H W columns instead of col2im's C R S P Q (half for the
// decoder's layers, K = C / 2), a GEMM as well shaped as the forward's
// rather than one K deep, and at bf16 precision columns made in BF16
// (col2im's are the GEMM's FP32 output). It runs where its columns take no
// more bytes than col2im's (K R S H W against C R S P Q values, BF16 ones
// counting half), when conv_flipped_backward_input() is on: off by default
// (CRFSEG_CUDA_CONV_FLIP=1 turns it on) until gpu-check has compared the
// two on a device. The plan holds the choice, the image group and the
// workspace in elements (the flipped filters, then the forward's columns);
// the caller sizes `col` from it and passes it back, so the choice cannot
// change in between.
struct BackwardInputPlan {
  bool flipped;
  int64_t images, workspace;
};
bool conv_flipped_backward_input();
bool set_conv_flipped_backward_input(bool on);  // returns the previous setting
template <typename T>
BackwardInputPlan backward_input_plan(const ConvGeometry& g);
// The flipped filters W' [C, K, R, S] of W [K, C, R, S] (also the implicit
// path's stride-1 backward-input).
template <typename T>
void flip_filters(const ConvGeometry& g, const T* w, T* flipped, Stream stream);
template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* col,
                           const BackwardInputPlan& plan, Stream stream);
// The weight gradient's group, conv_weight_grad_images(g), runs as one GEMM
// whose depth is the group's pixels; col holds col_elems_weight_grad(g,
// images) elements.
template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* col, int64_t images,
                            Stream stream);

// The implicit-GEMM path (conv2d_implicit.cu): the same three passes with
// the operand tiles gathered from x, W and g; no column matrix in memory.
// In float the forward, the weight gradient (its depth split into chunks
// whose partial sums go to `work`: implicit_backward_weight_workspace(g)
// elements) and the backward-input of stride-1 undilated layers (as the
// forward of the flipped, transposed filters, written to `work`:
// implicit_backward_input_workspace(g) elements) or of layers whose
// windows do not overlap (one GEMM scattered onto dx) run on the tiled
// SGEMM kernel of v4/v8, at bf16 precision on its tensor-core form
// (gemm/tiled_bf16.cuh); a workspace size of 0 means none is needed.
template <typename T>
void conv2d_forward_implicit(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, Stream stream);
// Whether the float backward-input runs tiled (stride 1, no dilation, as
// the forward of the flipped filters; or windows that do not overlap). The
// ops run im2col's where it does not, as for Winograd's inapplicable
// layers: the generic kernel, which f64 keeps, is a reference many times
// slower (the U-Net's 2x2 stride-2 up-convolutions would otherwise run
// their forwards on it).
bool implicit_backward_input_tiled(const ConvGeometry& g);
template <typename T>
int64_t implicit_backward_input_workspace(const ConvGeometry& g);
template <typename T>
void conv2d_backward_input_implicit(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* work, Stream stream);
template <typename T>
int64_t implicit_backward_weight_workspace(const ConvGeometry& g);
template <typename T>
void conv2d_backward_weight_implicit(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* work,
                                     Stream stream);

// The Winograd F(m x m, 3x3) path, m = `tile` = 2 or 4 (conv2d_winograd.cu;
// winograd_rules.h has the algorithm): the forward of a geometry
// winograd_applies accepts, with w the geometry's own [K, C, 3, 3]
// filters, or, when `backward`, the forward's filters ([C, K, 3, 3]) that
// winograd_backward_input_geometry's convolution uses flipped (then x is
// the output gradient, y the input gradient, bias null); and the weight
// gradient (F(3x3, m x m)), dw [K, C, 3, 3] from dy [N, K, P, Q] and x.
// `work` holds winograd_workspace(g, tile, images) elements; image groups
// of winograd_group_images(g, tile) keep their tiles (V and M, or V and
// E') within the workspace limit (the filters' a^2 K C come on top).
int64_t winograd_group_images(const ConvGeometry& g, int tile);
int64_t winograd_workspace(const ConvGeometry& g, int tile, int64_t images);
template <typename T>
void conv2d_winograd(const ConvGeometry& g, int tile, const T* x, const T* w, bool backward, const T* bias, T* y,
                     T* work, int64_t images, Stream stream);
template <typename T>
void conv2d_backward_weight_winograd(const ConvGeometry& g, int tile, const T* dy, const T* x, T* dw, T* work,
                                     int64_t images, Stream stream);

// Which path the ops take: im2col + GEMM (the default, the safe reference),
// implicit GEMM (a float backward-input it has no tiled kernel for runs
// im2col's), or Winograd with 2x2 or 4x4 output tiles (3x3 stride-1
// layers; other convolutions then run im2col); or autotune: per pass and
// layer, whichever of those runs fastest when first timed
// (kernels/conv_autotune.h; not bit-reproducible from run to run). The
// environment variable CRFSEG_CUDA_CONV=im2col|implicit|winograd|winograd4|
// auto sets it at start; set_conv_algorithm changes it (tests run each) and
// returns the previous one. conv_algorithm_name gives the name
// CRFSEG_CUDA_CONV spells it with; winograd_tile the algorithm's tile, 0 for
// the others. kConvAlgorithms lists the concrete algorithms (not autotune).
enum class ConvAlgorithm { im2col, implicit_gemm, winograd, winograd4, autotune };
inline constexpr ConvAlgorithm kConvAlgorithms[] = {ConvAlgorithm::im2col, ConvAlgorithm::implicit_gemm,
                                                    ConvAlgorithm::winograd, ConvAlgorithm::winograd4};
const char* conv_algorithm_name(ConvAlgorithm algorithm);
inline int winograd_tile(ConvAlgorithm a) {
  return a == ConvAlgorithm::winograd ? 2 : a == ConvAlgorithm::winograd4 ? 4 : 0;
}
ConvAlgorithm conv_algorithm();
ConvAlgorithm set_conv_algorithm(ConvAlgorithm algorithm);

// The two data movements, exposed for tests and benchmarks.
// col[(c R + r) S + s][p Q + q] = x[c][p sh - ph + r dh][q sw - pw + s dw] (0 outside)
template <typename T>
void im2col(const ConvGeometry& g, const T* x_image, T* col, Stream stream);
// x_image[c][h][w] = sum of the col entries im2col would fill from (c, h, w)
template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* x_image, Stream stream);

}  // namespace crfseg::kernels::cuda
