// Binary cross-entropy with logits, per element, in host-device code
// (tensor/ops_loss.cpp's CPU loops and kernels/cuda/loss.cu's kernels run
// the same expressions). Logit x, target t in [0, 1], positive-class
// weight p, in the overflow-free form torch uses:
//   l     = (1 - t) x + c softplus(-x),   c = 1 + (p - 1) t,
//   softplus(-x) = log(1 + e^-|x|) + max(-x, 0),
//   dl/dx = c sigmoid(x) - p t.
#pragma once

#include <cmath>

#include "kernels/hd.h"

namespace crfseg::kernels {

template <typename T>
CRFSEG_HD T bce_term(T x, T t, T p) {
#ifndef __CUDA_ARCH__
  using std::exp;
  using std::fabs;
  using std::log1p;
#endif
  const T coef = T(1) + (p - T(1)) * t;
  const T softplus_neg = log1p(exp(-fabs(x))) + (-x > T(0) ? -x : T(0));
  return (T(1) - t) * x + coef * softplus_neg;
}

template <typename T>
CRFSEG_HD T bce_grad(T x, T t, T p) {
#ifndef __CUDA_ARCH__
  using std::exp;
#endif
  const T coef = T(1) + (p - T(1)) * t;
  const T sig = T(1) / (T(1) + exp(-x));
  return coef * sig - p * t;
}

}  // namespace crfseg::kernels
