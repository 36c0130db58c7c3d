// Data-parallel training for `crfseg train`: the communicator, gradient
// averaging and the few statistics the ranks must agree on, behind calls
// that do nothing in a single-process run.
//
// With P ranks and --batch B, the global batch is G = P * B: every rank
// walks the same seeded epoch order and trains on its B-sample slice of each
// global batch (DataLoader shards); GradSync averages the gradients, weighted
// by each rank's share of the samples, during the backward. Every rank then
// takes the same optimizer step, so the weights stay identical without being
// sent again. Batch-norm statistics stay local to each rank by default (a BN
// layer normalises over its rank's B samples, so a run with BN is close to,
// but not the same as, a single process with batch G; rank 0's running
// statistics are the ones checkpointed). With --sync-bn every BN layer
// normalises over the whole global batch (dist::CommunicatorReplicaSync): the
// run then matches one process with batch G, at the cost of one small
// blocking all-reduce per BN layer in the forward and one in the backward.
//
// On GPUs each rank trains on gpu_for_rank()'s device; GradSync keeps the
// buckets there (NCCL reduces them in place, MPI through host copies) and
// synchronised batch norm exchanges its per-channel values through the host.
//
// Rank 0 alone prints, writes checkpoints, metrics and curves, and runs the
// validation pass (the other ranks wait for it in barrier() at the end of
// the epoch).
#pragma once

#include <memory>
#include <string>

#include "distributed/communicator.h"
#include "distributed/grad_sync.h"
#include "distributed/sync_batchnorm.h"
#include "layers/module.h"
#include "tools/crfseg/metrics.h"

namespace crfseg::app {

class DataParallel {
 public:
  // backend: --dist (auto, none, mpi, nccl); see dist::make_communicator.
  explicit DataParallel(const std::string& backend);

  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  bool is_root() const { return comm_->rank() == 0; }
  std::string backend() const { return comm_->backend(); }
  // The GPU this rank trains on when given a bare --device cuda (dist::gpu_for_rank).
  int gpu_for_rank(int visible) const { return dist::gpu_for_rank(*comm_, visible); }
  // True when the all-reduces take device memory (NCCL): one GPU per rank.
  bool reduces_on_device() const { return comm_->reduces_device_buffers(); }

  // Copies rank 0's parameters and buffers to every rank, then (P > 1) hooks
  // GradSync onto the parameters with buckets of bucket_mb MiB, and with
  // sync_bn synchronises every BatchNorm2d over the ranks.
  void attach(nn::Module& model, double bucket_mb, bool sync_bn = false);

  // Around backward(): begin with this rank's and the global batch's sample
  // counts; end makes every grad the gradient of the global batch's mean loss.
  void begin_backward(int64_t local_samples, int64_t global_samples);
  void end_backward();

  // The global batch's mean loss from this rank's mean over its samples.
  double global_mean_loss(double local_mean, int64_t local_samples, int64_t global_samples);
  // Adds the argmax of logits vs masks over all ranks' samples to `into`.
  void add_logits(ConfusionMatrix& into, const Tensor& logits, const Tensor& masks);

  // Every rank waits here for the others (MPI's barrier, no time limit):
  // after rank 0's validation and checkpoints, so that the other ranks do
  // not spend that time inside their next collective (NCCL's waits give up
  // after CRFSEG_NCCL_TIMEOUT_S).
  void barrier() { comm_->barrier(); }

  // "2 ranks (mpi), 3 gradient buckets": for the run's header.
  std::string describe() const;
  // GradSync's timings (null in a single-process run).
  const dist::GradSyncStats* sync_stats() const { return sync_ ? &sync_->stats() : nullptr; }

 private:
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::GradSync> sync_;
  std::shared_ptr<dist::CommunicatorReplicaSync> bn_sync_;  // with --sync-bn (P > 1)
  int64_t synced_bn_layers_ = 0;
};

}  // namespace crfseg::app
