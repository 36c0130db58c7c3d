// Reference batch norm (see batchnorm.h): one channel at a time, two passes
// for the statistics, every sum in double, no tricks. With a ReplicaSync
// (synchronised batch norm) each pass's sums are also added over the
// replicas, in replica order, before they are used.
#include "kernels/ref/batchnorm.h"

#include <cmath>
#include <vector>

namespace crfseg::kernels::ref {

namespace {

// Flat offset of element (n, c, i) of a contiguous [N, C, inner] tensor.
inline int64_t offset(int64_t n, int64_t c, int64_t i, int64_t C, int64_t inner) { return (n * C + c) * inner + i; }

inline double relu_if(bool relu, double v) { return relu && v < 0.0 ? 0.0 : v; }

}  // namespace

template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync) {
  // Pass 1: the element count and per-channel sums (over every replica) give the mean.
  std::vector<double> sums(C + 1, 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < inner; ++i) sums[c] += static_cast<double>(x[offset(n, c, i, C, inner)]);
  sums[C] = static_cast<double>(N * inner);
  if (sync) sum_over_replicas(*sync, sums.data(), C + 1);
  const double M = sums[C];
  if (M < 2.0) return M;  // no spread to normalise by; the caller refuses this

  // Pass 2: squared deviations from that mean (over every replica) give the variance.
  std::vector<double> squares(C, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    const double mu = sums[c] / M;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const double d = static_cast<double>(x[offset(n, c, i, C, inner)]) - mu;
        squares[c] += d * d;
      }
    }
  }
  if (sync) sum_over_replicas(*sync, squares.data(), C);

  for (int64_t c = 0; c < C; ++c) {
    const double mu = sums[c] / M, var = squares[c] / M;
    const double is = 1.0 / std::sqrt(var + eps);
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = offset(n, c, i, C, inner);
        y[k] = static_cast<T>(relu_if(relu, (static_cast<double>(x[k]) - mu) * is * w + b));
      }
    }
    mean[c] = static_cast<T>(mu);
    invstd[c] = static_cast<T>(is);
    if (running_mean) {
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mu);
    }
    if (running_var) {
      const double unbiased = squares[c] / (M - 1.0);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
  }
  return M;
}

template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu) {
  for (int64_t c = 0; c < C; ++c) {
    const double mu = static_cast<double>(running_mean[c]);
    const double is = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = offset(n, c, i, C, inner);
        y[k] = static_cast<T>(relu_if(relu, (static_cast<double>(x[k]) - mu) * is * w + b));
      }
    }
    invstd[c] = static_cast<T>(is);
  }
}

template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training,
                        ReplicaSync* sync) {
  // The gradient reaching the normalisation: zero where the fused ReLU clipped.
  auto masked = [&](int64_t k) { return y && !(y[k] > T(0)) ? 0.0 : static_cast<double>(g[k]); };
  // This replica's sums: [0, C) sum gm, [C, 2C) sum gm xhat, [2C] the element count.
  std::vector<double> local(2 * C + 1, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    const double mu = static_cast<double>(mean[c]), is = static_cast<double>(invstd[c]);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = offset(n, c, i, C, inner);
        local[c] += masked(k);
        if (x) local[C + c] += masked(k) * (static_cast<double>(x[k]) - mu) * is;
      }
    }
  }
  local[2 * C] = static_cast<double>(N * inner);
  // Training: the statistics depended on every replica's x, so dx needs the
  // gradient sums over every replica (weighted, see kernels/replica_sync.h)
  // and their element count. dweight and dbias stay this replica's own (the
  // gradient averaging of data-parallel training combines them).
  std::vector<double> total = local;
  if (sync && training) sum_over_replicas(*sync, total.data(), 2 * C + 1, 2 * C);
  const double M = total[2 * C];
  for (int64_t c = 0; c < C; ++c) {
    const double mu = static_cast<double>(mean[c]), is = static_cast<double>(invstd[c]);
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double sum_g = total[c], sum_g_xhat = total[C + c];
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = offset(n, c, i, C, inner);
        if (training) {
          const double xhat = (static_cast<double>(x[k]) - mu) * is;
          dx[k] = static_cast<T>(w * is * (masked(k) - sum_g / M - xhat * sum_g_xhat / M));
        } else {
          dx[k] = static_cast<T>(w * is * masked(k));
        }
      }
    }
    if (dweight) dweight[c] = static_cast<T>(local[C + c]);
    if (dbias) dbias[c] = static_cast<T>(local[c]);
  }
}

template double batchnorm_forward_train<float>(const float*, const float*, const float*, float*, float*, float*,
                                               float*, float*, int64_t, int64_t, int64_t, double, double, bool,
                                               ReplicaSync*);
template double batchnorm_forward_train<double>(const double*, const double*, const double*, double*, double*,
                                                double*, double*, double*, int64_t, int64_t, int64_t, double, double,
                                                bool, ReplicaSync*);
template void batchnorm_forward_eval<float>(const float*, const float*, const float*, const float*, const float*,
                                            float*, float*, int64_t, int64_t, int64_t, double, bool);
template void batchnorm_forward_eval<double>(const double*, const double*, const double*, const double*,
                                             const double*, double*, double*, int64_t, int64_t, int64_t, double, bool);
template void batchnorm_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, int64_t, int64_t, int64_t, bool,
                                        ReplicaSync*);
template void batchnorm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                         const double*, double*, double*, double*, int64_t, int64_t, int64_t, bool,
                                         ReplicaSync*);

}  // namespace crfseg::kernels::ref
