// DataParallel for `crfseg train` (see data_parallel.h).
#include "tools/crfseg/data_parallel.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "layers/norm.h"

namespace crfseg::app {

DataParallel::DataParallel(const std::string& backend)
    : comm_(dist::make_communicator(dist::parse_backend(backend))) {}

void DataParallel::attach(nn::Module& model, double bucket_mb, bool sync_bn) {
  if (size() == 1) return;  // one process: its batch is the global batch, so --sync-bn changes nothing
  CRFSEG_CHECK(std::isfinite(bucket_mb) && bucket_mb > 0, ValueError, "--bucket-mb must be > 0, got ", bucket_mb);
  std::vector<Tensor> state;
  for (const auto& [name, t] : model.state_dict()) state.push_back(t);
  dist::broadcast_tensors(*comm_, state, 0);
  sync_ = std::make_unique<dist::GradSync>(*comm_, model.parameters(),
                                           dist::GradSyncOptions{.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20))});
  if (sync_bn) {
    bn_sync_ = std::make_shared<dist::CommunicatorReplicaSync>(*comm_);
    synced_bn_layers_ = nn::set_batch_norm_sync(model, bn_sync_);
  }
}

void DataParallel::begin_backward(int64_t local_samples, int64_t global_samples) {
  const double share = static_cast<double>(local_samples) / static_cast<double>(global_samples);
  if (sync_) sync_->begin_step(share);
  if (bn_sync_) bn_sync_->set_loss_weight(share);
}

void DataParallel::end_backward() {
  if (sync_) sync_->finish_step();
}

double DataParallel::global_mean_loss(double local_mean, int64_t local_samples, int64_t global_samples) {
  if (size() == 1) return local_mean;
  // sum_r mean_r * n_r / N: the mean over the global batch (exact when every
  // sample counts equally many pixels; see grad_sync.h).
  double weighted = local_mean * static_cast<double>(local_samples);
  comm_->allreduce_sum(&weighted, 1);
  return weighted / static_cast<double>(global_samples);
}

void DataParallel::add_logits(ConfusionMatrix& into, const Tensor& logits, const Tensor& masks) {
  NoGradGuard no_grad;
  if (size() == 1) {
    into.add_logits(logits, masks);
    return;
  }
  ConfusionMatrix mine = into;  // same classes and ignore index
  mine.reset();
  mine.add_logits(logits, masks);
  // Counts up to 2^53 are exact in a double.
  std::vector<double> counts(mine.counts().begin(), mine.counts().end());
  dist::allreduce_sum(*comm_, counts);
  std::vector<int64_t> summed(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) summed[i] = static_cast<int64_t>(std::llround(counts[i]));
  mine.set_counts(summed);
  into.merge(mine);
}

std::string DataParallel::describe() const {
  if (size() == 1) return "1 process";
  const size_t buckets = sync_ ? sync_->buckets().size() : 0;
  return std::to_string(size()) + " ranks (" + backend() + "), gradient buckets: " + std::to_string(buckets) +
         (bn_sync_ ? ", batch norm synchronised (" + std::to_string(synced_bn_layers_) + " layers)"
                   : ", batch norm per rank");
}

}  // namespace crfseg::app
