// The NCCL communicator (compiled only with -DCRFSEG_WITH_NCCL, which needs
// CUDA, NCCL and MPI): one rank per GPU.
//
// Bootstrap: MPI starts the ranks (mpirun/srun); each picks its GPU as
// local rank mod device count (the MPI communicator's local_rank(), from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the rank among the processes on
// this node; two ranks on one GPU are a DistributedError);
// rank 0 creates an ncclUniqueId, MPI_Bcast sends it to all, and every rank
// calls ncclCommInitRank. Broadcast and barrier of host data go through MPI.
//
// All-reduce: device buffers (cudaPointerGetAttributes says device or
// managed; they must be on this rank's device) are reduced in place with
// ncclAllReduce on the communicator's stream, after an event recorded on
// crfseg's current stream, so the kernels that wrote them finish first
// (GradSync's buckets, filled by copies on that stream). Host buffers are
// staged: copy to a device scratch buffer, ncclAllReduce, and the copy
// back happens in wait(), after an event recorded behind the all-reduce has
// completed, so the all-reduce itself overlaps the caller's work. The
// staging costs two PCIe copies per bucket; device-resident gradients
// avoid them.
//
// Failures: wait() polls the all-reduce's event and NCCL's asynchronous
// error instead of blocking in cudaEventSynchronize, so a failed transport
// or a peer that stopped without taking the job down (killed, hung) gives
// a DistributedError instead of a hang: on an asynchronous error, or after
// CRFSEG_NCCL_TIMEOUT_S seconds (default 1800; 0 waits for ever), the
// communicator is aborted (ncclCommAbort, which ends its kernels) and
// every later call on it throws.
//
// Status: compiles and links in CI against /usr/local/cuda's NCCL; it has
// not been run (no GPU machine was available when it was written).
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>  // gethostname

#include "distributed/backends.h"
#include "tensor/cuda_memory.h"

namespace crfseg::dist {

namespace {

void check_nccl(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) {
    throw DistributedError(std::string(call) + " failed with NCCL error " + std::to_string(static_cast<int>(r)) + ": " +
                           ncclGetErrorString(r));
  }
}
void check_cuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess) {
    throw DistributedError(std::string(call) + " failed with CUDA error " + std::to_string(static_cast<int>(e)) + ": " +
                           cudaGetErrorString(e));
  }
}

