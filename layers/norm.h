// BatchNorm2d (torch.nn.BatchNorm2d): per-channel normalisation over N, H, W
// with an affine weight/bias, running statistics as buffers, and the
// num_batches_tracked counter torch keeps (so torchvision state dicts load
// strictly). Training mode normalises with the batch statistics and updates
// the running ones; eval mode uses the running ones.
//
// Synchronised batch norm (torch.nn.SyncBatchNorm): with `sync` set, training
// normalises with the statistics of every data-parallel replica's batch
// together, so P ranks with batch B train like one process with batch P B,
// and every rank keeps the same running statistics. Set it on a whole model
// with set_batch_norm_sync (dist::make_replica_sync gives one over MPI/NCCL).
#pragma once

#include <memory>
#include <vector>

#include "kernels/replica_sync.h"
#include "layers/module.h"

namespace crfseg::nn {

struct BatchNorm2dOptions {
  int64_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;
  bool fuse_relu = false;  // y = relu(bn(x)) in one pass (the conv-BN-ReLU blocks)
  DType dtype = DType::f32;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNorm2dOptions& options);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  BatchNorm2dOptions options;
  Tensor weight, bias;                 // [C] (undefined unless affine)
  Tensor running_mean, running_var;    // [C] buffers
  Tensor num_batches_tracked;          // i64 0-d buffer
  std::shared_ptr<kernels::ReplicaSync> sync;  // null: statistics of this process's batch only

  // This batch norm folded into the convolution before it, for inference
  // (layers/conv_bn.h): W', b', and the storages, offsets and versions of
  // the tensors they came from. The storages themselves, not the tensors'
  // handles: Module::to moves a parameter by pointing its handle at new
  // storage. Weak references, so a move frees the old device's memory (and
  // an expired one never equals a live storage).
  struct Folded {
    Tensor weight, bias;
    std::vector<std::weak_ptr<Storage>> storages;  // empty for an undefined source
    std::vector<int64_t> offsets;  // -1 for an undefined source
    std::vector<uint64_t> versions;
  };
  Folded folded;
};

// Sets (or, with nullptr, clears) `sync` on every BatchNorm2d in `root`'s
// tree; returns how many there are.
int64_t set_batch_norm_sync(Module& root, const std::shared_ptr<kernels::ReplicaSync>& sync);

}  // namespace crfseg::nn
