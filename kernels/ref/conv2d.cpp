// Reference convolution loops; see conv2d.h. Deliberately unoptimised: one
// output (or gradient) element at a time, double accumulators, no OpenMP.
#include "kernels/ref/conv2d.h"

#include <cstddef>
#include <vector>

namespace crfseg::kernels::ref {

namespace {

// Calls fn(h, w) for the input pixel that kernel tap (r, s) of output pixel
// (p, q) reads, if it lies inside the image.
template <typename Fn>
inline void for_tap(const ConvGeometry& g, int64_t p, int64_t q, int64_t r, int64_t s, Fn fn) {
  const int64_t h = p * g.sh - g.ph + r * g.dh;
  const int64_t w = q * g.sw - g.pw + s * g.dw;
  if (h >= 0 && h < g.H && w >= 0 && w < g.W) fn(h, w);
}

}  // namespace

template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t p = 0; p < g.P; ++p)
        for (int64_t q = 0; q < g.Q; ++q) {
          double acc = bias ? static_cast<double>(bias[k]) : 0.0;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t r = 0; r < g.R; ++r)
              for (int64_t s = 0; s < g.S; ++s)
                for_tap(g, p, q, r, s, [&](int64_t h, int64_t ww) {
                  acc += static_cast<double>(w[((k * g.C + c) * g.R + r) * g.S + s]) *
                         static_cast<double>(x[((n * g.C + c) * g.H + h) * g.W + ww]);
                });
          y[((n * g.K + k) * g.P + p) * g.Q + q] = static_cast<T>(acc);
        }
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  std::vector<double> acc(static_cast<size_t>(g.N * g.C * g.H * g.W), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t p = 0; p < g.P; ++p)
        for (int64_t q = 0; q < g.Q; ++q) {
          const double d = dy[((n * g.K + k) * g.P + p) * g.Q + q];
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t r = 0; r < g.R; ++r)
              for (int64_t s = 0; s < g.S; ++s)
                for_tap(g, p, q, r, s, [&](int64_t h, int64_t ww) {
                  acc[((n * g.C + c) * g.H + h) * g.W + ww] += d * w[((k * g.C + c) * g.R + r) * g.S + s];
                });
        }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s) {
          double acc = 0.0;
          for (int64_t n = 0; n < g.N; ++n)
            for (int64_t p = 0; p < g.P; ++p)
              for (int64_t q = 0; q < g.Q; ++q)
                for_tap(g, p, q, r, s, [&](int64_t h, int64_t ww) {
                  acc += static_cast<double>(dy[((n * g.K + k) * g.P + p) * g.Q + q]) *
                         static_cast<double>(x[((n * g.C + c) * g.H + h) * g.W + ww]);
                });
          dw[((k * g.C + c) * g.R + r) * g.S + s] = static_cast<T>(acc);
        }
}

template <typename T>
void conv2d_backward_bias(const ConvGeometry& g, const T* dy, T* db) {
  for (int64_t k = 0; k < g.K; ++k) {
    double acc = 0.0;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = 0; i < g.pq(); ++i) acc += dy[(n * g.K + k) * g.pq() + i];
    db[k] = static_cast<T>(acc);
  }
}

#define CRFSEG_INSTANTIATE(T)                                                             \
  template void conv2d_forward<T>(const ConvGeometry&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_input<T>(const ConvGeometry&, const T*, const T*, T*);   \
  template void conv2d_backward_weight<T>(const ConvGeometry&, const T*, const T*, T*);  \
  template void conv2d_backward_bias<T>(const ConvGeometry&, const T*, T*);
CRFSEG_INSTANTIATE(float)
CRFSEG_INSTANTIATE(double)
#undef CRFSEG_INSTANTIATE

}  // namespace crfseg::kernels::ref
