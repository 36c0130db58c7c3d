// CUDA binary cross-entropy with logits and one_hot (see kernels/cuda/loss.h).
#include "kernels/bce.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/loss.h"
#include "kernels/hd.h"

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

template <typename T>
void one_hot(const int64_t* target, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index, T* out,
             int64_t* bad, Stream stream) {
  static_assert(sizeof(unsigned long long) == sizeof(int64_t));
  auto* bad_count = reinterpret_cast<unsigned long long*>(bad);
  for_each(outer * C * inner, [=] __device__(int64_t k) {
    const int64_t row = quotient(k, inner), i = k - row * inner, o = quotient(row, C), c = row - o * C;  // (hd.h)
    const int64_t t = target[o * inner + i];
    out[k] = t == c && t != ignore_index ? T(1) : T(0);  // (ignore_index may be a class: its row stays 0)
    if (c == 0 && t != ignore_index && (t < 0 || t >= C)) atomicAdd(bad_count, 1ULL);  // once per position
  }, stream, "one_hot");
}

template void bce_terms<float>(int64_t, const float*, const float*, float, float*, Stream);
template void bce_terms<double>(int64_t, const double*, const double*, double, double*, Stream);
template void bce_backward<float>(int64_t, const float*, const float*, const float*, float, float*, Stream);
template void bce_backward<double>(int64_t, const double*, const double*, const double*, double, double*, Stream);
template void one_hot<float>(const int64_t*, int64_t, int64_t, int64_t, int64_t, float*, int64_t*, Stream);
template void one_hot<double>(const int64_t*, int64_t, int64_t, int64_t, int64_t, double*, int64_t*, Stream);

}  // namespace crfseg::kernels::cuda
