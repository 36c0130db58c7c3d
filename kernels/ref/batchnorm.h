// Reference batch norm: the obviously-correct oracle the tuned kernels in
// kernels/cpu/batchnorm.* are tested against. Plain loops, one channel at a
// time, every sum accumulated in double, statistics by the two-pass formula.
//
// Layout: x is contiguous [N, C, inner] (inner = product of the spatial dims,
// 1 for a 2-D [N, C] input); channel c owns the M = N * inner elements
// x[(n C + c) inner + i]. weight/bias may be nullptr (1 and 0).
//
//   mean_c   = 1/M sum x                      var_c = 1/M sum (x - mean_c)^2
//   invstd_c = 1 / sqrt(var_c + eps)          xhat  = (x - mean_c) invstd_c
//   y        = w_c xhat + b_c                 (then max(0, y) when relu)
//   running  = (1 - momentum) running + momentum stat, where the variance
//              stat is the unbiased M / (M - 1) var_c (PyTorch's rule)
//
// Backward, with gm = g masked to 0 where y <= 0 when the ReLU was fused:
//   dbias_c   = sum gm                        dweight_c = sum gm xhat
//   training: dx = w_c invstd_c (gm - dbias_c / M - xhat dweight_c / M)
//   eval:     dx = w_c invstd_c gm            (the statistics are constants)
//
// Synchronised batch norm (sync != nullptr, kernels/replica_sync.h): the
// batch is the union of P replicas' inputs, each calling with its own x.
// M, the sums and so mean, var and the backward's sum gm and sum gm xhat
// are taken over all of them; y and dx are this replica's elements, and
// dweight/dbias this replica's share (sum over its own elements), which
// data-parallel gradient averaging combines. P = 1 gives the plain result.
#pragma once

#include <cstdint>

#include "kernels/replica_sync.h"

namespace crfseg::kernels::ref {

// Normalises with the batch statistics and writes them (mean, invstd: [C]).
// running_mean/running_var ([C], may both be nullptr) are updated in place.
// Returns M, the values per channel over all replicas; when M < 2 it writes
// nothing (the caller refuses that: no spread to normalise by).
template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync = nullptr);

// Normalises with the running statistics; writes invstd [C] for the backward.
template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu);

// g: dL/dy. y: the forward output when the ReLU was fused (masks g), else
// nullptr. mean/invstd: the statistics the forward used. x may be nullptr in
// eval mode (dx does not depend on it); then dweight must be nullptr.
// dweight and dbias ([C]) may be nullptr when not wanted.
// sync: as in the forward (used in training only; eval dx needs no sums).
template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training,
                        ReplicaSync* sync = nullptr);

}  // namespace crfseg::kernels::ref
