// One element of the fused optimizer steps, shared by the CPU loops
// (layers/optim/sgd.cpp, adam.cpp) and the CUDA kernels (kernels/cuda/optim.cu),
// so the two devices run the same operations in the same order: torch's
// single-tensor SGD and Adam (math in layers/optim/sgd.h and adam.h).
// Scalars are cast to T once per step, as torch applies Python floats to
// float tensors.
#pragma once

#include <cmath>

#include "kernels/hd.h"

namespace crfseg::kernels {

struct SgdStep {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool first;  // the momentum buffer is created by this step (b = d, no dampening)
};

template <typename T>
struct SgdConstants {
  T lr, wd, mu, keep;
  bool use_wd, maximize, nesterov, first;
  explicit SgdConstants(const SgdStep& c)
      : lr(static_cast<T>(c.lr)), wd(static_cast<T>(c.weight_decay)), mu(static_cast<T>(c.momentum)),
        keep(static_cast<T>(1.0 - c.dampening)), use_wd(c.weight_decay != 0.0), maximize(c.maximize),
        nesterov(c.nesterov), first(c.first) {}
};

// p -= lr d, with d the (decayed, momentum-filtered) gradient; buf null without momentum.
template <typename T>
CRFSEG_HD inline void sgd_update_element(T& p, T g, T* buf, const SgdConstants<T>& k) {
  T d = k.maximize ? -g : g;
  if (k.use_wd) d += k.wd * p;
  if (buf != nullptr) {
    const T b = k.first ? d : k.mu * *buf + k.keep * d;
    *buf = b;
    d = k.nesterov ? d + k.mu * b : b;
  }
  p -= k.lr * d;
}

struct AdamStep {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled, maximize;
  double step_size;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};

template <typename T>
struct AdamConstants {
  T decay, wd, weight, one_minus_weight, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
  bool l2, decoupled, lerp_from_start, maximize;
  explicit AdamConstants(const AdamStep& c)
      : decay(static_cast<T>(1.0 - c.lr * c.weight_decay)),  // AdamW's factor on p
        wd(static_cast<T>(c.weight_decay)),
        weight(static_cast<T>(1.0 - c.beta1)),
        one_minus_weight(static_cast<T>(1.0 - (1.0 - c.beta1))),  // as torch computes it
        beta2(static_cast<T>(c.beta2)),
        one_minus_beta2(static_cast<T>(1.0 - c.beta2)),
        bc2_sqrt(static_cast<T>(c.bias_correction2_sqrt)),
        eps(static_cast<T>(c.eps)),
        neg_step_size(static_cast<T>(-c.step_size)),
        l2(!c.decoupled && c.weight_decay != 0.0),
        decoupled(c.decoupled && c.weight_decay != 0.0),
        // torch's lerp uses start + w (end - start) for |w| < 0.5 and
        // end - (end - start)(1 - w) otherwise (more accurate near 1).
        lerp_from_start(std::abs(1.0 - c.beta1) < 0.5),
        maximize(c.maximize) {}
};

// torch's order: decay, lerp for m, mul-then-addcmul for v,
// denom = sqrt(v) / sqrt(bc2) + eps, p += (-step_size) * (m / denom).
// v_max null without amsgrad.
template <typename T>
CRFSEG_HD inline void adam_update_element(T& p, T g, T& m, T& v, T* v_max, const AdamConstants<T>& k) {
  T grad = k.maximize ? -g : g;
  if (k.l2) grad += k.wd * p;
  if (k.decoupled) p *= k.decay;
  m = k.lerp_from_start ? m + k.weight * (grad - m) : grad - (grad - m) * k.one_minus_weight;
  v = v * k.beta2 + k.one_minus_beta2 * grad * grad;
  T second = v;
  if (v_max != nullptr) {
    *v_max = (v > *v_max || v != v) ? v : *v_max;  // torch.maximum: NaN propagates
    second = *v_max;
  }
  const T denom = std::sqrt(second) / k.bc2_sqrt + k.eps;
  p += k.neg_step_size * (m / denom);
}

}  // namespace crfseg::kernels
