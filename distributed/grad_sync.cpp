// GradSync: bucketed, overlapped gradient all-reduce (see grad_sync.h).
#include "distributed/grad_sync.h"

#include <chrono>
#include <cmath>

#include "autograd/autograd_meta.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg::dist {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int64_t bytes_of(const Tensor& t) { return t.numel() * static_cast<int64_t>(dtype_size(t.dtype())); }

}  // namespace

// One bucket: a flat buffer holding its parameters' gradients back to back
// (in the order of bucket_params_), in the parameters' dtype, on their
// device. A communicator that takes device buffers (NCCL), or CPU
// parameters, reduce the buffer itself.
//
// Staged buckets (CUDA parameters, a communicator that reduces host memory
// only: MPI) also keep a pinned host copy, and a bucket's communication is
// then three stages, none of which stops the backward's launches:
//   1. sealed: the bucket is full; an event on the compute stream marks the
//      fill, and GradSync's copy stream waits for it and copies the buffer
//      to the host, so the copy engine works while the backward's kernels
//      go on (a synchronous copy would drain the compute stream first);
//   2. started: when the next bucket is sealed (or in finish_step) the
//      host waits for the copy's event, by then usually long done, and
//      starts the collective on the host copy. Not sooner, at whichever
//      hook first finds the copy done: that would depend on timing, and
//      every rank must issue its collectives (ours and any other user's of
//      the communicator, e.g. synchronised batch norm's) in one order;
//   3. finish_step waits for it and queues the copy back on the compute
//      stream, before the kernels that write the sums into the gradients.
struct GradSync::Bucket {
  DType dtype = DType::f32;
  int64_t numel = 0;
  Tensor buffer;  // [numel] on the parameters' device
  size_t filled = 0;  // parameters copied in this step
  std::unique_ptr<Request> request;
  // Staged buckets only (GradSync::staged_):
  cuda::PinnedBuffer host;
  std::unique_ptr<cuda::Event> sealed;    // compute stream: the buffer is full
  std::unique_ptr<cuda::Event> copied;    // copy stream: the host copy is whole
  std::unique_ptr<cuda::Event> returned;  // compute stream: the sums are back (the host copy is free again)

  int64_t bytes() const { return numel * static_cast<int64_t>(dtype_size(dtype)); }
};

std::vector<std::vector<size_t>> assign_buckets(const std::vector<Tensor>& params, int64_t bucket_bytes) {
  CRFSEG_CHECK(bucket_bytes >= 1, ValueError, "assign_buckets: expected bucket_bytes >= 1, got ", bucket_bytes);
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t b = bytes_of(params[k]);
    const bool fits = !buckets.empty() && bytes + b <= bucket_bytes &&
                      params[buckets.back().front()].dtype() == params[k].dtype();
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(k);
    bytes += b;
  }
  return buckets;
}

GradSync::GradSync(Communicator& comm, std::vector<Tensor> params, GradSyncOptions options)
    : comm_(comm), params_(std::move(params)), options_(options) {
  CRFSEG_CHECK(!params_.empty(), ValueError, "GradSync: expected at least one parameter");
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    CRFSEG_CHECK(p.defined() && requires_grad(p) && is_leaf(p), ValueError, "GradSync: parameter ", i,
                 " must be a leaf that requires grad, got ", p.defined() ? p.str() : std::string("an undefined tensor"));
    CRFSEG_CHECK(p.device() == params_[0].device(), ValueError, "GradSync: every parameter must be on one device; "
                 "parameter 0 is on ", params_[0].device().str(), ", parameter ", i, " on ", p.device().str());
    CRFSEG_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, DTypeError, "GradSync: parameter ", i,
                 " must be f32 or f64, got ", dtype_name(p.dtype()));
  }
  device_ = params_[0].device();
  staged_ = device_.is_cuda() && !comm_.reduces_device_buffers();
  if (device_.is_cuda() && !staged_) {
    CRFSEG_CHECK(comm_.cuda_device() == device_.index, ValueError, "GradSync: the ", comm_.backend(),
                 " communicator of rank ", comm_.rank(), " reduces memory of cuda:", comm_.cuda_device(),
                 ", but the parameters are on ", device_.str());
  }
  bucket_params_ = assign_buckets(params_, options_.bucket_bytes);
  bucket_of_.resize(params_.size());
  offset_of_.resize(params_.size());
  filled_.assign(params_.size(), false);
  for (size_t b = 0; b < bucket_params_.size(); ++b) {
    auto bucket = std::make_unique<Bucket>();
    bucket->dtype = params_[bucket_params_[b].front()].dtype();
    for (size_t i : bucket_params_[b]) {
      bucket_of_[i] = b;
      offset_of_[i] = bucket->numel;
      bucket->numel += params_[i].numel();
    }
    bucket->buffer = zeros({bucket->numel}, {bucket->dtype, device_});
    if (staged_) {
      bucket->host = cuda::PinnedBuffer(static_cast<size_t>(bucket->bytes()), device_.index);
      bucket->sealed = std::make_unique<cuda::Event>(device_.index, false);
      bucket->copied = std::make_unique<cuda::Event>(device_.index, false);
      bucket->returned = std::make_unique<cuda::Event>(device_.index, false);
    }
    buckets_.push_back(std::move(bucket));
  }
  if (staged_) copy_stream_ = std::make_unique<cuda::Stream>(device_.index);
  for (size_t i = 0; i < params_.size(); ++i) {
    hook_ids_.push_back(add_grad_accumulated_hook(params_[i], [this, i](const Tensor& g) { on_grad(i, g); }));
  }
}

