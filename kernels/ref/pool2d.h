// Reference 2-D pooling: max, average and adaptive average, forward and
// backward, on contiguous NCHW data seen as `planes` = N*C independent H x W
// planes. Plain loops that follow torch's definitions literally and
// accumulate in double: the oracle kernels/cpu/pool2d.* is tested against.
//
// Output size (torch's pooling_output_shape; P for H, Q alike):
//   P = floor((H + 2 pad - dil (k - 1) - 1) / stride) + 1
//   ceil_mode: the division rounds up instead, and then the last window is
//   dropped if it would start at or after H + pad (outside the padded input).
// Window of output row oh: rows oh*stride - pad + j*dil for j in [0, k).
//  - max: out-of-range rows/columns are -inf padding (never chosen). The
//    first valid element starts the scan and later ones replace it when
//    strictly greater or NaN (so NaN propagates and ties keep the first).
//    A window with no valid element (possible only with dilation) gives
//    -inf and index -1, where torch reports an out-of-range index.
//  - avg: sum of the valid elements divided by the window size clipped to the
//    padded input [-pad, H + pad) (count_include_pad) or to [0, H) (not);
//    a window with no valid element gives 0.
//  - adaptive avg: row window [floor(oh H / P), ceil((oh + 1) H / P)).
// Tests: build/tests/test_kernels -tc='*pool*'.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels {

// Geometry of one pooling call, shared by the ref:: and cpu:: kernels.
// planes = N * C; [H, W] input plane; [P, Q] output plane. The caller
// (tensor/ops_pool.cpp) has validated it and computed P, Q with
// pool2d_output_size.
struct Pool2dGeometry {
  int64_t planes = 1;
  int64_t H = 1, W = 1;
  int64_t P = 1, Q = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;  // average pooling requires 1
};

// floor(a / b) for b > 0 and any sign of a (C++ '/' truncates toward zero).
constexpr int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Output length of one pooled dimension, torch's pooling_output_shape. May be
// <= 0 for an input too small for the window; the caller rejects that.
constexpr int64_t pool2d_output_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dil,
                                     bool ceil_mode) {
  const int64_t span = in + 2 * pad - dil * (kernel - 1) - 1;
  int64_t out = floor_div(span + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// The window of average-pool output `o` along one dimension: [start, end)
// clipped to the real input, and torch's divisor factor (the window clipped
// to the padded input, or to the real one without count_include_pad; a
// ceil_mode overhang past the padding is not counted). CRFSEG_HD: the
// reference and the CUDA kernels share these rules.
struct AvgWindow {
  int64_t start, end, divisor;
};
CRFSEG_HD inline AvgWindow avg_window(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                      bool count_include_pad) {
  const int64_t padded_start = o * stride - pad;
  const int64_t padded_end = padded_start + kernel < in + pad ? padded_start + kernel : in + pad;
  const int64_t start = padded_start > 0 ? padded_start : 0;
  const int64_t end = padded_end < in ? padded_end : in;
  return {start, end, count_include_pad ? padded_end - padded_start : end - start};
}

// The outputs [*lo, *hi) along one dimension whose window (stride s, pad
// p, spanning `span` = dil (k - 1) + 1 input positions) covers input
// position i: those o with o s - p <= i <= o s - p + span - 1.
CRFSEG_HD inline void covering_outputs(int64_t i, int64_t span, int64_t s, int64_t p, int64_t out, int64_t* lo,
                                       int64_t* hi) {
  const int64_t a = i + p - (span - 1);  // o s >= a
  *lo = a <= 0 ? 0 : quotient(a + s - 1, s);
  const int64_t last = quotient(i + p, s) + 1;  // o s <= i + p (i, p >= 0)
  *hi = last < out ? last : out;
}

// Whether the flat plane position idx = h W + w lies in the window of
// max-pool output (oh, ow): h = oh stride_h - pad_h + i dil_h for some i in
// [0, kernel_h), and likewise w. Every index max_pool2d_forward writes
// (other than -1) does.
CRFSEG_HD inline bool in_max_window(int64_t idx, int64_t oh, int64_t ow, const Pool2dGeometry& g) {
  if (idx < 0 || idx >= g.H * g.W) return false;
  const int64_t h = idx / g.W;
  const int64_t dh = h + g.pad_h - oh * g.stride_h, dw = idx - h * g.W + g.pad_w - ow * g.stride_w;
  return dh >= 0 && dh <= (g.kernel_h - 1) * g.dil_h && (g.dil_h == 1 || dh % g.dil_h == 0) &&  //
         dw >= 0 && dw <= (g.kernel_w - 1) * g.dil_w && (g.dil_w == 1 || dw % g.dil_w == 0);
}

// The max-pool backward as a gather: dx at input (ih, iw) of one plane is
// the sum of grad[o] over the outputs o whose index is ih W + iw, taken in
// increasing o as the scatter (ref::max_pool2d_backward) adds them, so the
// two agree bit for bit in T. Only outputs whose window covers (ih, iw) are
// visited, which finds them all when every index lies in its own window
// (in_max_window). grad and indices point at the plane's [P, Q] outputs.
template <typename T>
CRFSEG_HD inline T max_pool_gather(const T* grad, const int64_t* indices, int64_t ih, int64_t iw,
                                   const Pool2dGeometry& g) {
  int64_t h0, h1, w0, w1;
  covering_outputs(ih, (g.kernel_h - 1) * g.dil_h + 1, g.stride_h, g.pad_h, g.P, &h0, &h1);
  covering_outputs(iw, (g.kernel_w - 1) * g.dil_w + 1, g.stride_w, g.pad_w, g.Q, &w0, &w1);
  const int64_t idx = ih * g.W + iw;
  T acc = T(0);
  for (int64_t oh = h0; oh < h1; ++oh)
    for (int64_t ow = w0; ow < w1; ++ow)
      if (indices[oh * g.Q + ow] == idx) acc += grad[oh * g.Q + ow];
  return acc;
}

// Adaptive window along one dimension: [floor(o in / out), ceil((o + 1) in / out)).
CRFSEG_HD inline int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
CRFSEG_HD inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

}  // namespace crfseg::kernels

namespace crfseg::kernels::ref {

// y, indices: [planes, P, Q]. indices hold the flat h * W + w of each max
// inside its plane (-1 for a window with no valid element).
template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g);

// dx [planes, H, W] = 0, then dx[indices[o]] += grad[o] for every output o
// (index -1 is skipped). Returns -1 when every index is valid, else the flat
// position of the first one that is neither -1 nor in [0, H*W) (dx is then
// unspecified).
template <typename T>
int64_t max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g);

// y [planes, P, Q]. Dilation must be 1.
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad);

// dx [planes, H, W]: every valid element of window o receives grad[o] / divisor(o).
template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad);

// x [planes, H, W] -> y [planes, P, Q]; any P, Q >= 1 (also larger than H, W).
template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

}  // namespace crfseg::kernels::ref
