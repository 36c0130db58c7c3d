// Loss and evaluation pass; see evaluate.h.
#include "tools/crfseg/evaluate.h"

#include <chrono>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "crf/bilateral_prefetch.h"
#include "tensor/ops.h"
#include "tools/crfseg/model_spec.h"

namespace crfseg::app {

LossSpec parse_loss(const std::string& kind, int64_t ignore_index) {
  if (kind != "ce" && kind != "dice" && kind != "ce+dice") {
    throw UsageError("--loss must be ce, dice or ce+dice, got '" + kind + "'");
  }
  return {kind, ignore_index};
}

Tensor compute_loss(const Tensor& logits, const Tensor& masks, const LossSpec& spec) {
  if (spec.kind == "dice") return dice_loss(logits, masks, {.ignore_index = spec.ignore_index});
  Tensor ce = cross_entropy(logits, masks, {.weight = Tensor(), .ignore_index = spec.ignore_index});
  if (spec.kind == "ce") return ce;
  return ce + dice_loss(logits, masks, {.ignore_index = spec.ignore_index});
}

EvalResult evaluate(models::Segmenter& net, data::DataLoader& loader, const LossSpec& loss,
                    int64_t boundary_width) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool was_training = net.is_training();
  net.eval();
  const int64_t classes = loader.dataset().num_classes(), ignore = loader.dataset().ignore_index();
  EvalResult r{.loss = 0, .confusion = ConfusionMatrix(classes, ignore), .boundary = ConfusionMatrix(classes, ignore),
               .boundary_width = boundary_width};
  double loss_sum = 0;
  const std::vector<Tensor> params = net.parameters();
  const Device device = params.empty() ? Device::cpu() : params.front().device();  // the model's
  {
    NoGradGuard no_grad;
    loader.start_epoch(0);
    const crf::PrefetchScope prefetch_scope;  // (one left pending if a batch fails)
    // One batch ahead, as in training (train.cpp): on CUDA with a CRF-RNN the
    // next batch's lattices build on a host thread while this one runs.
    auto fetch = [&] {
      auto b = loader.next();
      if (b) {
        b->images = images_to_device(b->images, device, net);
        b->masks = ops::upload_ahead(b->masks, device);
      }
      return b;
    };
    for (auto ahead = fetch();;) {
      auto batch = std::move(ahead);
      ahead.reset();
      if (!batch) break;
      const Tensor logits = net(batch->images);
      ahead = fetch();
      const int64_t n = batch->images.size(0);
      loss_sum += compute_loss(logits, batch->masks, loss).item() * static_cast<double>(n);
      const Tensor predicted = ops::argmax(logits, 1);
      r.confusion.add(predicted, batch->masks);
      r.boundary.add(predicted, boundary_band_targets(batch->masks, boundary_width, ignore));
      r.images += n;
    }
  }
  net.train(was_training);
  r.loss = r.images > 0 ? loss_sum / static_cast<double>(r.images) : NAN;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace crfseg::app
