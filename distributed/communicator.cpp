// SingleProcessCommunicator, backend selection and launcher detection; the
// MPI and NCCL implementations are in their own files (see communicator.h).
#include "distributed/communicator.h"

#include <cstdlib>
#include <cstring>

#include "distributed/backends.h"

namespace crfseg::dist {

namespace {

// A request that is complete when it is created (SingleProcess).
class DoneRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

void check_count(const char* op, int64_t count) {
  CRFSEG_CHECK(count >= 0, ValueError, op, ": expected a count >= 0, got ", count);
}

int64_t env_int(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoll(v, nullptr, 10) : -1;
}

}  // namespace

void SingleProcessCommunicator::allreduce_sum(float*, int64_t count) { check_count("allreduce_sum", count); }
void SingleProcessCommunicator::allreduce_sum(double*, int64_t count) { check_count("allreduce_sum", count); }
std::unique_ptr<Request> SingleProcessCommunicator::iallreduce_sum(float*, int64_t count) {
  check_count("iallreduce_sum", count);
  return std::make_unique<DoneRequest>();
}
std::unique_ptr<Request> SingleProcessCommunicator::iallreduce_sum(double*, int64_t count) {
  check_count("iallreduce_sum", count);
  return std::make_unique<DoneRequest>();
}
void SingleProcessCommunicator::broadcast(void*, int64_t bytes, int root) {
  CRFSEG_CHECK(bytes >= 0 && root == 0, ValueError, "broadcast: expected bytes >= 0 and root 0 of 1 rank, got ",
               bytes, " bytes from root ", root);
}

Backend parse_backend(const std::string& name) {
  if (name == "auto") return Backend::automatic;
  if (name == "none" || name == "single") return Backend::single;
  if (name == "mpi") return Backend::mpi;
  if (name == "nccl") return Backend::nccl;
  throw ValueError("distributed backend must be auto, none, mpi or nccl, got '" + name + "'");
}

int gpu_for_rank(const Communicator& comm, int visible) {
  CRFSEG_CHECK(visible > 0, ValueError, "gpu_for_rank: expected at least one visible GPU, got ", visible);
  return comm.cuda_device() >= 0 ? comm.cuda_device() : comm.local_rank() % visible;
}

bool built_with_mpi() {
#ifdef CRFSEG_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef CRFSEG_WITH_NCCL
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  if (env_int("OMPI_COMM_WORLD_SIZE") >= 1) return true;        // Open MPI's mpirun
  if (env_int("PMI_SIZE") >= 1 || env_int("PMIX_RANK") >= 0) return true;  // MPICH/Hydra, PMIx (srun --mpi=pmix)
  return env_int("SLURM_NTASKS") > 1 && env_int("SLURM_PROCID") >= 0;      // srun with several tasks
}

std::unique_ptr<Communicator> make_communicator(Backend backend) {
  if (backend == Backend::automatic) backend = launched_by_mpi() && built_with_mpi() ? Backend::mpi : Backend::single;
  switch (backend) {
    case Backend::single:
      return std::make_unique<SingleProcessCommunicator>();
    case Backend::mpi:
#ifdef CRFSEG_WITH_MPI
      return make_mpi_communicator();
#else
      throw NotImplementedError(
          "distributed backend mpi: this build has no MPI (install libopenmpi-dev and reconfigure with meson)");
#endif
    case Backend::nccl:
#ifdef CRFSEG_WITH_NCCL
      return make_nccl_communicator();
#else
      throw NotImplementedError(
          "distributed backend nccl: this build has no NCCL (needs CUDA, NCCL and MPI found by meson)");
#endif
    case Backend::automatic:
      break;
  }
  throw ValueError("make_communicator: unknown backend");
}

void abort_world(int code) {
#ifdef CRFSEG_WITH_MPI
  mpi_abort_world(code);
#else
  (void)code;
#endif
}

}  // namespace crfseg::dist
