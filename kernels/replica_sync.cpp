// sum_over_replicas and merge_moments_over_replicas (see replica_sync.h).
#include "kernels/replica_sync.h"

#include <vector>

namespace crfseg::kernels {

void sum_over_replicas(ReplicaSync& sync, double* v, int64_t n, int64_t n_weighted) {
  const int64_t P = sync.replicas();
  const int64_t row = n + 1;  // [w_r, v_r[0], ..., v_r[n - 1]]
  std::vector<double> mine(row), all(P * row);
  mine[0] = sync.loss_weight();
  for (int64_t i = 0; i < n; ++i) mine[i + 1] = v[i];
  sync.all_gather(mine.data(), row, all.data());
  const double own = mine[0];
  for (int64_t i = 0; i < n; ++i) {
    const bool weighted = i < n_weighted;
    double total = 0.0;
    for (int64_t r = 0; r < P; ++r) total += (weighted ? all[r * row] : 1.0) * all[r * row + i + 1];
    v[i] = weighted && own != 0.0 ? total / own : total;
  }
}

void merge_moments_over_replicas(ReplicaSync& sync, Moments* moments, int64_t C) {
  const int64_t n = 3 * C, P = sync.replicas();
  std::vector<double> mine(n), all(P * n);
  for (int64_t c = 0; c < C; ++c) {
    mine[3 * c] = moments[c].count;
    mine[3 * c + 1] = moments[c].mean;
    mine[3 * c + 2] = moments[c].m2;
  }
  sync.all_gather(mine.data(), n, all.data());
  for (int64_t c = 0; c < C; ++c) {
    Moments total{};
    for (int64_t r = 0; r < P; ++r) total.merge(all[r * n + 3 * c], all[r * n + 3 * c + 1], all[r * n + 3 * c + 2]);
    moments[c] = total;
  }
}

}  // namespace crfseg::kernels
