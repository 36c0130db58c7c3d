// Tuned CPU 2-D upsampling (nearest and bilinear, forward and backward) on
// contiguous NCHW data, f32 and f64. Same names, signatures and results as
// kernels/ref/upsample.h, which states torch's coordinate maps; this header
// records how the CPU versions compute them and why.
//
// Both modes are separable: the source taps of output (oh, ow) are the taps
// of oh along H times the taps of ow along W. So each call first builds two
// small tables, one entry per output row and per output column (nearest: a
// source index; bilinear: two indices and two weights), instead of
// recomputing floor/clamp per output element as ref does.
// Forward: the N*C*P output rows are split over OpenMP threads (independent
// outputs; rows balance well even for batch 1).
//  - nearest: y[ow] = x_row[src_w[ow]], a table-driven copy from one row.
//  - bilinear: the vertical blend comes first, as one contiguous pass over
//    the two source rows that vectorises,
//      blend[iw] = a0 top[iw] + a1 bottom[iw],
//    and then each output needs two taps instead of four:
//      y[ow] = w0[ow] blend[i0[ow]] + w1[ow] blend[i1[ow]].
//    (Same value as ref's horizontal-then-vertical order up to rounding.)
//    When downsampling a lot (W >> Q) the blend touches W rather than 2Q
//    elements per row, still one cheap streaming pass.
//  The table-driven taps stay scalar loops: GCC emits no gather
//  instructions when tuning for AMD Zen (-march=native here), where they
//  are slow.
// Backward is the adjoint, dx = A_h^T g A_w, computed as a gather rather
// than a scatter: every tap table is non-decreasing, so the outputs that
// read input row ih (or column iw) through a given tap form one contiguous
// run. Per input row: sum the weighted output rows of its runs into a row
// buffer (contiguous, vectorised over Q), then give every input column the
// weighted sum of its runs of that buffer. Each dx element is written
// exactly once by one thread, in a fixed order: deterministic without
// atomics or zero fill, and the N*C*H input rows parallelise like the
// forward (a scatter would need whole planes per thread and serialises on
// repeated read-modify-writes of the same element).
// Tests: build/tests/test_kernels -tc='*upsample*' (cpu vs ref, awkward sizes).
#pragma once

#include <cstdint>
#include <vector>

namespace crfseg::kernels::cpu {

// The taps of one dimension exactly as these kernels use them, for other
// devices' kernels (the CUDA path uploads them): output o reads i0[o] with
// weight w0[o] and i1[o] with w1[o] (nearest: i1 = i0, w1 = 0), weights
// computed in T and widened; input i is read by outputs in [lo[i], hi[i])
// only (lo == hi: by none).
struct UpsampleTaps {
  std::vector<int64_t> i0, i1, lo, hi;
  std::vector<double> w0, w1;
};
template <typename T>
UpsampleTaps upsample_taps(int64_t in, int64_t out, bool bilinear, bool align_corners);

// x [planes, H, W] -> y [planes, P, Q].
template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

// grad [planes, P, Q] -> dx [planes, H, W] (overwritten).
template <typename T>
void upsample_nearest2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q);

template <typename T>
void upsample_bilinear2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 bool align_corners);

template <typename T>
void upsample_bilinear2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                  bool align_corners);

}  // namespace crfseg::kernels::cpu
