// Loading a trained model back from a `crfseg train` checkpoint: the model
// spec from its metadata, then the weights (strict), in eval mode.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "models/segmenter.h"
#include "tools/crfseg/model_spec.h"

namespace crfseg::app {

struct TrainedModel {
  ModelSpec spec;
  std::shared_ptr<models::Segmenter> net;
  std::map<std::string, std::string> metadata;  // the checkpoint's user metadata ("data", "size", "classes", ...)
  std::vector<std::string> class_names;
};

// Throws IOError for a file that is not a crfseg training checkpoint.
TrainedModel load_trained_model(const std::string& path);

}  // namespace crfseg::app
