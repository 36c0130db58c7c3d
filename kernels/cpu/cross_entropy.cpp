// Fused cross-entropy kernels (see cross_entropy.h).
#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/softmax.h"

namespace crfseg::kernels::cpu {

namespace {
constexpr int64_t kChunks = 64;  // fixed, so the summation order never depends on threads
}

template <typename T>
CrossEntropySums cross_entropy_forward(const T* logits, const int64_t* target, const T* weight, T* log_probs,
                                       int64_t outer, int64_t C, int64_t inner, int64_t ignore_index) {
  softmax_forward(logits, log_probs, outer, C, inner, /*log=*/true);
  const int64_t positions = outer * inner;
  std::vector<double> loss(kChunks, 0.0), wsum(kChunks, 0.0);
  std::vector<int64_t> bad(kChunks, -1);
#pragma omp parallel for schedule(static) if (positions > 4096)
  for (int64_t chunk = 0; chunk < kChunks; ++chunk) {
    const int64_t begin = positions * chunk / kChunks, end = positions * (chunk + 1) / kChunks;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t t = target[p];
      if (t == ignore_index) continue;
      if (t < 0 || t >= C) {
        if (bad[chunk] < 0) bad[chunk] = p;
        continue;
      }
      const int64_t o = p / inner, i = p % inner;
      const double w = weight ? static_cast<double>(weight[t]) : 1.0;
      loss[chunk] -= w * static_cast<double>(log_probs[(o * C + t) * inner + i]);
      wsum[chunk] += w;
    }
  }
  CrossEntropySums sums{0.0, 0.0, -1};
  for (int64_t chunk = 0; chunk < kChunks; ++chunk) {
    sums.loss_sum += loss[chunk];
    sums.weight_sum += wsum[chunk];
    if (sums.first_bad < 0) sums.first_bad = bad[chunk];
  }
  return sums;
}

template <typename T>
void cross_entropy_backward(T grad, const T* log_probs, const int64_t* target, const T* weight, double weight_sum,
                            T* dlogits, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index) {
  const double scale = static_cast<double>(grad) / weight_sum;
#pragma omp parallel for schedule(static) if (outer * C * inner > (1 << 14))
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      const T* lp = log_probs + (o * C + c) * inner;
      T* d = dlogits + (o * C + c) * inner;
      const int64_t* t = target + o * inner;
      for (int64_t i = 0; i < inner; ++i) {
        if (t[i] == ignore_index) {
          d[i] = T(0);
          continue;
        }
        const double w = weight ? static_cast<double>(weight[t[i]]) : 1.0;
        d[i] = static_cast<T>(scale * w * (std::exp(static_cast<double>(lp[i])) - (t[i] == c ? 1.0 : 0.0)));
      }
    }
  }
}

template CrossEntropySums cross_entropy_forward<float>(const float*, const int64_t*, const float*, float*, int64_t,
                                                       int64_t, int64_t, int64_t);
template CrossEntropySums cross_entropy_forward<double>(const double*, const int64_t*, const double*, double*,
                                                        int64_t, int64_t, int64_t, int64_t);
template void cross_entropy_backward<float>(float, const float*, const int64_t*, const float*, double, float*,
                                            int64_t, int64_t, int64_t, int64_t);
template void cross_entropy_backward<double>(double, const double*, const int64_t*, const double*, double, double*,
                                             int64_t, int64_t, int64_t, int64_t);

}  // namespace crfseg::kernels::cpu
