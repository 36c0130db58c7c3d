// CUDA convolution by im2col + GEMM (see conv2d.h).
#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  } else {
    dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  }
}

std::atomic<int> g_conv_algorithm{-1};  // -1: not chosen yet (read CRFSEG_CUDA_CONV)

}  // namespace

ConvAlgorithm conv_algorithm() {
  int a = g_conv_algorithm.load();
  if (a < 0) {
    const char* env = std::getenv("CRFSEG_CUDA_CONV");
    const std::string v = env == nullptr ? "" : env;
    CRFSEG_CHECK(v.empty() || v == "im2col" || v == "implicit", ValueError,
                 "CRFSEG_CUDA_CONV: expected im2col or implicit, got '", v, "'");
    int expected = -1;
    g_conv_algorithm.compare_exchange_strong(
        expected, static_cast<int>(v == "implicit" ? ConvAlgorithm::implicit_gemm : ConvAlgorithm::im2col));
    a = g_conv_algorithm.load();
  }
  return static_cast<ConvAlgorithm>(a);
}
ConvAlgorithm set_conv_algorithm(ConvAlgorithm algorithm) {
  const ConvAlgorithm previous = conv_algorithm();
  g_conv_algorithm.store(static_cast<int>(algorithm));
  return previous;
}

template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col, Stream stream) {
  const ConvGeometry c = g;  // by value into the lambda (its methods are host-only)
  const int64_t PQ = g.pq();
  for_each(g.crs() * PQ, [=] __device__(int64_t i) {
    const int64_t q = i % c.Q, p = (i / c.Q) % c.P, row = i / PQ;
    const int64_t s = row % c.S, r = (row / c.S) % c.R, ch = row / (c.R * c.S);
    const int64_t h = p * c.sh - c.ph + r * c.dh, w = q * c.sw - c.pw + s * c.dw;
    col[i] = (h >= 0 && h < c.H && w >= 0 && w < c.W) ? x[(ch * c.H + h) * c.W + w] : T(0);
  }, stream, "im2col");
}

template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* x, Stream stream) {
  const ConvGeometry c = g;
  const int64_t PQ = g.pq(), HW = g.hw();
  for_each(g.C * HW, [=] __device__(int64_t i) {
    const int64_t w = i % c.W, h = (i / c.W) % c.H, ch = i / HW;
    T acc = T(0);
    // Tap (r, s) reads (h, w) from output (p, q) when h = p sh - ph + r dh, i.e.
    // p = (h + ph - r dh) / sh exactly; likewise q.
    for (int64_t r = 0; r < c.R; ++r) {
      const int64_t ph_ = h + c.ph - r * c.dh;
      if (ph_ < 0 || ph_ % c.sh != 0 || ph_ / c.sh >= c.P) continue;
      const int64_t p = ph_ / c.sh;
      for (int64_t s = 0; s < c.S; ++s) {
        const int64_t qw = w + c.pw - s * c.dw;
        if (qw < 0 || qw % c.sw != 0 || qw / c.sw >= c.Q) continue;
        const int64_t q = qw / c.sw;
        acc += col[((ch * c.R + r) * c.S + s) * PQ + p * c.Q + q];
      }
    }
    x[i] = acc;
  }, stream, "col2im");
}

template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* xn = x + n * g.C * g.hw();
    T* yn = y + n * g.K * g.pq();
    if (g.is_pointwise()) {  // x_n is already the [C, PQ] column matrix
      gemm<T>(false, false, g.K, g.pq(), g.C, T(1), w, g.C, xn, g.pq(), T(0), yn, g.pq(), stream);
    } else {
      im2col<T>(g, xn, col, stream);
      gemm<T>(false, false, g.K, g.pq(), g.crs(), T(1), w, g.crs(), col, g.pq(), T(0), yn, g.pq(), stream);
    }
  }
  if (bias != nullptr) {
    const int64_t K = g.K, PQ = g.pq();
    for_each(g.N * K * PQ, [=] __device__(int64_t i) { y[i] += bias[(i / PQ) % K]; }, stream, "conv2d_bias");
  }
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* gn = grad + n * g.K * g.pq();
    T* dxn = dx + n * g.C * g.hw();
    if (g.is_pointwise()) {
      gemm<T>(true, false, g.C, g.pq(), g.K, T(1), w, g.C, gn, g.pq(), T(0), dxn, g.pq(), stream);
    } else {
      gemm<T>(true, false, g.crs(), g.pq(), g.K, T(1), w, g.crs(), gn, g.pq(), T(0), col, g.pq(), stream);
      col2im<T>(g, col, dxn, stream);
    }
  }
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* gn = grad + n * g.K * g.pq();
    const T* xn = x + n * g.C * g.hw();
    const T beta = n == 0 ? T(0) : T(1);  // the first image overwrites dw (it may hold garbage)
    if (g.is_pointwise()) {
      gemm<T>(false, true, g.K, g.C, g.pq(), T(1), gn, g.pq(), xn, g.pq(), beta, dw, g.C, stream);
    } else {
      im2col<T>(g, xn, col, stream);
      gemm<T>(false, true, g.K, g.crs(), g.pq(), T(1), gn, g.pq(), col, g.pq(), beta, dw, g.crs(), stream);
    }
  }
  if (g.N == 0) {
    const int64_t n = g.K * g.crs();
    for_each(n, [=] __device__(int64_t i) { dw[i] = T(0); }, stream, "conv2d_backward_weight_zero");
  }
}

#define CRFSEG_CONV(T)                                                                                    \
  template void im2col<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void col2im<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void conv2d_forward<T>(const ConvGeometry&, const T*, const T*, const T*, T*, T*, Stream);    \
  template void conv2d_backward_input<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);       \
  template void conv2d_backward_weight<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);
CRFSEG_CONV(float)
CRFSEG_CONV(double)
#undef CRFSEG_CONV

}  // namespace crfseg::kernels::cuda