GradSync::~GradSync() {
  drain();
  copy_stream_.reset();
  for (size_t i = 0; i < params_.size(); ++i) {
    try {
      remove_grad_accumulated_hook(params_[i], hook_ids_[i]);
    } catch (...) {  // destructors never throw
    }
  }
}

// Waits for a step's collectives and copies (a step that threw halfway may
// leave some in flight, on every rank alike): none may still use a bucket
// when it is refilled or freed.
void GradSync::drain() noexcept {
  for (auto& b : buckets_) {
    b->request.reset();  // Request's destructor waits (and never throws)
    if (!staged_) continue;
    try {
      b->copied->synchronize();
      b->returned->synchronize();
    } catch (...) {  // a CUDA error here resurfaces at the next CUDA call
    }
  }
}

void GradSync::begin_step(double weight) {
  if (in_step_) throw DistributedError("GradSync::begin_step: the previous step was not finished (call finish_step)");
  CRFSEG_CHECK(std::isfinite(weight) && weight >= 0, ValueError,
               "GradSync::begin_step: expected a finite weight >= 0, got ", weight);
  drain();
  in_step_ = true;
  weight_ = weight;
  next_sealed_ = next_started_ = 0;
  filled_.assign(params_.size(), false);
  for (auto& b : buckets_) {
    b->filled = 0;
    // This step's fills (on the stream current now) come after the last
    // step's copy back into the buffer (on the stream current then).
    if (staged_) b->returned->block(cuda::current_stream(device_.index));
  }
}

// Copies weight * grad into the parameter's slot of its bucket.
void GradSync::fill(size_t i, const Tensor& grad) {
  Bucket& b = *buckets_[bucket_of_[i]];
  const int64_t n = params_[i].numel(), at = offset_of_[i];
  if (grad.defined()) {
    CRFSEG_CHECK(grad.device() == device_, DeviceError, "GradSync: the gradient of parameter ", i, " is on ",
                 grad.device().str(), ", the parameter on ", device_.str());
    CRFSEG_CHECK(grad.numel() == n && grad.dtype() == b.dtype, ShapeError, "GradSync: the gradient of parameter ", i,
                 " is ", grad.str(), ", expected ", params_[i].str());
  }
  const Tensor slot = ops::slice(b.buffer, 0, at, at + n);
  if (!grad.defined()) {
    ops::zero_(slot);  // no gradient on this rank (e.g. a skipped layer): contributes zero
  } else if (device_.is_cuda()) {
    // Two passes on the current stream, after the kernels that made grad.
    ops::copy_(slot, ops::reshape(grad, {n}));
    ops::mul_(slot, weight_);
  } else {
    // One pass on the CPU, inside the backward's hook.
    const Tensor g = ops::contiguous(grad);
    if (b.dtype == DType::f32) {
      const float* src = g.data<float>();
      float* dst = slot.data<float>();
      const float w = static_cast<float>(weight_);
      for (int64_t j = 0; j < n; ++j) dst[j] = w * src[j];
    } else {
      const double* src = g.data<double>();
      double* dst = slot.data<double>();
      for (int64_t j = 0; j < n; ++j) dst[j] = weight_ * src[j];
    }
  }
  filled_[i] = true;
  ++b.filled;
}

void GradSync::on_grad(size_t i, const Tensor& grad) {
  if (!in_step_) return;  // a backward outside begin/finish stays local (like DDP's no_sync)
  const auto t0 = Clock::now();
  if (filled_[i]) {
    throw DistributedError("GradSync: parameter " + std::to_string(i) +
                           " received a second gradient in one step (run one backward per begin_step/finish_step)");
  }
  if (bucket_of_[i] < next_sealed_) {
    throw DistributedError("GradSync: parameter " + std::to_string(i) + "'s bucket was already all-reduced");
  }
  fill(i, grad);
  if (options_.overlap) {
    const size_t sealed = next_sealed_, started = next_started_;
    seal_ready_buckets();
    if (next_sealed_ > sealed) {
      // In place: start what was sealed. Staged: all but the newest bucket,
      // whose copy to the host is left to run (see Bucket).
      start_collectives(staged_ ? next_sealed_ - 1 : next_sealed_);
      stats_.buckets_started_in_backward += static_cast<int64_t>(next_started_ - started);
      if (staged_) stats_.copies_queued_in_backward += static_cast<int64_t>(next_sealed_ - sealed);
    }
    poll();
  }
  stats_.hook_seconds += seconds_since(t0);
}

