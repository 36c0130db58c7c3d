// CUDA batch norm (see batchnorm.h).
#include <cmath>

#include "kernels/cuda/batchnorm.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/moments.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
using kernels::Moments;  // Chan merges, shared with the CPU kernel


template <typename T>
__global__ void stats_kernel(const T* __restrict__ x, int64_t N, int64_t C, int64_t inner, double momentum,
                             double eps, T* __restrict__ mean, T* __restrict__ invstd, T* __restrict__ running_mean,
                             T* __restrict__ running_var) {
  __shared__ Moments part[kThreads];
  const int64_t c = blockIdx.x, M = N * inner;
  Moments m{};
  for (int64_t j = threadIdx.x; j < M; j += kThreads) {  // Welford
    const double v = static_cast<double>(x[((j / inner) * C + c) * inner + j % inner]);
    m.count += 1.0;
    const double d = v - m.mean;
    m.mean += d / m.count;
    m.m2 += d * (v - m.mean);
  }
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x].merge(part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const Moments t = part[0];
    const double var = t.m2 / t.count;  // biased: what the batch is normalised with
    mean[c] = static_cast<T>(t.mean);
    invstd[c] = static_cast<T>(1.0 / std::sqrt(var + eps));
    if (running_mean != nullptr) {
      const double unbiased = t.m2 / (t.count - 1.0);
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * t.mean);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
  }
}

// Per channel: sum gm and sum gm (x - mean) invstd, gm = g masked by y > 0 with a fused ReLU.
template <typename T>
__global__ void grad_sums_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ y,
                                 const T* __restrict__ mean, const T* __restrict__ invstd, int64_t N, int64_t C,
                                 int64_t inner, double* __restrict__ sums) {
  __shared__ double s_g[kThreads], s_gx[kThreads];
  const int64_t c = blockIdx.x, M = N * inner;
  const double mu = static_cast<double>(mean[c]), is = static_cast<double>(invstd[c]);
  double sg = 0.0, sgx = 0.0;
  for (int64_t j = threadIdx.x; j < M; j += kThreads) {
    const int64_t k = ((j / inner) * C + c) * inner + j % inner;
    const double gm = (y != nullptr && !(y[k] > T(0))) ? 0.0 : static_cast<double>(g[k]);
    sg += gm;
    if (x != nullptr) sgx += gm * (static_cast<double>(x[k]) - mu) * is;
  }
  s_g[threadIdx.x] = sg;
  s_gx[threadIdx.x] = sgx;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      s_g[threadIdx.x] += s_g[threadIdx.x + s];
      s_gx[threadIdx.x] += s_gx[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    sums[2 * c] = s_g[0];
    sums[2 * c + 1] = s_gx[0];
  }
}

int channel_blocks(int64_t C) {
  CRFSEG_CHECK(C <= 0x7fffffff, NotImplementedError, "CUDA batch norm: ", C, " channels exceed one grid");
  return static_cast<int>(C);
}

}  // namespace

template <typename T>
void batchnorm_apply(const T* x, const T* weight, const T* bias, const T* mean, const T* invstd, T* y, int64_t N,
                     int64_t C, int64_t inner, bool relu, Stream stream) {
  for_each(N * C * inner, [=] __device__(int64_t k) {
    const int64_t c = (k / inner) % C;
    const T w = weight ? weight[c] : T(1), b = bias ? bias[c] : T(0);
    const T v = (x[k] - mean[c]) * (w * invstd[c]) + b;
    y[k] = relu && v < T(0) ? T(0) : v;  // NaN passes through, as torch.relu and the CPU kernel
  }, stream, "batchnorm_apply");
}

template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, Stream stream) {
  const int64_t M = N * inner;
  if (M < 2 || C == 0) return static_cast<double>(M);  // the op refuses M < 2; nothing written
  stats_kernel<T><<<channel_blocks(C), kThreads, 0, stream>>>(x, N, C, inner, momentum, eps, mean, invstd,
                                                              running_mean, running_var);
  launch_check("batchnorm_stats");
  batchnorm_apply(x, weight, bias, mean, invstd, y, N, C, inner, relu, stream);
  return static_cast<double>(M);
}

template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu,
                            Stream stream) {
  for_each(C, [=] __device__(int64_t c) {
    invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
  }, stream, "batchnorm_eval_invstd");
  batchnorm_apply(x, weight, bias, running_mean, invstd, y, N, C, inner, relu, stream);
}

template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training, double* sums,
                        Stream stream) {
  if (C == 0) return;
  // Per-channel sums into the caller's workspace [C][2] (double).
  grad_sums_kernel<T><<<channel_blocks(C), kThreads, 0, stream>>>(g, x, y, mean, invstd, N, C, inner, sums);
  launch_check("batchnorm_grad_sums");
  const double M = static_cast<double>(N * inner);
  for_each(C, [=] __device__(int64_t c) {
    if (dbias != nullptr) dbias[c] = static_cast<T>(sums[2 * c]);
    if (dweight != nullptr) dweight[c] = static_cast<T>(sums[2 * c + 1]);
  }, stream, "batchnorm_param_grads");
  for_each(N * C * inner, [=] __device__(int64_t k) {
    const int64_t c = (k / inner) % C;
    const double w = weight ? static_cast<double>(weight[c]) : 1.0, is = static_cast<double>(invstd[c]);
    const double gm = (y != nullptr && !(y[k] > T(0))) ? 0.0 : static_cast<double>(g[k]);
    if (!training) {
      dx[k] = static_cast<T>(w * is * gm);
      return;
    }
    const double xhat = (static_cast<double>(x[k]) - static_cast<double>(mean[c])) * is;
    dx[k] = static_cast<T>(w * is * (gm - sums[2 * c] / M - xhat * sums[2 * c + 1] / M));
  }, stream, "batchnorm_dx");
}

#define CRFSEG_BN(T)                                                                                            \
  template double batchnorm_forward_train<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t, int64_t, \
                                             int64_t, double, double, bool, Stream);                            \
  template void batchnorm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                          int64_t, int64_t, double, bool, Stream);                              \
  template void batchnorm_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*,    \
                                      int64_t, int64_t, int64_t, bool, double*, Stream);
CRFSEG_BN(float)
CRFSEG_BN(double)
#undef CRFSEG_BN

}  // namespace crfseg::kernels::cuda
