// Batch norm forward (training and eval, optional fused ReLU) and backward,
// tuned for the CPU. Same signatures and semantics as the oracle in
// kernels/ref/batchnorm.h, which also spells out the math:
//   mean, var (biased) over the M = N * inner elements of each channel,
//   xhat = (x - mean) invstd, invstd = 1 / sqrt(var + eps), y = w xhat + b;
//   backward (gm = g masked where y <= 0 when the ReLU was fused):
//     dbias = sum gm, dweight = sum gm xhat,
//     training dx = w invstd (gm - dbias / M - xhat dweight / M), eval dx = w invstd gm.
//
// How it is computed, and why:
//  - Statistics: each channel is cut into fixed chunks of about kChunk
//    elements. A chunk's mean and sum of squared deviations come from two
//    passes over the chunk (the second pass reads it from L1, so x is read
//    from memory once), accumulated in double; chunks are then merged in a
//    fixed order with Chan's update
//      n = na + nb, d = mean_b - mean_a, mean = mean_a + d nb / n,
//      M2 = M2a + M2b + d^2 na nb / n.
//    This is as stable as a two-pass over the whole channel (no
//    E[x^2] - E[x]^2 cancellation, so an offset of 1e8 with unit spread is
//    fine), and because the chunking depends only on the shape and no sum
//    uses atomics, results are bitwise identical for any thread count.
//  - Threads work on (channel, chunk) tasks, so a layer with few channels
//    (C = 1, 3) still uses every core.
//  - Sums use kLanes independent double accumulators: an explicit order the
//    compiler may vectorise without -ffast-math.
//  - Two layouts. Strips: for inner >= kSmallInner, channel c is N
//    contiguous strips x[(n C + c) inner ...] and loops run along them.
//    Columns: for tiny inner (a 2-D [N, C] input has inner = 1) a strip is
//    shorter than a cache line, so x is walked as a row-major [N, C inner]
//    matrix instead, with per-feature partial sums vectorised across the row.
//  - Elementwise passes use per-channel constants, so each element costs a
//    few flops: y = (x - mean) (w invstd) + b, and in training
//    dx = k1 gm + k2 (x - mean) + k3 with k1 = w invstd,
//    k2 = -w invstd^2 dweight / M, k3 = -w invstd dbias / M.
//    (x - mean) rather than x * scale + shift: the latter cancels when
//    |mean| >> std.
//  - Fused ReLU: the forward clamps in the same pass; the backward masks g
//    on the fly where y <= 0, never materialising the masked gradient.
//  - Synchronised batch norm (sync != nullptr): one all-gather per call of
//    each replica's per-channel [count, mean, M2] (forward) or
//    [sum gm, sum gm (x - mean), count] (training backward), combined in
//    replica order, Chan's update again for the moments. The reference
//    instead gathers plain sums twice (sum x, then sum (x - mean)^2).
// Tests: tests/kernels/test_batchnorm.cpp (against kernels/ref, and synced
// replicas on threads against one batch) and tests/autograd/test_gradcheck_norm.cpp.
#pragma once

#include <cstdint>

#include "kernels/replica_sync.h"

namespace crfseg::kernels::cpu {

// Normalises with the batch statistics and writes them (mean, invstd: [C]).
// running_mean/running_var ([C], may both be nullptr) are updated in place
// with the unbiased variance. sync: synchronised batch norm over replicas
// (see kernels/ref/batchnorm.h for the semantics). Returns M, the values per
// channel over all replicas; when M < 2 nothing is written (the caller
// refuses that).
template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync = nullptr);

// Normalises with the running statistics; writes invstd [C] for the backward.
template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu);

// g: dL/dy. y: the forward output when the ReLU was fused (masks g), else
// nullptr. x may be nullptr in eval mode; then dweight must be nullptr.
// dweight and dbias may be nullptr when not wanted.
// sync: as in the forward; dweight and dbias are this replica's share.
template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training,
                        ReplicaSync* sync = nullptr);

}  // namespace crfseg::kernels::cpu
