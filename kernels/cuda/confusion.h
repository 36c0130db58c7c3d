// CUDA confusion counts: the GPU side of ops::confusion_counts
// (tensor/ops_confusion.cpp, whose CPU loop is the reference).
// Test: tests/cuda/test_cuda_nn.cpp (against the CPU op; needs a device).
#pragma once

#include <cstdint>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

// For the n pairs (target[i], prediction[i]) of two contiguous device
// arrays: counts[t * classes + p] += 1 unless t == ignore_index. A pair
// with a class outside [0, classes) is not counted; counts[classes^2]
// becomes max over such i of (n - i), so the first one is n minus it (0:
// none). counts holds classes^2 + 1 zeroed values, on the device.
// Integer sums: the same counts in any order (deterministic).
void confusion_counts(const int64_t* predictions, const int64_t* targets, int64_t n, int64_t classes,
                      int64_t ignore_index, int64_t* counts, Stream stream);
// out[i] = add_to[i] + counts[i] for i < bins, counts[i] taken as 0 when
// counts[bins] (the first bad pair's header above) is not: a failed count
// adds nothing. add_to may be null (zeros).
void confusion_finish(const int64_t* counts, int64_t bins, const int64_t* add_to, int64_t* out, Stream stream);

}  // namespace crfseg::kernels::cuda
