// Synchronised batch norm over a Communicator: the kernels::ReplicaSync that
// nn::set_batch_norm_sync hands to every BatchNorm2d of a model, so that in
// training each layer normalises with the statistics of all ranks' batches
// together (torch.nn.SyncBatchNorm). The batch-norm kernels do the math; this
// only moves their few doubles per layer and step (kernels/replica_sync.h).
//
// Cost: per BN layer, one blocking all-reduce of P * (3C + 1) doubles in the
// forward and of P * (2C + 2) in the backward (a U-Net's C = 64..1024: a few
// KiB to ~50 KiB at P = 2). Latency, not bandwidth, is what it adds.
//
// The all-gather is an all-reduce of a zeroed P * n buffer where rank r fills
// slot r: every backend (MPI, NCCL) has one, and adding zeros is exact.
#pragma once

#include <memory>

#include "distributed/communicator.h"
#include "kernels/replica_sync.h"

namespace crfseg::dist {

class CommunicatorReplicaSync final : public kernels::ReplicaSync {
 public:
  // comm must outlive this object (and the model's layers that hold it).
  explicit CommunicatorReplicaSync(Communicator& comm) : comm_(comm) {}
  int64_t replicas() const override { return comm_.size(); }
  int64_t replica() const override { return comm_.rank(); }
  void all_gather(const double* local, int64_t n, double* all) override;
  double loss_weight() const override { return loss_weight_; }
  // This rank's share n_r / N of the step's global batch (GradSync's weight);
  // set before each backward. Throws ValueError unless finite and >= 0.
  void set_loss_weight(double weight);

 private:
  Communicator& comm_;
  double loss_weight_ = 1.0;
};

}  // namespace crfseg::dist
