// CUDA batch norm: the GPU side of tensor/ops_batchnorm.cpp, with the
// signatures and math of kernels/cpu/batchnorm.h, including the
// synchronised form (sync != null): the per-channel moments, and in the
// backward the per-channel sums, are exchanged through the host with the
// CPU kernel's functions (kernels/replica_sync.h), a few doubles per channel.
//
// Statistics: each channel's values are cut into chunks, one 256-thread
// block each (kernels/channel_chunks.h: about 1024 blocks over all channels,
// at least 8192 values per block). Each thread sums its values shifted by
// its first one in double, the block merges the 256 (count, mean, M2)
// triples with Chan's update (kernels/moments.h, as the CPU kernel) in a
// fixed tree, and a second pass merges each channel's chunks in order:
// stable (no E[x^2] - E[x]^2 cancellation) and deterministic. The
// backward's per-channel sums (of gm and gm xhat) take the same two passes.
// The elementwise passes run a 2-D grid over (plane, position in plane).
// Test: tests/cuda/test_cuda_nn.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"
#include "kernels/replica_sync.h"

namespace crfseg::kernels::cuda {

// The doubles of device workspace batchnorm_forward_train and
// batchnorm_backward need for an [N, C, inner] tensor.
int64_t batchnorm_workspace_doubles(int64_t N, int64_t C, int64_t inner);

// Returns M = N * inner, the values per channel.
template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync, double* workspace,
                               Stream stream);
template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu,
                            Stream stream);
template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training, ReplicaSync* sync,
                        double* workspace, Stream stream);

}  // namespace crfseg::kernels::cuda
