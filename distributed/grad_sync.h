// GradSync: data-parallel gradient averaging in buckets, overlapped with the
// backward pass (the scheme of PyTorch's DistributedDataParallel, Li et al.,
// "PyTorch Distributed", VLDB 2020).
//
// The parameters are split into buckets of about bucket_bytes (25 MiB by
// default) in *reverse* registration order, because the backward produces
// the last layers' gradients first. Each bucket owns one flat buffer.
// During backward, a hook on every parameter (add_grad_accumulated_hook)
// copies the parameter's finished gradient, times this rank's weight, into
// its bucket; when a bucket is full it is all-reduced with a non-blocking
// collective while the backward continues with earlier layers. Buckets are
// started strictly in index order, so every rank issues the same sequence of
// collectives even if hooks fire in a different order. finish_step() starts
// whatever is left (e.g. parameters that got no gradient this step, reduced
// as zeros), waits for everything and writes the sums back into the grads.
//
// The math: with rank r holding n_r of the N samples of a global batch and
// computing the gradient g_r of its mean loss, the gradient of the mean loss
// over all N samples is  g = sum_r (n_r / N) g_r.  So the weight passed to
// begin_step() is n_r / N (1/P for equal shards) and the all-reduce is a sum.
// This is exact when the loss is a mean over samples with equally many
// counted pixels; with an ignore index the per-rank pixel counts differ and
// the result is the (slightly different) mean of per-rank means.
//
// Overlap needs the MPI library to make progress while the backward runs;
// without an asynchronous progress thread, Open MPI advances a non-blocking
// collective only inside MPI calls, so every hook also polls (test()) the
// buckets in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "distributed/communicator.h"
#include "tensor/tensor.h"

namespace crfseg::cuda {
class Stream;
}

namespace crfseg::dist {

struct GradSyncOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  // bucket capacity (a larger parameter gets a bucket of its own)
  bool overlap = true;  // false: every all-reduce starts in finish_step(), after the backward
};

// The bucket assignment: lists of parameter indices, walking the parameters
// from the last to the first and closing a bucket when the next parameter
// would take it past bucket_bytes or has another dtype. Pure: tested without
// a communicator. Throws ValueError for bucket_bytes < 1.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<Tensor>& params, int64_t bucket_bytes);

// Timings accumulated over steps (seconds), for benchmarks and the log.
struct GradSyncStats {
  int64_t steps = 0;
  int64_t buckets_started_in_backward = 0;  // all-reduces started inside the backward's hooks
  // CUDA buckets staged through the host (MPI): copies to the host queued
  // inside the backward; each bucket's all-reduce starts when the next one
  // is queued, or in finish_step for the last.
  int64_t copies_queued_in_backward = 0;
  double hook_seconds = 0;    // inside the hooks: copies into buckets, starting and polling collectives
  double finish_seconds = 0;  // inside finish_step(): the communication the backward did not hide
};

class GradSync {
 public:
  // params: f32/f64 leaves that require grad, all on one device (the CPU or
  // one GPU), the same list in the same order on every rank (e.g.
  // model.parameters()). Registers one hook per parameter. The buckets live
  // on the parameters' device; with CUDA parameters and a communicator that
  // reduces host memory only (MPI), each bucket is copied to pinned host
  // memory before its all-reduce (on a stream of GradSync's own, so the
  // backward's kernels go on meanwhile) and back after it; with NCCL the
  // device buffer is reduced in place (it must be on the communicator's
  // cuda_device()). Throws ValueError/DTypeError for bad parameters.
  GradSync(Communicator& comm, std::vector<Tensor> params, GradSyncOptions options = {});
  ~GradSync();  // waits for collectives in flight, removes the hooks
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Call before backward. The step, from here to finish_step, runs on one
  // current CUDA stream (the buckets are filled on the stream current in
  // the backward's hooks and read back on the one current in finish_step).
  // weight: this rank's share of the global batch,
  // n_r / N (see above); must be finite and >= 0. Throws DistributedError if
  // a step is already open.
  void begin_step(double weight);
  // Call after backward, before the optimizer step: every parameter's grad
  // becomes sum_r weight_r * grad_r, identical on all ranks. Parameters
  // without a grad on this rank keep none. Throws DistributedError for a
  // communication failure or when no step is open.
  void finish_step();

  const std::vector<std::vector<size_t>>& buckets() const { return bucket_params_; }
  const GradSyncStats& stats() const { return stats_; }

 private:
  struct Bucket;
  void on_grad(size_t param, const Tensor& grad);
  void fill(size_t param, const Tensor& grad);
  void seal_ready_buckets();
  void start_collectives(size_t end);
  void poll();
  void drain() noexcept;

  Communicator& comm_;
  std::vector<Tensor> params_;
  Device device_;  // of every parameter and bucket
  GradSyncOptions options_;
  std::vector<std::vector<size_t>> bucket_params_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<size_t> bucket_of_;   // parameter -> bucket
  std::vector<int64_t> offset_of_;  // parameter -> element offset in its bucket
  std::vector<bool> filled_;        // parameter's gradient copied in this step
  std::vector<int64_t> hook_ids_;
  size_t next_sealed_ = 0;          // buckets [0, next_sealed_) are full (staged: their host copy queued)
  size_t next_started_ = 0;         // buckets [0, next_started_) have their all-reduce started
  bool staged_ = false;             // CUDA buckets with a host-only communicator: every bucket is staged
  std::unique_ptr<cuda::Stream> copy_stream_;  // staged buckets' copies to the host
  bool in_step_ = false;
  double weight_ = 1;
  GradSyncStats stats_;
};

// Copies every tensor (contiguous, CPU or CUDA, any dtype; a CUDA tensor
// goes through a host copy) from rank `root` to all ranks, e.g. a model's
// state_dict so every rank starts from rank 0's weights. Throws ValueError
// for an undefined or non-contiguous tensor.
void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int root = 0);

// In-place sum of `values` over all ranks (blocking); a convenience for
// scalar statistics (loss sums, sample counts, confusion counts).
void allreduce_sum(Communicator& comm, std::vector<double>& values);

}  // namespace crfseg::dist
