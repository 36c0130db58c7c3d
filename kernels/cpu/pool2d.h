// Tuned CPU 2-D pooling (max, average, adaptive average; forward and
// backward) on contiguous NCHW data, f32 and f64. Same names, signatures and
// results as kernels/ref/pool2d.h, which states the torch semantics; this
// header records how the CPU versions compute them and why.
//
// Forward kernels split the N*C*P output rows over OpenMP threads: every
// output is independent, and rows keep the work balanced even when N*C is
// smaller than the thread count (batch 1, few channels).
//  - max: each output row is split into border columns (window partly in
//    the -inf padding; a short per-element loop with bounds checks) and the
//    interior, where whole windows are inside the row. The interior runs the
//    window offsets (kh, kw) outside and the output column inside, so the
//    inner loop is "y[ow] = max(y[ow], x[ih][ow*stride + off])", contiguous
//    for stride 1 and vectorisable; the scan order per output is still
//    row-major over the window, so ties and NaN resolve exactly as in ref.
//  - avg / adaptive avg: both have windows that are products of a row range
//    [h0, h1) and a column range [w0, w1) with a divisor that factors as
//    div_h * div_w, so they share one table-driven kernel. Per output row it
//    first sums the window's input rows into one column-sum row (a contiguous,
//    vectorised add of kh rows), then sums kw column sums per output. Cost
//    per output row: kh*W + Q*kw adds instead of Q*kh*kw.
// Backward kernels are deterministic, with no atomics:
//  - max: the argmax is data dependent, so it scatters, dx[indices[o]] +=
//    grad[o] in output order, with each (n, c) plane owned by one thread.
//  - avg / adaptive avg: threads own input rows. Window starts and ends are
//    non-decreasing, so the output rows whose windows contain input row ih
//    are one contiguous run. Per input row: sum the shares g / (div_h div_w)
//    of that run of output rows into a row buffer (vectorised over Q), then
//    spread each column's share over its window's columns of dx[ih]. Every
//    dx row is produced by one thread in a fixed order (no zero-filled plane
//    and read-modify-write passes over it), and the N*C*H input rows
//    parallelise like the forward.
// Sums run in T (as torch's CPU kernels do), so f32 results differ from the
// double-accumulating reference by rounding only.
// Tests: build/tests/test_kernels -tc='*pool*' (cpu vs ref on awkward shapes).
#pragma once

#include <cstdint>

#include "kernels/ref/pool2d.h"  // Pool2dGeometry, pool2d_output_size

namespace crfseg::kernels::cpu {

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g);

// Returns -1, or the flat output position of the first invalid index (see ref).
template <typename T>
int64_t max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g);

// The flat output position of the first index that is neither -1 nor
// inside its own output's window (in_max_window), or -1 when there is none:
// what max_pool2d_backward with the forward's geometry checks on every device.
int64_t max_pool2d_first_outside_window(const int64_t* indices, const Pool2dGeometry& g);

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad);

template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad);

template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

}  // namespace crfseg::kernels::cpu
