// Fused CUDA optimizer steps: one pass over the parameter, its gradient and
// its state per step, with the same operation order as the CPU loops in
// layers/optim/sgd.cpp and adam.cpp (which follow torch's single-tensor
// implementations), so the two devices agree to rounding.
// Test: tests/cuda/test_cuda_ops.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

struct SgdStep {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool first;  // the momentum buffer is created by this step (b = d)
};

struct AdamStep {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled, maximize;
  double step_size;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};

// buf may be null (no momentum).
template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, SgdStep c, Stream stream);
// v_max may be null (no amsgrad).
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, AdamStep c, Stream stream);

}  // namespace crfseg::kernels::cuda
