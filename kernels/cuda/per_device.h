// once_per_device(probe): runs probe(device) for the current device the
// first time it is asked there and caches the answer; each call site (each
// lambda's type) keeps its own cache. For kernels that must raise their
// shared-memory limit on a device before its first launch (the GEMM
// variants v5, v6 and v7). A probe that throws caches nothing.
#pragma once

#include <map>
#include <mutex>

#include "kernels/cuda/cuda_check.h"

namespace crfseg::kernels::cuda {

template <typename Probe>
bool once_per_device(Probe probe) {
  static std::mutex mutex;
  static std::map<int, bool> answers;
  int device = 0;
  CRFSEG_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = answers.find(device); it != answers.end()) return it->second;
  const bool answer = probe(device);
  answers[device] = answer;
  return answer;
}

}  // namespace crfseg::kernels::cuda
