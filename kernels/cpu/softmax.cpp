// Softmax / log-softmax kernels (see softmax.h for the math).
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace crfseg::kernels::cpu {

namespace {
// Columns per task: a block of the inner dim, sized so that the per-column
// scratch (max and sum) stays in L1.
constexpr int64_t kInnerBlock = 256;
}  // namespace

template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner, bool log) {
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for schedule(static) if (outer * C * inner > (1 << 14))
  for (int64_t task = 0; task < outer * blocks; ++task) {
    const int64_t o = task / blocks, i0 = (task % blocks) * kInnerBlock;
    const int64_t n = std::min(kInnerBlock, inner - i0);
    const T* xo = x + o * C * inner + i0;
    T* yo = y + o * C * inner + i0;
    T mx[kInnerBlock], sum[kInnerBlock];
    for (int64_t i = 0; i < n; ++i) mx[i] = xo[i];
    for (int64_t c = 1; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) mx[i] = std::max(mx[i], xo[c * inner + i]);
    for (int64_t i = 0; i < n; ++i) sum[i] = T(0);
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t i = 0; i < n; ++i) {
        const T e = std::exp(xo[c * inner + i] - mx[i]);
        sum[i] += e;
        if (!log) yo[c * inner + i] = e;
      }
    }
    if (log) {
      for (int64_t i = 0; i < n; ++i) sum[i] = mx[i] + std::log(sum[i]);  // logsumexp
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < n; ++i) yo[c * inner + i] = xo[c * inner + i] - sum[i];
    } else {
      for (int64_t i = 0; i < n; ++i) sum[i] = T(1) / sum[i];
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < n; ++i) yo[c * inner + i] *= sum[i];
    }
  }
}

template <typename T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t outer, int64_t C, int64_t inner, bool log) {
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for schedule(static) if (outer * C * inner > (1 << 14))
  for (int64_t task = 0; task < outer * blocks; ++task) {
    const int64_t o = task / blocks, i0 = (task % blocks) * kInnerBlock;
    const int64_t n = std::min(kInnerBlock, inner - i0);
    const int64_t base = o * C * inner + i0;
    T dot[kInnerBlock];
    for (int64_t i = 0; i < n; ++i) dot[i] = T(0);
    // softmax: dot = sum_k g_k y_k;  log_softmax: dot = sum_k g_k
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) dot[i] += log ? g[base + c * inner + i] : g[base + c * inner + i] * y[base + c * inner + i];
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t k = base + c * inner + i;
        dx[k] = log ? g[k] - std::exp(y[k]) * dot[i] : y[k] * (g[k] - dot[i]);
      }
    }
  }
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, bool);

}  // namespace crfseg::kernels::cpu
