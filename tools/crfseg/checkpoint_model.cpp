// load_trained_model; see checkpoint_model.h.
#include "tools/crfseg/checkpoint_model.h"

#include <sstream>

#include "models/checkpoint.h"
#include "tensor/safetensors.h"

namespace crfseg::app {

TrainedModel load_trained_model(const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  TrainedModel m;
  for (const auto& [k, v] : f.metadata) {
    if (k.rfind("user.", 0) == 0) m.metadata[k.substr(5)] = v;
  }
  CRFSEG_CHECK(m.metadata.count("model.encoder") != 0, IOError, path,
               " is not a checkpoint written by crfseg train (no model description in its metadata)");
  m.spec = model_spec_from_metadata(m.metadata);
  Generator gen(0);
  m.net = build_model(m.spec, gen);
  models::load_weights(f, *m.net, /*strict=*/true);
  m.net->eval();
  if (auto it = m.metadata.find("classes"); it != m.metadata.end()) {
    std::stringstream ss(it->second);
    std::string name;
    while (std::getline(ss, name, ',')) m.class_names.push_back(name);
  }
  while (static_cast<int64_t>(m.class_names.size()) < m.spec.segmenter.num_classes) {
    m.class_names.push_back("class " + std::to_string(m.class_names.size()));
  }
  return m;
}

}  // namespace crfseg::app
