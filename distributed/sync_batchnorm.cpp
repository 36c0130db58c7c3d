// CommunicatorReplicaSync (see sync_batchnorm.h).
#include "distributed/sync_batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace crfseg::dist {

void CommunicatorReplicaSync::all_gather(const double* local, int64_t n, double* all) {
  const int64_t P = comm_.size(), r = comm_.rank();
  std::fill(all, all + P * n, 0.0);
  std::copy(local, local + n, all + r * n);
  comm_.allreduce_sum(all, P * n);
}

void CommunicatorReplicaSync::set_loss_weight(double weight) {
  CRFSEG_CHECK(std::isfinite(weight) && weight >= 0, ValueError,
               "CommunicatorReplicaSync: expected a finite loss weight >= 0, got ", weight);
  loss_weight_ = weight;
}

}  // namespace crfseg::dist
