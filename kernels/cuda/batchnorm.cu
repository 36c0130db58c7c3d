// CUDA batch norm (see batchnorm.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/batchnorm_rules.h"
#include "kernels/channel_chunks.h"
#include "kernels/cuda/batchnorm.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/moments.h"
#include "kernels/replica_sync.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
using kernels::Moments;  // Chan merges, shared with the CPU kernel

// One block per (channel, split): the block's chunk of the channel
// (channel_chunks.h). Each thread sums its values shifted by its first one
// (K): with d = v - K, n values give mean K + S1 / n and M2 = S2 - S1^2 / n,
// where K within the data's spread keeps the subtraction from cancelling
// (the shifted-data algorithm; Welford's update cost a double division per
// value). The block merges its threads' triples in a fixed tree and writes
// the split's partial (count, mean, M2).
template <typename T>
__global__ void stats_partial_kernel(const T* __restrict__ x, int64_t C, int64_t inner, ChannelChunks plan,
                                     int64_t M, Moments* __restrict__ partials) {
  __shared__ Moments part[kThreads];
  const int64_t c = blockIdx.x, split = blockIdx.y;
  double K = 0.0, s1 = 0.0, s2 = 0.0, n = 0.0;
  walk_channel_chunk(c, C, inner, plan.begin(split), plan.end(split, M), threadIdx.x, kThreads, [&](int64_t k) {
    const double v = static_cast<double>(x[k]);
    if (n == 0.0) K = v;
    const double d = v - K;
    s1 += d;
    s2 += d * d;
    n += 1.0;
  });
  Moments m{};
  if (n > 0.0) m = {n, K + s1 / n, fmax(s2 - s1 * s1 / n, 0.0)};
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x].merge(part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[c * plan.splits + split] = part[0];
}

// One thread per channel merges its splits in order.
template <typename T>
__global__ void stats_finish_kernel(const Moments* __restrict__ partials, int64_t C, int64_t splits,
                                    double momentum, double eps, T* __restrict__ mean, T* __restrict__ invstd,
                                    T* __restrict__ running_mean, T* __restrict__ running_var) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  Moments t{};
  for (int64_t s = 0; s < splits; ++s) t.merge(partials[c * splits + s]);
  const double var = t.m2 / t.count;  // biased: what the batch is normalised with
  mean[c] = static_cast<T>(t.mean);
  invstd[c] = static_cast<T>(1.0 / std::sqrt(var + eps));
  if (running_mean != nullptr) {
    const double unbiased = t.m2 / (t.count - 1.0);
    running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * t.mean);
    running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
  }
}

// One thread per channel merges its splits in order into totals[c]: this
// replica's moments, for the synchronised form.
__global__ void stats_merge_kernel(const Moments* __restrict__ partials, int64_t C, int64_t splits,
                                   Moments* __restrict__ totals) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  Moments t{};
  for (int64_t s = 0; s < splits; ++s) t.merge(partials[c * splits + s]);
  totals[c] = t;
}

// Synchronous copies of a few per-channel values between the device and the
// host, on the stream, for the synchronised form's exchange.
void download(void* host, const void* device, size_t bytes, Stream stream) {
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(stream));
}
void upload(void* device, const void* host, size_t bytes, Stream stream) {
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream));
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host buffer goes away on return
}

// Per (channel, split): sum gm and sum gm (x - mean) invstd, gm = g masked
// by y > 0 with a fused ReLU, into partials[2 (c splits + split) + {0, 1}].
template <typename T>
__global__ void grad_sums_partial_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ y,
                                         const T* __restrict__ mean, const T* __restrict__ invstd, int64_t C,
                                         int64_t inner, ChannelChunks plan, int64_t M,
                                         double* __restrict__ partials) {
  __shared__ double s_g[kThreads], s_gx[kThreads];
  const int64_t c = blockIdx.x, split = blockIdx.y;
  const double mu = static_cast<double>(mean[c]), is = static_cast<double>(invstd[c]);
  double sg = 0.0, sgx = 0.0;
  walk_channel_chunk(c, C, inner, plan.begin(split), plan.end(split, M), threadIdx.x, kThreads, [&](int64_t k) {
    const double gm = (y != nullptr && !(y[k] > T(0))) ? 0.0 : static_cast<double>(g[k]);
    sg += gm;
    if (x != nullptr) sgx += gm * (static_cast<double>(x[k]) - mu) * is;
  });
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
    partials[2 * (c * plan.splits + split)] = s_g[0];
    partials[2 * (c * plan.splits + split) + 1] = s_gx[0];
  }
}