// The device whose memory holds p, or -1 for host memory.
int device_of(const void* p) {
  cudaPointerAttributes attr{};
  check_cuda(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

// The NCCL communicator, shared by NcclCommunicator and its requests:
// once aborted it is neither used nor destroyed again. timeout_s: how long
// a wait() lets an all-reduce run (CRFSEG_NCCL_TIMEOUT_S, read once).
struct NcclComm {
  ncclComm_t comm = nullptr;
  bool aborted = false;
  double timeout_s = 0;
  NcclComm() = default;
  NcclComm(const NcclComm&) = delete;  // one owner of the handle
  NcclComm& operator=(const NcclComm&) = delete;
  ~NcclComm() {
    if (comm != nullptr && !aborted) ncclCommDestroy(comm);
  }
  void check_usable() const {
    if (aborted) throw DistributedError("nccl: the communicator was aborted after an earlier failure");
  }
  // Ends the communicator's kernels (so the stream moves on) and marks it.
  void abort() {
    if (!aborted && comm != nullptr) ncclCommAbort(comm);
    aborted = true;
  }
};

// CRFSEG_NCCL_TIMEOUT_S: seconds a wait() lets an all-reduce run (0: no
// limit); 1800 when unset. Anything else is a ValueError naming it.
double nccl_timeout_seconds() {
  const char* v = std::getenv("CRFSEG_NCCL_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return 1800.0;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  CRFSEG_CHECK(end != v && *end == '\0' && std::isfinite(s) && s >= 0, ValueError,
               "CRFSEG_NCCL_TIMEOUT_S: expected seconds >= 0 (0: no limit), got '", v, "'");
  return s;
}

// An all-reduce in flight on the stream: done when `done_` has fired; a
// staged one copies the result back to the host buffer in wait().
class NcclRequest final : public Request {
 public:
  NcclRequest(std::shared_ptr<NcclComm> comm, cudaEvent_t done, void* host, void* scratch, size_t bytes, int device)
      : comm_(std::move(comm)), done_(done), host_(host), scratch_(scratch), bytes_(bytes), device_(device) {}
  ~NcclRequest() override {
    try {
      wait();
    } catch (...) {  // destructors never throw
    }
    crfseg::cuda::free_bytes(scratch_, device_);  // to the NCCL stream's pool, the only stream that used it
    if (done_ != nullptr) cudaEventDestroy(done_);
  }
  bool test() override {
    return finished_ || event_done();  // the copy back (if any) still happens in wait()
  }
  void wait() override {
    if (finished_) return;
    finished_ = true;
    wait_for_event();
    if (host_ != nullptr) check_cuda(cudaMemcpy(host_, scratch_, bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  }

 private:
  // Whether the all-reduce has completed. Throws once the communicator was
  // aborted: its events then fire with the all-reduce cut short, no result.
  bool event_done() const {
    comm_->check_usable();
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) {
      // Not an error, but the runtime may keep it as the last error, and
      // the next kernel's launch check would report it (as
      // crfseg::cuda::event_complete clears it too).
      (void)cudaGetLastError();
      return false;
    }
    check_cuda(e, "cudaEventQuery");
    return true;
  }

  // Polls the event; between polls, NCCL's asynchronous error and the
  // time limit (see the file comment). Yields the core for the first
  // thousand polls (a bucket's all-reduce is usually that short), then
  // sleeps 100 us between them.
  void wait_for_event() {
    const double limit = comm_->timeout_s;
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      if (event_done()) return;
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm_->comm, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress) {
        comm_->abort();
        throw DistributedError(std::string("nccl: an all-reduce failed: ") + ncclGetErrorString(async) +
                               " (the communicator was aborted)");
      }
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (limit > 0 && waited > limit) {
        comm_->abort();
        throw DistributedError("nccl: an all-reduce has not completed after " + std::to_string(waited) +
                               " s (has a peer stopped?); the communicator was aborted. CRFSEG_NCCL_TIMEOUT_S "
                               "sets the limit (0: none)");
      }
      if (polls < 1000) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }

  std::shared_ptr<NcclComm> comm_;
  cudaEvent_t done_;
  void* host_;
  void* scratch_;
  size_t bytes_;
  int device_;
  bool finished_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator() : mpi_(make_mpi_communicator()) {
    comm_->timeout_s = nccl_timeout_seconds();  // a bad CRFSEG_NCCL_TIMEOUT_S fails here, not mid-training
    int devices = 0;
    check_cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (devices < 1) throw DistributedError("nccl: no CUDA device is visible to rank " + std::to_string(mpi_->rank()));
    // Local rank mod the visible devices: the right GPU both when every rank
    // sees the node's GPUs and when a launcher gives each rank its own
    // (srun --gpus-per-task, CUDA_VISIBLE_DEVICES per rank: one visible).
    device_ = mpi_->local_rank() % devices;
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    check_one_rank_per_gpu();
    ncclUniqueId id;
    if (mpi_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi_->broadcast(&id, sizeof id, 0);
    check_nccl(ncclCommInitRank(&comm_->comm, mpi_->size(), id, mpi_->rank()), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  }
  ~NcclCommunicator() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }  // comm_ is destroyed with its last holder (a request may outlive this)

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  int local_rank() const override { return mpi_->local_rank(); }
  std::string backend() const override { return "nccl"; }
  bool reduces_device_buffers() const override { return true; }
  int cuda_device() const override { return device_; }

  void allreduce_sum(float* data, int64_t count) override { start(data, count, ncclFloat32)->wait(); }
  void allreduce_sum(double* data, int64_t count) override { start(data, count, ncclFloat64)->wait(); }
  std::unique_ptr<Request> iallreduce_sum(float* data, int64_t count) override {
    return start(data, count, ncclFloat32);
  }
  std::unique_ptr<Request> iallreduce_sum(double* data, int64_t count) override {
    return start(data, count, ncclFloat64);
  }
  void broadcast(void* data, int64_t bytes, int root) override { mpi_->broadcast(data, bytes, root); }
  void barrier() override { mpi_->barrier(); }

 private:
  // NCCL refuses two ranks on one GPU ("Duplicate GPU detected") only
  // inside ncclCommInitRank: find such ranks first and say what to change.
  // Each rank puts a 52-bit hash of (host name, its GPU's PCI bus id) in its
  // slot of an all-reduced vector (exact in doubles); every rank then sees
  // the same duplicates and all throw together.
  void check_one_rank_per_gpu() {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    char bus[64] = {};
    check_cuda(cudaDeviceGetPCIBusId(bus, sizeof bus, device_), "cudaDeviceGetPCIBusId");
    const std::string where = std::string(host) + " " + bus;
    std::vector<double> ids(static_cast<size_t>(mpi_->size()), 0.0);
    ids[static_cast<size_t>(mpi_->rank())] =
        static_cast<double>(std::hash<std::string>{}(where) & ((uint64_t{1} << 52) - 1)) + 1.0;
    mpi_->allreduce_sum(ids.data(), static_cast<int64_t>(ids.size()));
    for (size_t r = 0; r < ids.size(); ++r) {
      for (size_t q = 0; q < r; ++q) {
        if (ids[q] == ids[r]) {
          throw DistributedError("nccl: ranks " + std::to_string(q) + " and " + std::to_string(r) +
                                 " would share one GPU (this rank, " + std::to_string(mpi_->rank()) + ", is on " +
                                 where + "); NCCL needs a GPU per rank: start at most as many ranks per node as "
                                 "it has GPUs, or use --dist mpi");
        }
      }
    }
  }

  std::unique_ptr<Request> start(void* data, int64_t count, ncclDataType_t type) {
    CRFSEG_CHECK(count >= 0, ValueError, "iallreduce_sum: expected a count >= 0, got ", count);
    comm_->check_usable();
    const size_t bytes = static_cast<size_t>(count) * (type == ncclFloat64 ? 8 : 4);
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    const int holder = count > 0 ? device_of(data) : device_;
    if (holder >= 0 && holder != device_) {
      throw DistributedError("nccl: rank " + std::to_string(rank()) + " reduces on cuda:" + std::to_string(device_) +
                             " but was given a buffer on cuda:" + std::to_string(holder));
    }
    const bool staged = count > 0 && holder < 0;
    cudaEvent_t done = nullptr;
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    void* scratch = nullptr;
    try {
      void* target = data;
      if (!staged) {
        // The buffer was written by kernels on crfseg's current stream (the
        // legacy default stream unless a StreamGuard says otherwise), which a
        // non-blocking stream does not wait for: make the all-reduce wait.
        // `done` serves as that marker first; it is recorded again below.
        check_cuda(cudaEventRecord(done, crfseg::cuda::current_stream(device_)), "cudaEventRecord (inputs ready)");
        check_cuda(cudaStreamWaitEvent(stream_, done, 0), "cudaStreamWaitEvent");
      } else {
        // From the caching allocator, in the NCCL stream's pool: no
        // cudaMalloc/cudaFree (a device-wide synchronisation) per call, and
        // the allocator's empty-cache-and-retry when memory is short.
        scratch = crfseg::cuda::malloc_bytes(bytes, device_, stream_);
        check_cuda(cudaMemcpyAsync(scratch, data, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
        target = scratch;
      }
      enqueue(target, count, type, done);
    } catch (...) {
      if (scratch != nullptr) {
        cudaStreamSynchronize(stream_);  // nothing may still read the scratch buffer
        crfseg::cuda::free_bytes(scratch, device_);
      }
      cudaEventDestroy(done);
      throw;
    }
    return std::make_unique<NcclRequest>(comm_, done, staged ? data : nullptr, scratch, bytes, device_);
  }
  void enqueue(void* target, int64_t count, ncclDataType_t type, cudaEvent_t done) {
    if (count > 0) {
      check_nccl(ncclAllReduce(target, target, static_cast<size_t>(count), type, ncclSum, comm_->comm, stream_),
                 "ncclAllReduce");
    }
    check_cuda(cudaEventRecord(done, stream_), "cudaEventRecord");
  }

  std::unique_ptr<Communicator> mpi_;
  std::shared_ptr<NcclComm> comm_ = std::make_shared<NcclComm>();
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator() { return std::make_unique<NcclCommunicator>(); }

}  // namespace crfseg::dist
