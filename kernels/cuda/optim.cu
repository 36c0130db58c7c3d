// Fused CUDA optimizer steps (see optim.h): the CPU loops' bodies, one
// thread per element. Memory-bound: SGD with momentum moves 12 bytes per f32
// element, Adam 28.
#include <cmath>

#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/optim.h"

namespace crfseg::kernels::cuda {

template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, SgdStep c, Stream stream) {
  const T lr = static_cast<T>(c.lr), wd = static_cast<T>(c.weight_decay);
  const T mu = static_cast<T>(c.momentum), keep = static_cast<T>(1.0 - c.dampening);
  const bool use_wd = c.weight_decay != 0.0, maximize = c.maximize, nesterov = c.nesterov, first = c.first;
  for_each(n, [=] __device__(int64_t i) {
    T d = maximize ? -g[i] : g[i];
    if (use_wd) d += wd * p[i];
    if (buf != nullptr) {
      const T b = first ? d : mu * buf[i] + keep * d;
      buf[i] = b;
      d = nesterov ? d + mu * b : b;
    }
    p[i] -= lr * d;
  }, stream, "sgd_step");
}

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, AdamStep c, Stream stream) {
  const T decay = static_cast<T>(1.0 - c.lr * c.weight_decay);
  const T wd = static_cast<T>(c.weight_decay);
  const bool l2 = !c.decoupled && c.weight_decay != 0.0, decoupled = c.decoupled && c.weight_decay != 0.0;
  const double w = 1.0 - c.beta1;
  const bool lerp_from_start = std::abs(w) < 0.5;  // torch's lerp: the accurate branch
  const T weight = static_cast<T>(w), one_minus_weight = static_cast<T>(1.0 - w);
  const T beta2 = static_cast<T>(c.beta2), one_minus_beta2 = static_cast<T>(1.0 - c.beta2);
  const T bc2_sqrt = static_cast<T>(c.bias_correction2_sqrt), eps = static_cast<T>(c.eps);
  const T neg_step_size = static_cast<T>(-c.step_size);
  const bool maximize = c.maximize;
  for_each(n, [=] __device__(int64_t i) {
    T grad = maximize ? -g[i] : g[i];
    if (l2) grad += wd * p[i];
    if (decoupled) p[i] *= decay;
    m[i] = lerp_from_start ? m[i] + weight * (grad - m[i]) : grad - (grad - m[i]) * one_minus_weight;
    v[i] = v[i] * beta2 + one_minus_beta2 * grad * grad;
    T second = v[i];
    if (v_max != nullptr) {
      v_max[i] = (v[i] > v_max[i] || v[i] != v[i]) ? v[i] : v_max[i];  // NaN propagates, as torch.maximum
      second = v_max[i];
    }
    const T denom = std::sqrt(second) / bc2_sqrt + eps;
    p[i] += neg_step_size * (m[i] / denom);
  }, stream, "adam_step");
}

template void sgd_step<float>(float*, const float*, float*, int64_t, SgdStep, Stream);
template void sgd_step<double>(double*, const double*, double*, int64_t, SgdStep, Stream);
template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, AdamStep, Stream);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, AdamStep, Stream);

}  // namespace crfseg::kernels::cuda