// The elementwise passes (apply and dx) over [N, C, inner] data, a row
// (plane) per (image, channel): a 2-D grid, y over the N C rows and x along
// a row, so the channel is found once per row, not by a 64-bit division per
// value. Each thread takes four values at a time with vector loads and
// stores (Quad, for_each.cuh) where every row starts Quad-aligned; one value
// otherwise. Session 42's H100 profile had these passes at about a third
// of the memory's speed with one value (4 bytes in flight per operand) a
// thread, against 78% for the channel sums beside them.
constexpr int kLanes = 4;
// kN values of T at p: one, or a Quad-aligned four.
template <typename T, int kN>
__device__ __forceinline__ void load_lanes(const T* p, T (&out)[kN]) {
  static_assert(kN == 1 || kN == kLanes);
  if constexpr (kN == 1) {
    out[0] = p[0];
  } else {
    const Quad<T> q = load_quad(p, 1);
#pragma unroll
    for (int j = 0; j < kN; ++j) out[j] = q.v[j];
  }
}
template <typename T, int kN>
__device__ __forceinline__ void store_lanes(T* p, const T (&in)[kN]) {
  static_assert(kN == 1 || kN == kLanes);
  if constexpr (kN == 1) {
    p[0] = in[0];
  } else {
    Quad<T> q;
#pragma unroll
    for (int j = 0; j < kN; ++j) q.v[j] = in[j];
    *reinterpret_cast<Quad<T>*>(p) = q;
  }
}

// f.template run<kN>(c, k): the kN values from flat index k, all in one row
// of channel c.
template <int kN, typename F>
__global__ void channel_rows_kernel(int64_t rows, int64_t C, int64_t inner, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x * kN;
  for (int64_t p = blockIdx.y; p < rows; p += gridDim.y) {
    const int64_t c = p % C, row = p * inner;
    for (int64_t i = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * kN; i < inner; i += step) {
      f.template run<kN>(c, row + i);
    }
  }
}

// Runs f over every value of [N, C, inner] data; `pointers` are the arrays
// f reads and writes per value (null ones ignored), which decide whether
// the vector form may run.
template <typename T, typename F>
void for_each_channel_row(int64_t N, int64_t C, int64_t inner, std::initializer_list<const void*> pointers, F f,
                          Stream stream, const char* name) {
  const int64_t rows = N * C;
  if (rows <= 0 || inner <= 0) return;
  bool vec = inner % kLanes == 0;
  for (const void* p : pointers) vec = vec && (p == nullptr || quad_aligned(p, sizeof(T)));
  const int64_t per_thread = vec ? kLanes : 1, threads_per_row = inner / per_thread;
  if (threads_per_row < kThreads) {
    // Rows shorter than a block would leave most of its threads idle: one
    // flat loop over every row's vectors (or values), the channel found by
    // two divisions each (32-bit where they fit).
    if (vec) {
      for_each(rows * threads_per_row, [=] __device__(int64_t v) {
        const int64_t k = v * kLanes, row = quotient(k, inner);
        f.template run<kLanes>(row - quotient(row, C) * C, k);
      }, stream, name);
    } else {
      for_each(rows * inner, [=] __device__(int64_t k) {
        const int64_t row = quotient(k, inner);
        f.template run<1>(row - quotient(row, C) * C, k);
      }, stream, name);
    }
    return;
  }
  const int64_t bx = std::min<int64_t>((threads_per_row + kThreads - 1) / kThreads, 1024);
  const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  if (vec) {
    channel_rows_kernel<kLanes><<<grid, kThreads, 0, stream>>>(rows, C, inner, f);
  } else {
    channel_rows_kernel<1><<<grid, kThreads, 0, stream>>>(rows, C, inner, f);
  }
  launch_check(name);
}

// y = (x - mean) (weight invstd) + bias, then the ReLU if fused.
template <typename T>
struct ApplyRows {
  const T *x, *weight, *bias, *mean, *invstd;
  T* y;
  bool relu;
  template <int kN>
  __device__ void run(int64_t c, int64_t k) const {
    const T w = weight ? weight[c] : T(1), b = bias ? bias[c] : T(0), m = mean[c], scale = w * invstd[c];
    T v[kN];
    load_lanes<T, kN>(x + k, v);
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      const T out = (v[j] - m) * scale + b;
      v[j] = relu && out < T(0) ? T(0) : out;  // NaN passes through, as torch.relu and the CPU kernel
    }
    store_lanes<T, kN>(y + k, v);
  }
};

