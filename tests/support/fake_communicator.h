// FakeTwoRanks: a Communicator that pretends to be rank 0 of 2 whose
// partner holds the same data, so a sum doubles every element. For GradSync
// and broadcast tests without MPI (tests/distributed/test_grad_sync.cpp on
// the CPU, tests/cuda/test_cuda_distributed.cpp on CUDA tensors).
//
// A collective reads its buffer when it starts (`reduced` keeps what each
// was given, in the order started: as MPI may read it any time from then, so
// the data must be whole then) and writes the sums only in wait(), so a
// caller that reads a buffer before waiting sees the un-reduced values. It
// also records the element count of each collective in the order they were
// started (`started`), and the kind of
// memory each was handed (`kinds`: GradSync stages CUDA buckets in pinned
// memory for a host-only communicator). With
// device_buffers it reduces device memory as NCCL does (reduces_device_buffers,
// cuda_device 0); without, host memory only, as MPI, and it checks that it is
// never handed a device pointer. broadcast writes 0x3f bytes ("rank 0's":
// 0x3f3f3f3f is 0.747 as a float).
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "tensor/cuda_memory.h"
#include "tests/support/helpers.h"
#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/cuda_check.h"
#endif

namespace crfseg::test {

// What kind of memory p points to, as the CUDA runtime sees it (pageable
// host memory without a device: nothing else exists then).
enum class MemoryKind { pageable, pinned, device };
inline MemoryKind memory_kind(const void* p) {
#ifdef CRFSEG_WITH_CUDA
  if (cuda::device_count() == 0) return MemoryKind::pageable;
  cudaPointerAttributes attr{};
  CRFSEG_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
  if (attr.type == cudaMemoryTypeDevice) return MemoryKind::device;
  return attr.type == cudaMemoryTypeHost ? MemoryKind::pinned : MemoryKind::pageable;
#else
  (void)p;
  return MemoryKind::pageable;
#endif
}
inline bool is_device_pointer(const void* p) { return memory_kind(p) == MemoryKind::device; }

class FakeTwoRanks final : public dist::Communicator {
 public:
  explicit FakeTwoRanks(bool device_buffers = false) : device_buffers_(device_buffers) {}
  std::vector<int64_t> started;
  std::vector<MemoryKind> kinds;  // of each collective's buffer, in the order started
  std::vector<std::vector<double>> reduced;
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend() const override { return device_buffers_ ? "fake-device" : "fake-host"; }
  bool reduces_device_buffers() const override { return device_buffers_; }
  int cuda_device() const override { return device_buffers_ ? 0 : -1; }
  void allreduce_sum(float* d, int64_t n) override { later(d, n)->wait(); }
  void allreduce_sum(double* d, int64_t n) override { later(d, n)->wait(); }
  std::unique_ptr<dist::Request> iallreduce_sum(float* d, int64_t n) override { return later(d, n); }
  std::unique_ptr<dist::Request> iallreduce_sum(double* d, int64_t n) override { return later(d, n); }
  void broadcast(void* data, int64_t bytes, int) override {
    CHECK(!is_device_pointer(data));
    std::memset(data, 0x3f, static_cast<size_t>(bytes));
  }
  void barrier() override {}

 private:
  template <typename T>
  std::unique_ptr<dist::Request> later(T* d, int64_t n) {
    started.push_back(n);
    kinds.push_back(memory_kind(d));
    CHECK((kinds.back() == MemoryKind::device) == device_buffers_);  // GradSync stages for a host-only communicator
    struct Later : dist::Request {
      T* d;
      bool on_device;
      std::vector<T> sums;
      bool done = false;
      Later(T* d_, int64_t n, bool dev, std::vector<std::vector<double>>& log) : d(d_), on_device(dev) {
        sums.resize(static_cast<size_t>(n));
        if (on_device) cuda::copy_to_host(sums.data(), d, sums.size() * sizeof(T), 0);  // after the stream's work, as NCCL
        else std::copy(d, d + n, sums.begin());
        log.emplace_back(sums.begin(), sums.end());
        for (T& x : sums) x *= 2;
      }
      bool test() override { return done; }
      void wait() override {
        if (done) return;
        done = true;
        if (on_device) cuda::copy_to_device(d, sums.data(), sums.size() * sizeof(T), 0);
        else std::copy(sums.begin(), sums.end(), d);
      }
    };
    return std::make_unique<Later>(d, n, device_buffers_, reduced);
  }
  bool device_buffers_;
};

}  // namespace crfseg::test
