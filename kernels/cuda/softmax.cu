// CUDA softmax family (see softmax.h).
#include <math_constants.h>

#include <cmath>

#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/softmax.h"
#include "kernels/hd.h"

namespace crfseg::kernels::cuda {

template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner, bool log, Stream stream) {
  for_each(outer * inner, [=] __device__(int64_t p) {
    const int64_t o = quotient(p, inner), i = p - o * inner;  // 32-bit where it fits (hd.h)
    const T* xo = x + o * C * inner + i;
    T* yo = y + o * C * inner + i;
    T mx = xo[0];
    for (int64_t c = 1; c < C; ++c) mx = mx < xo[c * inner] ? xo[c * inner] : mx;  // std::max, as on the CPU
    T sum = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T e = std::exp(xo[c * inner] - mx);
      sum += e;
      if (!log) yo[c * inner] = e;
    }
    if (log) {
      const T lse = mx + std::log(sum);
      for (int64_t c = 0; c < C; ++c) yo[c * inner] = xo[c * inner] - lse;
    } else {
      const T r = T(1) / sum;
      for (int64_t c = 0; c < C; ++c) yo[c * inner] *= r;
    }
  }, stream, "softmax_forward");
}

template <typename T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t outer, int64_t C, int64_t inner, bool log,
                      Stream stream) {
  for_each(outer * inner, [=] __device__(int64_t p) {
    const int64_t o = quotient(p, inner), base = o * C * inner + (p - o * inner);
    // softmax: dot = sum_k g_k y_k;  log_softmax: dot = sum_k g_k
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = base + c * inner;
      dot += log ? g[k] : g[k] * y[k];
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = base + c * inner;
      dx[k] = log ? g[k] - std::exp(y[k]) * dot : y[k] * (g[k] - dot);
    }
  }, stream, "softmax_backward");
}

template <typename T>
void cross_entropy_terms(const T* log_probs, const int64_t* target, const T* weight, int64_t outer, int64_t C,
                         int64_t inner, int64_t ignore_index, double* terms, Stream stream) {
  const int64_t P = outer * inner;
  for_each(P, [=] __device__(int64_t p) {
    const int64_t t = target[p];
    double loss = 0.0, w = 0.0, bad = 0.0;
    if (t != ignore_index) {
      if (t < 0 || t >= C) {
        bad = 1.0;
      } else {
        w = weight ? static_cast<double>(weight[t]) : 1.0;
        const int64_t o = quotient(p, inner);
        loss = -w * static_cast<double>(log_probs[(o * C + t) * inner + (p - o * inner)]);
      }
    }
    terms[p] = loss;
    terms[P + p] = w;
    terms[2 * P + p] = bad;
  }, stream, "cross_entropy_terms");
}

template <typename T>
void cross_entropy_finish(const double* sums, T* loss, int64_t* bad, Stream stream) {
  for_each(1, [=] __device__(int64_t) {
    const int64_t b = static_cast<int64_t>(sums[2]);
    *bad = b;
    // As the CPU's: a double quotient, rounded once to T (0/0 is NaN).
    *loss = static_cast<T>(b > 0 || sums[1] == 0.0 ? CUDART_NAN : sums[0] / sums[1]);
  }, stream, "cross_entropy_finish");
}

template <typename T>
void cross_entropy_backward(const T* grad, const double* weight_sum, const T* log_probs, const int64_t* target,
                            const T* weight, T* dx, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index,
                            Stream stream) {
  for_each(outer * C * inner, [=] __device__(int64_t k) {
    const double scale = static_cast<double>(grad[0]) / weight_sum[0];  // the host's grad.item() / weight_sum
    const int64_t row = quotient(k, inner), i = k - row * inner, o = quotient(row, C), c = row - o * C;
    const int64_t t = target[o * inner + i];
    if (t == ignore_index) {
      dx[k] = T(0);
      return;
    }
    if (t < 0 || t >= C) {  // the forward's deferred check reports it; weight[t] would read out of bounds
      dx[k] = static_cast<T>(CUDART_NAN);
      return;
    }
    const double w = weight ? static_cast<double>(weight[t]) : 1.0;
    dx[k] = static_cast<T>(scale * w * (std::exp(static_cast<double>(log_probs[k])) - (t == c ? 1.0 : 0.0)));
  }, stream, "cross_entropy_backward");
}

#define CRFSEG_SOFTMAX(T)                                                                                    \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t, int64_t, bool, Stream);                 \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool, Stream);      \
  template void cross_entropy_terms<T>(const T*, const int64_t*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                       double*, Stream);                                                   \
  template void cross_entropy_finish<T>(const double*, T*, int64_t*, Stream);                             \
  template void cross_entropy_backward<T>(const T*, const double*, const T*, const int64_t*, const T*, T*,   \
                                          int64_t, int64_t, int64_t, int64_t, Stream);
CRFSEG_SOFTMAX(float)
CRFSEG_SOFTMAX(double)
#undef CRFSEG_SOFTMAX

}  // namespace crfseg::kernels::cuda
