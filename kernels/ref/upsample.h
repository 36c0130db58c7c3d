// Reference 2-D upsampling (resizing: also downsampling), nearest and
// bilinear, forward and backward, on contiguous NCHW data seen as `planes` =
// N*C independent planes [H, W] -> [P, Q]. One output element at a time,
// sums in double: the oracle kernels/cpu/upsample.* is tested against.
//
// Source coordinates follow torch.nn.functional.interpolate with an output
// size (no scale_factor), per dimension (dst in [0, out), src in [0, in)):
//  - nearest:  src = min(floor(dst * s), in - 1) with s = in / out, where s
//    and the product are computed in float32 (torch's 'nearest'). This
//    differs from the exact floor(dst * in / out) in rare cases, e.g.
//    in = 2, out = 82, dst = 41 gives 0, not 1. torch's f32 forward and its
//    backward (any dtype) use exactly this float32 rule; its f64 forward
//    rounds in double instead, so for f64 torch's forward can disagree with
//    its own backward in those cases; here both use float32 and agree.
//    torch's 'nearest-exact' mode is not implemented.
//  - bilinear, computed in the tensor's precision T:
//      align_corners = true:  src = dst * (in - 1) / (out - 1)  (0 when out == 1)
//      align_corners = false: src = max((dst + 0.5) * in / out - 0.5, 0)
//    i0 = min(floor(src), in - 1), i1 = i0 + 1 clamped to in - 1,
//    lambda = clamp(src - i0, 0, 1); weights (1 - lambda) at i0, lambda at i1.
//    The 2-D value is the separable product of the two 1-D interpolations.
//    No antialiasing when downsampling (torch's default antialias=false).
// Backward is the adjoint: each output gradient is scattered to the source
// elements with the same weights (nearest: weight 1).
// Tests: build/tests/test_kernels -tc='*upsample*'.
#pragma once

#include <cstdint>

namespace crfseg::kernels::ref {

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

}  // namespace crfseg::kernels::ref
