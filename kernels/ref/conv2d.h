// Reference 2-D convolution (NCHW, cross-correlation as in every DL
// framework): the direct seven-loop definition, accumulating in double.
//   y[n,k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]
// with out-of-range x taken as 0. The backward kernels scatter/gather the
// same index map, so each is obviously the adjoint of the forward:
//   dx[n,c,h,w]  = sum over (k,p,q,r,s) with h = p*sh - ph + r*dh, w = ... of w[k,c,r,s] * dy[n,k,p,q]
//   dw[k,c,r,s]  = sum_{n,p,q} dy[n,k,p,q] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]
//   db[k]        = sum_{n,p,q} dy[n,k,p,q]
// The oracle for kernels/cpu/conv2d.* in tests/kernels/test_conv2d.cpp.
#pragma once

#include <cstdint>

namespace crfseg::kernels {

// Sizes and hyper-parameters of one convolution; P and Q are the output size.
struct ConvGeometry {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height and width
  int64_t P, Q;        // output height and width
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;

  int64_t crs() const { return C * R * S; }
  int64_t hw() const { return H * W; }
  int64_t pq() const { return P * Q; }
  bool is_pointwise() const {  // 1x1, stride 1, no padding: a plain GEMM over pixels
    return R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
  }
};

}  // namespace crfseg::kernels

namespace crfseg::kernels::ref {

// bias may be null.
template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* dy, const T* w, T* dx);
template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* dy, const T* x, T* dw);
template <typename T>
void conv2d_backward_bias(const ConvGeometry& g, const T* dy, T* db);

}  // namespace crfseg::kernels::ref
