// In-process replicas for testing synchronised kernels and layers without
// MPI: ThreadReplicas(P).run(fn) calls fn(r, sync_r) for every r < P, each on
// its own thread, where sync_r is a kernels::ReplicaSync whose all_gather
// exchanges through shared memory between two barriers. Replica r's loss
// weight is weights[r] (1 for all when not given).
#pragma once

#include <barrier>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/replica_sync.h"

namespace crfseg::test {

class ThreadReplicas {
 public:
  explicit ThreadReplicas(int64_t P, std::vector<double> weights = {})
      : P_(P), weights_(weights.empty() ? std::vector<double>(P, 1.0) : std::move(weights)), barrier_(P) {
    if (static_cast<int64_t>(weights_.size()) != P) throw std::invalid_argument("ThreadReplicas: one weight per replica");
  }

  // Runs fn on P threads at once and waits for all; rethrows the first
  // exception. A replica that throws between two all_gathers leaves the
  // others waiting, so fn should throw only where every replica does.
  void run(const std::function<void(int64_t, kernels::ReplicaSync&)>& fn) {
    std::vector<std::thread> threads;
    std::exception_ptr error;
    std::mutex error_lock;
    for (int64_t r = 0; r < P_; ++r) {
      threads.emplace_back([&, r] {
        Sync sync(*this, r);
        try {
          fn(r, sync);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_lock);
          if (!error) error = std::current_exception();
        }
      });
    }
    for (std::thread& t : threads) t.join();
    if (error) std::rethrow_exception(error);
  }

  int64_t gathers() const { return gathers_; }  // all_gather rounds so far

 private:
  class Sync final : public kernels::ReplicaSync {
   public:
    Sync(ThreadReplicas& group, int64_t r) : group_(group), r_(r) {}
    int64_t replicas() const override { return group_.P_; }
    int64_t replica() const override { return r_; }
    double loss_weight() const override { return group_.weights_[r_]; }
    void all_gather(const double* local, int64_t n, double* all) override {
      if (r_ == 0) {
        group_.board_.assign(group_.P_ * n, 0.0);
        ++group_.gathers_;
      }
      group_.barrier_.arrive_and_wait();  // the board is sized
      std::copy(local, local + n, group_.board_.begin() + r_ * n);
      group_.barrier_.arrive_and_wait();  // every slot is written
      std::copy(group_.board_.begin(), group_.board_.begin() + group_.P_ * n, all);
      group_.barrier_.arrive_and_wait();  // everyone has read it: the next round may resize
    }

   private:
    ThreadReplicas& group_;
    int64_t r_;
  };

  int64_t P_;
  std::vector<double> weights_;
  std::barrier<> barrier_;
  std::vector<double> board_;
  int64_t gathers_ = 0;
};

}  // namespace crfseg::test
