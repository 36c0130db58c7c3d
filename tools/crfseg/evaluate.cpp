// Loss and evaluation pass; see evaluate.h.
#include "tools/crfseg/evaluate.h"

#include <chrono>
#include <optional>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "crf/bilateral_prefetch.h"
#include "tensor/factory.h"
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
  const std::vector<Tensor> params = net.parameters();
  const Device device = params.empty() ? Device::cpu() : params.front().device();  // the model's
  Tensor loss_sum = zeros({}, {DType::f64, device});  // on the model's device: read once, at the end
  {
    NoGradGuard no_grad;
    loader.start_epoch(0);
    const crf::PrefetchScope prefetch_scope;  // (one left pending if a batch fails)
    // One batch ahead, as in training (train.cpp): on CUDA with a CRF-RNN the
    // next batch's lattices build on a host thread while this one runs.
    // Nothing in a batch's step reads the device: the loss is summed there
    // (in f64, as the host summed it), the confusion counts stay there, and
    // the boundary band is made from the host's copy of the masks. The
    // host reads once, after the last batch.
    struct Ahead {
      std::optional<data::Batch> batch;
      Tensor host_masks;
    };
    auto fetch = [&] {
      Ahead a{loader.next(), Tensor()};
      if (a.batch) {
        a.host_masks = a.batch->masks;
        a.batch->images = images_to_device(a.batch->images, device, net);
        a.batch->masks = ops::upload_ahead(a.batch->masks, device);
      }
      return a;
    };
    for (Ahead ahead = fetch();;) {
      Ahead current = std::move(ahead);
      ahead = Ahead{};
      if (!current.batch) break;
      const data::Batch& batch = *current.batch;
      const Tensor logits = net(batch.images);
      ahead = fetch();
      const int64_t n = batch.images.size(0);
      const Tensor batch_loss = ops::to_dtype(compute_loss(logits, batch.masks, loss), DType::f64);
      loss_sum = ops::add(loss_sum, ops::scalar_op(ops::ScalarOp::mul, batch_loss, static_cast<double>(n)));
      const Tensor predicted = ops::argmax(logits, 1);
      r.confusion.add(predicted, batch.masks);
      r.boundary.add(predicted, boundary_band_targets(current.host_masks, boundary_width, ignore));
      r.images += n;
    }
  }
  net.train(was_training);
  r.loss = r.images > 0 ? loss_sum.item() / static_cast<double>(r.images) : NAN;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace crfseg::app
