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
// Tests: tests/kernels/test_batchnorm.cpp (against kernels/ref) and
// tests/autograd/test_gradcheck_norm.cpp.
#pragma once

#include <cstdint>

namespace crfseg::kernels::cpu {

// Normalises with the batch statistics and writes them (mean, invstd: [C]).
// running_mean/running_var ([C], may both be nullptr) are updated in place
// with the unbiased variance. Needs M = N * inner >= 2 (the caller checks).
template <typename T>
void batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                             T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner, double momentum,
                             double eps, bool relu);

// Normalises with the running statistics; writes invstd [C] for the backward.
template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu);

// g: dL/dy. y: the forward output when the ReLU was fused (masks g), else
// nullptr. x may be nullptr in eval mode; then dweight must be nullptr.
// dweight and dbias may be nullptr when not wanted.
template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training);

}  // namespace crfseg::kernels::cpu