// Seals buckets in index order while the next one is complete. A staged
// bucket's copy to the host is queued on the copy stream, after the
// compute stream's fill (and after the last step's copy back, the only
// other use of the host copy).
void GradSync::seal_ready_buckets() {
  while (next_sealed_ < buckets_.size() && buckets_[next_sealed_]->filled == bucket_params_[next_sealed_].size()) {
    Bucket& b = *buckets_[next_sealed_];
    if (staged_) {
      const cuda::StreamHandle copy = copy_stream_->handle();
      b.sealed->record(cuda::current_stream(device_.index));
      b.sealed->block(copy);
      b.returned->block(copy);
      cuda::copy_to_host_async(b.host.data(), b.buffer.raw_data(), static_cast<size_t>(b.bytes()), device_.index,
                               copy);
      b.copied->record(copy);
    }
    ++next_sealed_;
  }
}

// Starts the collectives of the sealed buckets before `end`, in index order,
// so all ranks issue them in the same order; for a staged bucket the host
// first waits for its copy.
void GradSync::start_collectives(size_t end) {
  for (; next_started_ < end; ++next_started_) {
    Bucket& b = *buckets_[next_started_];
    if (staged_) b.copied->synchronize();
    void* reduced = staged_ ? b.host.data() : b.buffer.raw_data();  // what the communicator reduces
    b.request = b.dtype == DType::f32 ? comm_.iallreduce_sum(static_cast<float*>(reduced), b.numel)
                                      : comm_.iallreduce_sum(static_cast<double*>(reduced), b.numel);
  }
}

// Lets the communicator progress the collectives in flight (see grad_sync.h).
void GradSync::poll() {
  for (size_t b = 0; b < next_started_; ++b) {
    if (buckets_[b]->request) buckets_[b]->request->test();
  }
}

void GradSync::finish_step() {
  if (!in_step_) throw DistributedError("GradSync::finish_step: no step is open (call begin_step before backward)");
  in_step_ = false;  // also on error: the next begin_step starts clean
  const auto t0 = Clock::now();
  // Parameters whose hook did not fire: a gradient set without backward, or
  // none at all this step (counted as zero).
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!filled_[i]) fill(i, grad(params_[i]));
  }
  seal_ready_buckets();
  start_collectives(next_sealed_);
  for (auto& b : buckets_) {
    std::unique_ptr<Request> r = std::move(b->request);
    if (r) r->wait();
    if (staged_) {  // queued before the write-back below, on the same stream
      const cuda::StreamHandle compute = cuda::current_stream(device_.index);
      cuda::copy_to_device_async(b->buffer.raw_data(), b->host.data(), static_cast<size_t>(b->bytes()),
                                 device_.index, compute);
      b->returned->record(compute);
    }
  }
  // Write the sums back into the gradients.
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = grad(params_[i]);
    if (!g.defined()) continue;
    const Bucket& b = *buckets_[bucket_of_[i]];
    const int64_t n = params_[i].numel(), at = offset_of_[i];
    ops::copy_(g, ops::reshape(ops::slice(b.buffer, 0, at, at + n), g.shape()));  // any strides; bumps g's version
  }
  ++stats_.steps;
  stats_.finish_seconds += seconds_since(t0);
}

void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int root) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    CRFSEG_CHECK(t.defined() && t.is_contiguous(), ValueError, "broadcast_tensors: tensor ", i,
                 " must be a defined contiguous tensor, got ", t.defined() ? t.str() : std::string("undefined"));
    if (t.device().is_cuda()) {  // the communicators broadcast host memory: through a host copy
      const Tensor host = comm.rank() == root ? ops::to_device(t, Device::cpu()) : empty(t.shape(), {t.dtype()});
      comm.broadcast(host.raw_data(), bytes_of(t), root);
      cuda::copy_to_device(t.raw_data(), host.raw_data(), static_cast<size_t>(bytes_of(t)), t.device().index);
    } else {
      comm.broadcast(t.raw_data(), bytes_of(t), root);
    }
    t.bump_version();
  }
}

void allreduce_sum(Communicator& comm, std::vector<double>& values) {
  comm.allreduce_sum(values.data(), static_cast<int64_t>(values.size()));
}

}  // namespace crfseg::dist
