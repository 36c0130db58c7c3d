// The training loss and a whole-dataset evaluation pass, shared by
// `crfseg train` (validation after each epoch) and `crfseg eval`.
#pragma once

#include <string>

#include "datasets/loader.h"
#include "models/segmenter.h"
#include "tools/crfseg/args.h"
#include "tools/crfseg/metrics.h"

namespace crfseg::app {

// --loss: "ce" (softmax cross-entropy), "dice" (soft Dice) or "ce+dice" (their sum).
struct LossSpec {
  std::string kind = "ce";
  int64_t ignore_index = -100;
};
// Throws UsageError for an unknown kind.
LossSpec parse_loss(const std::string& kind, int64_t ignore_index);
Tensor compute_loss(const Tensor& logits, const Tensor& masks, const LossSpec& spec);

struct EvalResult {
  double loss = 0;  // mean over batches, weighted by batch size
  ConfusionMatrix confusion;
  // The same counts restricted to the pixels within boundary_width of a
  // change of the true label (boundary_band_targets in metrics.h).
  ConfusionMatrix boundary;
  int64_t boundary_width = 0;
  int64_t images = 0;
  double seconds = 0;
};

// Runs the model in eval mode without gradients over one pass of `loader`
// (epoch 0 of its order) and restores the model's previous mode.
EvalResult evaluate(models::Segmenter& net, data::DataLoader& loader, const LossSpec& loss,
                    int64_t boundary_width = 3);

}  // namespace crfseg::app
