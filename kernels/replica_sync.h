// ReplicaSync: what a kernel needs from data-parallel training to compute a
// statistic over the union of every replica's batch (synchronised batch
// norm): an all-gather of a few doubles per call.
//
// The transport only moves numbers (distributed/sync_batchnorm.cpp over MPI
// or NCCL; tests/support/thread_replicas.h over threads). The kernels do all
// the math, and combine the gathered values in replica order, so every
// replica computes bitwise-identical statistics, whatever the transport's
// reduction order.
//
// all_gather is a collective: every replica must make the same calls in the
// same order. A kernel that takes a ReplicaSync therefore calls it exactly
// once per forward (or backward) call, whatever its local input holds, even
// when that is empty.
#pragma once

#include <cstdint>

#include "kernels/moments.h"

namespace crfseg::kernels {

class ReplicaSync {
 public:
  virtual ~ReplicaSync() = default;
  // P, the number of replicas (>= 1).
  virtual int64_t replicas() const = 0;
  // This replica's index in [0, P).
  virtual int64_t replica() const = 0;
  // all[r * n + i] = replica r's local[i], for every r < P and i < n.
  virtual void all_gather(const double* local, int64_t n, double* all) = 0;
  // This replica's weight w_r in the loss that data parallelism minimises,
  // L = sum_r w_r L_r, where L_r is the loss this replica differentiates
  // (w_r = n_r / N for a mean over N samples split n_r per replica; any
  // equal weights, the default, for equal shards). See sum_over_replicas.
  virtual double loss_weight() const { return 1.0; }
};

// Replaces v[0, n) by its sums over all replicas, added in replica order.
// The first n_weighted values are gradient sums and are combined as
//   (1 / w_r) sum_r' w_r' v_r'
// because replica r differentiates only its own L_r (and data-parallel
// gradient averaging multiplies what it computes by w_r), while a statistic
// shared by all replicas carries gradient from every replica's loss. With
// equal weights that is the plain sum. (w_r = 0: this replica's gradient
// is discarded anyway; it gets the finite sum_r' w_r' v_r'.)
// A collective, like ReplicaSync::all_gather.
void sum_over_replicas(ReplicaSync& sync, double* v, int64_t n, int64_t n_weighted = 0);

// Replaces each of the C per-channel moments (count, mean, M2) by the
// channel's moments over every replica's values: one all-gather of 3 C
// doubles, the replicas merged in replica order with Chan's update (so every
// replica computes the same bits). Synchronised batch norm's statistics, on
// the CPU and on CUDA. A collective, like ReplicaSync::all_gather.
void merge_moments_over_replicas(ReplicaSync& sync, Moments* moments, int64_t C);

}  // namespace crfseg::kernels