// dx per value from the per-channel coef = {A, B, D} (batchnorm_rules.h),
// gm = g masked by y > 0 with a fused ReLU; in eval dx = A gm. The value
// step is in double, rounded once to T, as the reference's: the pass is
// memory-bound and an H100's FP64 units idle in it, where a float step
// would lose accuracy wherever dx is small beside its terms.
template <typename T>
struct DxRows {
  const T *g, *x, *y, *mean;
  const double* coef;
  T* dx;
  bool training;
  template <int kN>
  __device__ void run(int64_t c, int64_t k) const {
    const double a = coef[3 * c], b = coef[3 * c + 1], d = coef[3 * c + 2];
    const double m = training ? static_cast<double>(mean[c]) : 0.0;
    T gv[kN];
    load_lanes<T, kN>(g + k, gv);
    if (y != nullptr) {
      T yv[kN];
      load_lanes<T, kN>(y + k, yv);
#pragma unroll
      for (int j = 0; j < kN; ++j) gv[j] = yv[j] > T(0) ? gv[j] : T(0);
    }
    if (training) {
      T xv[kN];
      load_lanes<T, kN>(x + k, xv);
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        gv[j] = static_cast<T>(batchnorm_dx_value(a, b, d, m, static_cast<double>(gv[j]), static_cast<double>(xv[j])));
      }
    } else {
#pragma unroll
      for (int j = 0; j < kN; ++j) gv[j] = static_cast<T>(a * static_cast<double>(gv[j]));
    }
    store_lanes<T, kN>(dx + k, gv);
  }
};

dim3 chunk_grid(int64_t C, const ChannelChunks& plan) {
  CRFSEG_CHECK(C <= 0x7fffffff && plan.splits <= 65535, NotImplementedError, "CUDA batch norm: ", C,
               " channels in ", plan.splits, " splits exceed one grid");
  return dim3(static_cast<unsigned>(C), static_cast<unsigned>(plan.splits));
}

unsigned channel_threads_blocks(int64_t C) { return static_cast<unsigned>((C + kThreads - 1) / kThreads); }

}  // namespace

int64_t batchnorm_workspace_doubles(int64_t N, int64_t C, int64_t inner) {
  // The forward's partial (count, mean, M2) triples and then C merged
  // triples (synchronised form), or the backward's pairs of partial sums and
  // then its 2 C totals.
  return C * (3 * channel_chunks(N, C, inner).splits + 3);
}

template <typename T>
void batchnorm_apply(const T* x, const T* weight, const T* bias, const T* mean, const T* invstd, T* y, int64_t N,
                     int64_t C, int64_t inner, bool relu, Stream stream) {
  for_each_channel_row<T>(N, C, inner, {x, y}, ApplyRows<T>{x, weight, bias, mean, invstd, y, relu}, stream,
                          "batchnorm_apply");
}

