// The MPI communicator (compiled only with -DCRFSEG_WITH_MPI).
//
// MPI is initialised on first use with MPI_THREAD_FUNNELED (only the thread
// that created the communicator calls MPI; the data loader's worker threads
// never do) and finalised by an atexit handler. The communicator works on a
// duplicate of MPI_COMM_WORLD whose error handler is MPI_ERRORS_RETURN, so an
// MPI failure comes back as a code that check() turns into DistributedError
// (the default handler, MPI_ERRORS_ARE_FATAL, would abort the process).
//
// MPI counts are int: buffers longer than INT_MAX elements are reduced in
// chunks (a 25 MB gradient bucket is 6.5 M floats, far below).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <vector>

#include "distributed/backends.h"

namespace crfseg::dist {

namespace {

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) text[0] = '\0';
  throw DistributedError(std::string(call) + " failed with MPI error " + std::to_string(code) + ": " + text);
}

void finalize_at_exit() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

void ensure_initialized() {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (initialized) return;
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  std::atexit(finalize_at_exit);
  if (provided < MPI_THREAD_FUNNELED) {
    throw DistributedError("MPI_Init_thread: asked for MPI_THREAD_FUNNELED, the MPI library provides level " +
                           std::to_string(provided));
  }
}

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

class MpiRequest final : public Request {
 public:
  explicit MpiRequest(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  ~MpiRequest() override {
    try {
      wait();
    } catch (...) {  // destructors never throw; wait() reports errors to callers that call it
    }
  }
  bool test() override {
    if (requests_.empty()) return true;
    int done = 0;
    check(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE),
          "MPI_Testall");
    if (done) requests_.clear();
    return done != 0;
  }
  void wait() override {
    if (requests_.empty()) return;
    std::vector<MPI_Request> pending;
    pending.swap(requests_);
    check(MPI_Waitall(static_cast<int>(pending.size()), pending.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }

 private:
  std::vector<MPI_Request> requests_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    ensure_initialized();
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // The rank among the processes that share this node's memory.
    MPI_Comm node = MPI_COMM_NULL;
    int code = MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    if (code == MPI_SUCCESS) {
      code = MPI_Comm_rank(node, &local_rank_);
      MPI_Comm_free(&node);
    }
    if (code != MPI_SUCCESS) MPI_Comm_free(&comm_);  // the destructor will not run
    check(code, "MPI_Comm_split_type / MPI_Comm_rank (node)");
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "mpi"; }

  void allreduce_sum(float* data, int64_t count) override { blocking(data, count); }
  void allreduce_sum(double* data, int64_t count) override { blocking(data, count); }
  std::unique_ptr<Request> iallreduce_sum(float* data, int64_t count) override { return start(data, count); }
  std::unique_ptr<Request> iallreduce_sum(double* data, int64_t count) override { return start(data, count); }

  void broadcast(void* data, int64_t bytes, int root) override {
    CRFSEG_CHECK(bytes >= 0 && root >= 0 && root < size_, ValueError, "broadcast: expected bytes >= 0 and a root in [0, ",
                 size_, "), got ", bytes, " bytes from root ", root);
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < bytes;) {
      const int n = static_cast<int>(std::min<int64_t>(bytes - done, INT_MAX));
      check(MPI_Bcast(p + done, n, MPI_BYTE, root, comm_), "MPI_Bcast");
      done += n;
    }
  }
  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  template <typename T>
  void blocking(T* data, int64_t count) {
    CRFSEG_CHECK(count >= 0, ValueError, "allreduce_sum: expected a count >= 0, got ", count);
    for (int64_t done = 0; done < count;) {
      const int n = static_cast<int>(std::min<int64_t>(count - done, INT_MAX));
      check(MPI_Allreduce(MPI_IN_PLACE, data + done, n, mpi_type<T>(), MPI_SUM, comm_), "MPI_Allreduce");
      done += n;
    }
  }
  template <typename T>
  std::unique_ptr<Request> start(T* data, int64_t count) {
    CRFSEG_CHECK(count >= 0, ValueError, "iallreduce_sum: expected a count >= 0, got ", count);
    std::vector<MPI_Request> requests;
    for (int64_t done = 0; done < count;) {
      const int n = static_cast<int>(std::min<int64_t>(count - done, INT_MAX));
      MPI_Request r;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + done, n, mpi_type<T>(), MPI_SUM, comm_, &r), "MPI_Iallreduce");
      requests.push_back(r);
      done += n;
    }
    return std::make_unique<MpiRequest>(std::move(requests));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

void mpi_abort_world(int code) {
  int initialized = 0, finalized = 0, size = 1;
  if (MPI_Initialized(&initialized) != MPI_SUCCESS || !initialized) return;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  if (MPI_Comm_size(MPI_COMM_WORLD, &size) == MPI_SUCCESS && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace crfseg::dist
