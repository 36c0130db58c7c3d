// Training checkpoints: everything needed to resume a run bit for bit, in one
// safetensors file (tensor/safetensors.h) written atomically.
//
// Tensors:
//   "model.<name>"      the model's state_dict (parameters and buffers)
//   "optimizer.<name>"  Optimizer::state_tensors() (step, lr, moments)
//   "scheduler.<name>"  LRScheduler::state_tensors() (last_epoch, base_lr)
// Metadata (strings):
//   "format" = "crfseg-training-checkpoint", "version" = "1",
//   "epoch", "step", "best_metric" (decimal, %.17g), "optimizer" (its name),
//   "rng" (Generator::state(), the data/augmentation generator), and any
//   caller metadata (e.g. the training configuration) under "user.<key>".
//
// A file written by nn::Module state alone (a weights file: only "model."
// tensors, or plain torchvision-style names) is read by load_weights().
#pragma once

#include <cmath>
#include <map>
#include <string>

#include "layers/module.h"
#include "layers/optim/lr_scheduler.h"
#include "layers/optim/optimizer.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

namespace crfseg::models {

struct TrainingProgress {
  int64_t epoch = 0;            // completed epochs
  int64_t step = 0;             // optimizer steps taken over the run
  double best_metric = NAN;     // e.g. the best validation mean IoU so far
};

// What a checkpoint holds besides the model. Null members are not saved, and
// when loading must be null exactly when the file lacks them.
struct TrainingParts {
  nn::Module* model = nullptr;
  optim::Optimizer* optimizer = nullptr;
  optim::LRScheduler* scheduler = nullptr;
  Generator* generator = nullptr;
};

// Writes the checkpoint atomically (temp file, fsync, rename): a crash leaves
// the previous file at `path` intact. Throws IOError naming the path.
void save_training_checkpoint(const std::string& path, const TrainingParts& parts, const TrainingProgress& progress,
                              const std::map<std::string, std::string>& user_metadata = {});

struct LoadedCheckpoint {
  TrainingProgress progress;
  std::map<std::string, std::string> user_metadata;  // without the "user." prefix
};

// Restores every part from `path`. Everything is validated before anything
// changes where the parts allow it; if a later part fails to load, the parts
// already restored are put back, so on any error (IOError for an unreadable or
// foreign file, ValueError/ShapeError/DTypeError for a mismatch, each naming
// the path and the entry) the model, optimizer, scheduler and generator are
// exactly as they were.
LoadedCheckpoint load_training_checkpoint(const std::string& path, const TrainingParts& parts);
// The same from a file already read (e.g. to look at its metadata first),
// so a large checkpoint is read from disk once; errors name file.path.
LoadedCheckpoint load_training_checkpoint(const SafetensorsFile& file, const TrainingParts& parts);

// Loads model weights only: from a training checkpoint ("model." tensors) or
// a plain weights file (names as in the model's state_dict, e.g. exported by
// tools/export_torchvision.py). strict as in Module::load_state_dict.
void load_weights(const std::string& path, nn::Module& model, bool strict = true);
void load_weights(const SafetensorsFile& file, nn::Module& model, bool strict = true);

}  // namespace crfseg::models
