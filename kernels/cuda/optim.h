// Fused CUDA optimizer steps: one pass over the parameter, its gradient and
// its state per step, one thread per element running the per-element rule
// the CPU loops run too (kernels/optim_step.h, torch's single-tensor order),
// so the two devices agree to rounding.
// Test: tests/cuda/test_cuda_training.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"
#include "kernels/optim_step.h"

namespace crfseg::kernels::cuda {

using kernels::AdamStep;
using kernels::SgdStep;

// buf may be null (no momentum).
template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, const SgdStep& c, Stream stream);
// v_max may be null (no amsgrad).
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, const AdamStep& c, Stream stream);

}  // namespace crfseg::kernels::cuda
