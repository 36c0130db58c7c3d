// Count, mean and sum of squared deviations (M2) of a set of values, merged
// with Chan et al.'s pairwise update:
//   n = na + nb, d = mean_b - mean_a, mean = mean_a + d nb / n,
//   M2 = M2a + M2b + d^2 na nb / n.
// As stable as a two-pass (no E[x^2] - E[x]^2 cancellation). Shared by the
// CPU batch norm (chunks and replicas merged in a fixed order) and the CUDA
// one (a block's per-thread moments merged in a fixed tree). An aggregate
// without initialisers, so CUDA can keep it in __shared__ memory: create it
// value-initialised (Moments{}, or a std::vector's elements) to start at 0.
#pragma once

#include "kernels/hd.h"

namespace crfseg::kernels {

struct Moments {
  double count, mean, m2;

  CRFSEG_HD void merge(double n, double chunk_mean, double chunk_m2) {
    if (n == 0.0) return;
    const double total = count + n, delta = chunk_mean - mean;
    mean += delta * (n / total);
    m2 += chunk_m2 + delta * delta * (count * n / total);
    count = total;
  }
  CRFSEG_HD void merge(const Moments& other) { merge(other.count, other.mean, other.m2); }
};

}  // namespace crfseg::kernels
