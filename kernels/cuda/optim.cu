// Fused CUDA optimizer steps (see optim.h). Memory-bound: SGD with momentum
// moves 12 bytes per f32 element, Adam 28.
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/optim.h"

namespace crfseg::kernels::cuda {

template <typename T>
void sgd_step(T* p, const T* g, T* buf, int64_t n, const SgdStep& c, Stream stream) {
  const SgdConstants<T> k(c);
  for_each(n, [=] __device__(int64_t i) { sgd_update_element(p[i], g[i], buf != nullptr ? buf + i : nullptr, k); },
           stream, "sgd_step");
}

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, const AdamStep& c, Stream stream) {
  const AdamConstants<T> k(c);
  for_each(n, [=] __device__(int64_t i) {
    adam_update_element(p[i], g[i], m[i], v[i], v_max != nullptr ? v_max + i : nullptr, k);
  }, stream, "adam_step");
}

template void sgd_step<float>(float*, const float*, float*, int64_t, const SgdStep&, Stream);
template void sgd_step<double>(double*, const double*, double*, int64_t, const SgdStep&, Stream);
template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, const AdamStep&, Stream);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, const AdamStep&, Stream);

}  // namespace crfseg::kernels::cuda
