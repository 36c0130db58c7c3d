// CUDA binary cross-entropy with logits (see kernels/cuda/loss.h).
#include "kernels/bce.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/loss.h"

namespace crfseg::kernels::cuda {

template <typename T>
void bce_terms(int64_t n, const T* x, const T* t, T p, T* terms, Stream stream) {
  for_each(n, [=] __device__(int64_t i) { terms[i] = kernels::bce_term(x[i], t[i], p); }, stream, "bce_terms");
}

template <typename T>
void bce_backward(int64_t n, const T* grad, const T* x, const T* t, T p, T* dx, Stream stream) {
  // The scale rounds once, as the CPU's: T(g / n) with the division in double.
  const double count = static_cast<double>(n);
  for_each(n, [=] __device__(int64_t i) {
    dx[i] = static_cast<T>(static_cast<double>(grad[0]) / count) * kernels::bce_grad(x[i], t[i], p);
  }, stream, "bce_backward");
}

template void bce_terms<float>(int64_t, const float*, const float*, float, float*, Stream);
template void bce_terms<double>(int64_t, const double*, const double*, double, double*, Stream);
template void bce_backward<float>(int64_t, const float*, const float*, const float*, float, float*, Stream);
template void bce_backward<double>(int64_t, const double*, const double*, const double*, double, double*, Stream);

}  // namespace crfseg::kernels::cuda