template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync, double* workspace,
                               Stream stream) {
  const int64_t M = N * inner;
  if (sync == nullptr && (M < 2 || C == 0)) return static_cast<double>(M);  // the op refuses M < 2; nothing written
  const ChannelChunks plan = channel_chunks(N, C, inner);
  static_assert(sizeof(Moments) == 3 * sizeof(double));
  auto* partials = reinterpret_cast<Moments*>(workspace);
  if (C > 0) {  // M = 0 (a replica with no samples) leaves zero moments
    stats_partial_kernel<T><<<chunk_grid(C, plan), kThreads, 0, stream>>>(x, C, inner, plan, M, partials);
    launch_check("batchnorm_stats_partial");
  }
  if (sync == nullptr) {
    stats_finish_kernel<T><<<channel_threads_blocks(C), kThreads, 0, stream>>>(
        partials, C, plan.splits, momentum, eps, mean, invstd, running_mean, running_var);
    launch_check("batchnorm_stats_finish");
    batchnorm_apply(x, weight, bias, mean, invstd, y, N, C, inner, relu, stream);
    return static_cast<double>(M);
  }
  // Synchronised: this replica's per-channel moments go to the host, are
  // merged there with every replica's in replica order (the CPU kernel's
  // function, so both give the same bits from the same moments) and come
  // back as the only "split" of the usual finish. (Merging one triple into
  // an empty one returns it exactly.) Every replica makes the exchange,
  // whatever its batch holds.
  Moments* totals = partials + C * plan.splits;
  std::vector<Moments> merged(static_cast<size_t>(C));  // value-initialised: zero moments
  if (C > 0) {
    stats_merge_kernel<<<channel_threads_blocks(C), kThreads, 0, stream>>>(partials, C, plan.splits, totals);
    launch_check("batchnorm_stats_merge");
    download(merged.data(), totals, merged.size() * sizeof(Moments), stream);
  }
  merge_moments_over_replicas(*sync, merged.data(), C);
  const double M_all = C > 0 ? merged[0].count : 0.0;  // every channel has the same count
  if (M_all < 2.0) return M_all;                       // every replica sees it, and the op refuses it
  upload(totals, merged.data(), merged.size() * sizeof(Moments), stream);
  stats_finish_kernel<T><<<channel_threads_blocks(C), kThreads, 0, stream>>>(totals, C, 1, momentum, eps, mean,
                                                                              invstd, running_mean, running_var);
  launch_check("batchnorm_stats_finish");
  batchnorm_apply(x, weight, bias, mean, invstd, y, N, C, inner, relu, stream);
  return M_all;
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
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training, ReplicaSync* sync,
                        double* workspace, Stream stream) {
  // Synchronised training: the dx terms need the sums and the count over
  // every replica (weighted, see kernels/replica_sync.h), in the CPU
  // kernel's layout [sum g (C), sum g xhat (C), M]; dweight and dbias stay
  // this replica's.
  const bool synced = sync != nullptr && training;
  std::vector<double> total(static_cast<size_t>(2 * C + 1), 0.0);
  total[2 * C] = static_cast<double>(N * inner);
  if (C == 0) {
    if (synced) sum_over_replicas(*sync, total.data(), 1, 0);  // the collective every replica makes
    return;
  }
  // Per-(channel, split) sums into the workspace, then per-channel totals in
  // split order into its last 2 C doubles.
  const int64_t M = N * inner;
  const ChannelChunks plan = channel_chunks(N, C, inner);
  double* partials = workspace;
  double* sums = workspace + 3 * C * plan.splits;
  grad_sums_partial_kernel<T><<<chunk_grid(C, plan), kThreads, 0, stream>>>(g, x, y, mean, invstd, C, inner, plan,
                                                                            M, partials);
  launch_check("batchnorm_grad_sums_partial");
  const int64_t splits = plan.splits;
  for_each(C, [=] __device__(int64_t c) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t s = 0; s < splits; ++s) {
      sg += partials[2 * (c * splits + s)];
      sgx += partials[2 * (c * splits + s) + 1];
    }
    sums[2 * c] = sg;
    sums[2 * c + 1] = sgx;
    if (dbias != nullptr) dbias[c] = static_cast<T>(sg);
    if (dweight != nullptr) dweight[c] = static_cast<T>(sgx);
  }, stream, "batchnorm_grad_sums_finish");
  double Md = static_cast<double>(M);
  if (synced) {
    std::vector<double> pairs(static_cast<size_t>(2 * C));
    download(pairs.data(), sums, pairs.size() * sizeof(double), stream);
    for (int64_t c = 0; c < C; ++c) total[c] = pairs[2 * c], total[C + c] = pairs[2 * c + 1];
    sum_over_replicas(*sync, total.data(), 2 * C + 1, 2 * C);
    for (int64_t c = 0; c < C; ++c) pairs[2 * c] = total[c], pairs[2 * c + 1] = total[C + c];
    upload(sums, pairs.data(), pairs.size() * sizeof(double), stream);
    Md = total[2 * C];
  }
  // The per-channel coefficients of dx (batchnorm_rules.h), in double once
  // per channel: the value pass had two double divisions per value. The
  // partial sums are spent, so the coefficients go where they were.
  double* coef = partials;  // 3 C doubles within the 3 C splits of the partials
  const double inv_M = 1.0 / Md;
  for_each(C, [=] __device__(int64_t c) {
    const BatchNormDx k = batchnorm_dx_coefficients(weight ? static_cast<double>(weight[c]) : 1.0,
                                                    static_cast<double>(invstd[c]), sums[2 * c], sums[2 * c + 1],
                                                    inv_M, training);
    coef[3 * c] = k.a;
    coef[3 * c + 1] = k.b;
    coef[3 * c + 2] = k.d;
  }, stream, "batchnorm_dx_coefficients");
  for_each_channel_row<T>(N, C, inner, {g, x, y, dx}, DxRows<T>{g, x, y, mean, coef, dx, training}, stream,
                          "batchnorm_dx");
}

#define CRFSEG_BN(T)                                                                                            \
  template double batchnorm_forward_train<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t, int64_t, \
                                             int64_t, double, double, bool, ReplicaSync*, double*, Stream);     \
  template void batchnorm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                          int64_t, int64_t, double, bool, Stream);                              \
  template void batchnorm_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*,    \
                                      int64_t, int64_t, int64_t, bool, ReplicaSync*, double*, Stream);
CRFSEG_BN(float)
CRFSEG_BN(double)
#undef CRFSEG_BN

}  // namespace crfseg::kernels::cuda
