// Communicator: the collective operations data-parallel training needs
// (all-reduce, broadcast, barrier) behind one small interface, with three
// implementations:
//   - SingleProcess: rank 0 of 1; every collective is the identity. Always built.
//   - MPI (distributed/mpi_communicator.cpp): built with -DCRFSEG_WITH_MPI when
//     Meson finds an MPI library (Debian: libopenmpi-dev); for CPU training,
//     one process per node or per socket, started by mpirun or srun.
//   - NCCL (distributed/nccl_communicator.cpp): built with -DCRFSEG_WITH_NCCL
//     when CUDA, NCCL and MPI are all found; one rank per GPU, bootstrapped
//     over MPI (rank 0's ncclUniqueId is broadcast with MPI_Bcast).
//
// Buffers are host memory for SingleProcess and MPI. The NCCL communicator
// reduces device buffers in place and stages host buffers through the GPU
// (see nccl_communicator.cpp), so the same training code works either way;
// GradSync, given CUDA parameters and a host-only communicator, stages its
// buckets through the host instead.
//
// Errors: every MPI/NCCL/CUDA call is checked; a failure throws
// DistributedError naming the call and its error code/string. Nothing aborts,
// except abort_world() (for the program's top level, see below).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tensor/error.h"

namespace crfseg::dist {

struct DistributedError : Error {
  using Error::Error;
};

// A non-blocking collective in flight. The buffer it was started on must not
// be read or written until wait() returns. The destructor waits (never throws:
// an error at that point is swallowed; call wait() to see it).
class Request {
 public:
  virtual ~Request() = default;
  // True once the operation is complete; also drives MPI's progress engine,
  // which (without an asynchronous progress thread) advances a non-blocking
  // collective only inside MPI calls.
  virtual bool test() = 0;
  // Blocks until complete. Throws DistributedError on failure.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single", "mpi" or "nccl".
  virtual std::string backend() const = 0;
  // This rank's index among the ranks on its node (the GPU it should use is
  // local_rank() mod the node's GPU count). Defaults to rank().
  virtual int local_rank() const { return rank(); }
  // True when the all-reduces take device pointers as they are (NCCL). A
  // communicator that returns false reads and writes host memory only, so a
  // caller holding device buffers stages them through the host (GradSync does).
  virtual bool reduces_device_buffers() const { return false; }
  // The CUDA device whose memory the all-reduces take, or -1 (host memory).
  virtual int cuda_device() const { return -1; }

  // In-place sum over all ranks of `count` elements at `data` (blocking).
  virtual void allreduce_sum(float* data, int64_t count) = 0;
  virtual void allreduce_sum(double* data, int64_t count) = 0;
  // Non-blocking in-place sums (MPI_Iallreduce / ncclAllReduce on a stream).
  virtual std::unique_ptr<Request> iallreduce_sum(float* data, int64_t count) = 0;
  virtual std::unique_ptr<Request> iallreduce_sum(double* data, int64_t count) = 0;
  // Copies `bytes` bytes at `data` from rank `root` to every rank (blocking).
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;

  bool is_root() const { return rank() == 0; }
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void allreduce_sum(float*, int64_t count) override;
  void allreduce_sum(double*, int64_t count) override;
  std::unique_ptr<Request> iallreduce_sum(float* data, int64_t count) override;
  std::unique_ptr<Request> iallreduce_sum(double* data, int64_t count) override;
  void broadcast(void*, int64_t bytes, int root) override;
  void barrier() override {}
};

enum class Backend { automatic, single, mpi, nccl };
// "auto", "none"/"single", "mpi", "nccl"; throws ValueError otherwise.
Backend parse_backend(const std::string& name);

// The GPU a rank trains on: the communicator's own device (NCCL), else its
// local rank mod the `visible` GPUs (> 0; ranks may then share one). Throws
// ValueError for visible < 1.
int gpu_for_rank(const Communicator& comm, int visible);

// True when this build has the MPI / NCCL communicator.
bool built_with_mpi();
bool built_with_nccl();

// True when the environment shows this process was started by an MPI or
// PMI launcher (mpirun/mpiexec: OMPI_COMM_WORLD_SIZE or PMI_SIZE/PMIX_RANK;
// srun: SLURM_NTASKS > 1 with SLURM_PROCID). MPI is initialised only then, so
// a plain `crfseg train` never pays for (or trips over) MPI start-up.
bool launched_by_mpi();

// The communicator for this process:
//   automatic: MPI when launched_by_mpi() and built with MPI, else single.
//   mpi:  MPI; throws NotImplementedError in a build without MPI.
//   nccl: NCCL (one rank per GPU, device = local rank mod GPU count);
//         throws NotImplementedError in a build without CUDA + NCCL + MPI.
//   single: SingleProcessCommunicator.
// MPI is initialised once per process (MPI_Init_thread, MPI_THREAD_FUNNELED:
// only the training thread calls MPI) and finalised at exit.
std::unique_ptr<Communicator> make_communicator(Backend backend = Backend::automatic);

// For a program's top level after an uncaught error: when MPI is running with
// more than one rank, MPI_Abort(MPI_COMM_WORLD, code), because the other ranks
// would otherwise wait forever in their next collective. Does nothing (and
// returns) otherwise.
void abort_world(int code);

}  // namespace crfseg::dist
