// Training checkpoints: layout in checkpoint.h. Loading is transactional:
// each part validates before it writes (Module::load_state_dict,
// Optimizer::load_state and LRScheduler::load_state all do), and the parts
// restored before a failing one are rolled back from snapshots taken first.
#include "models/checkpoint.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "tensor/ops.h"
#include "tensor/safetensors.h"

namespace crfseg::models {

namespace {

constexpr const char* kFormat = "crfseg-training-checkpoint";
constexpr const char* kVersion = "1";

using Named = std::vector<std::pair<std::string, Tensor>>;

void append_prefixed(Named& out, const std::string& prefix, const Named& entries) {
  for (const auto& [name, t] : entries) out.emplace_back(prefix + name, t);
}

// The file's tensors under `prefix`, prefix removed.
Named take_prefixed(const SafetensorsFile& f, const std::string& prefix) {
  Named out;
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), t);
  }
  return out;
}

// Deep copies, so a snapshot survives later in-place writes.
Named snapshot(const Named& entries) {
  Named out;
  for (const auto& [name, t] : entries) out.emplace_back(name, ops::clone(t));
  return out;
}

// Every checkpoint crfseg writes carries a checksum (safetensors.h); one
// without a verified checksum had its checksum entry damaged.
void require_checksum(const SafetensorsFile& f, const char* op) {
  CRFSEG_CHECK(f.checksum_verified, IOError, op, "(", f.path, "): the checkpoint has no '", kSafetensorsChecksumKey,
               "' checksum entry, which crfseg writes into every checkpoint; its header is damaged");
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

const std::string& required(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata.find(key);
  CRFSEG_CHECK(it != f.metadata.end(), IOError, "load_training_checkpoint(", f.path, "): metadata '", key,
               "' is missing");
  return it->second;
}

int64_t parse_count(const SafetensorsFile& f, const std::string& key) {
  const std::string& s = required(f, key);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  CRFSEG_CHECK(!s.empty() && errno == 0 && *end == '\0' && v >= 0, IOError, "load_training_checkpoint(", f.path,
               "): metadata '", key, "' is '", s, "'; expected a count >= 0");
  return v;
}

double parse_double(const SafetensorsFile& f, const std::string& key) {
  const std::string& s = required(f, key);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  CRFSEG_CHECK(!s.empty() && *end == '\0', IOError, "load_training_checkpoint(", f.path, "): metadata '", key,
               "' is '", s, "'; expected a number");
  return v;
}

// Whether the file holds a part must match whether the caller passed it.
void check_presence(const SafetensorsFile& f, const char* part, bool in_file, bool given) {
  CRFSEG_CHECK(in_file == given, ValueError, "load_training_checkpoint(", f.path, "): the file ",
               in_file ? "holds" : "has no", " ", part, " state but the caller passed ", given ? "one" : "none");
}

// Re-throws the exception being handled as the same type, its message
// prefixed with `context` (the function and the path).
[[noreturn]] void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const ShapeError& e) {
    throw ShapeError(context + e.what());
  } catch (const DTypeError& e) {
    throw DTypeError(context + e.what());
  } catch (const IOError& e) {
    throw IOError(context + e.what());
  } catch (const NotImplementedError& e) {
    throw NotImplementedError(context + e.what());
  } catch (const std::exception& e) {
    throw ValueError(context + e.what());
  }
}

}  // namespace

void save_training_checkpoint(const std::string& path, const TrainingParts& parts, const TrainingProgress& progress,
                              const std::map<std::string, std::string>& user_metadata) {
  CRFSEG_CHECK(parts.model != nullptr, ValueError, "save_training_checkpoint(", path, "): no model given");
  Named tensors;
  append_prefixed(tensors, "model.", parts.model->state_dict());
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"version", kVersion},
      {"epoch", std::to_string(progress.epoch)},
      {"step", std::to_string(progress.step)},
      {"best_metric", format_double(progress.best_metric)},
  };
  if (parts.optimizer != nullptr) {
    append_prefixed(tensors, "optimizer.", parts.optimizer->state_tensors());
    meta["optimizer"] = parts.optimizer->name();
  }
  if (parts.scheduler != nullptr) append_prefixed(tensors, "scheduler.", parts.scheduler->state_tensors());
  if (parts.generator != nullptr) meta["rng"] = parts.generator->state();
  for (const auto& [key, value] : user_metadata) meta["user." + key] = value;
  save_safetensors(path, tensors, meta);
}

LoadedCheckpoint load_training_checkpoint(const std::string& path, const TrainingParts& parts) {
  CRFSEG_CHECK(parts.model != nullptr, ValueError, "load_training_checkpoint(", path, "): no model given");
  return load_training_checkpoint(load_safetensors(path), parts);
}

LoadedCheckpoint load_training_checkpoint(const SafetensorsFile& f, const TrainingParts& parts) {
  const std::string& path = f.path;
  CRFSEG_CHECK(parts.model != nullptr, ValueError, "load_training_checkpoint(", path, "): no model given");
  auto format = f.metadata.find("format");
  CRFSEG_CHECK(format != f.metadata.end() && format->second == kFormat, IOError, "load_training_checkpoint(", path,
               "): not a crfseg training checkpoint (metadata 'format' is ",
               format == f.metadata.end() ? std::string("missing") : "'" + format->second + "'",
               "); a weights-only file loads with load_weights()");
  require_checksum(f, "load_training_checkpoint");
  CRFSEG_CHECK(required(f, "version") == kVersion, IOError, "load_training_checkpoint(", path,
               "): unsupported version '", required(f, "version"), "' (this build reads version ", kVersion, ")");

  // Everything that can be checked without touching the parts.
  LoadedCheckpoint out;
  out.progress.epoch = parse_count(f, "epoch");
  out.progress.step = parse_count(f, "step");
  out.progress.best_metric = parse_double(f, "best_metric");
  for (const auto& [key, value] : f.metadata) {
    if (key.rfind("user.", 0) == 0) out.user_metadata[key.substr(5)] = value;
  }
  const Named model_state = take_prefixed(f, "model."), optim_state = take_prefixed(f, "optimizer."),
             sched_state = take_prefixed(f, "scheduler.");
  check_presence(f, "optimizer", !optim_state.empty(), parts.optimizer != nullptr);
  check_presence(f, "scheduler", !sched_state.empty(), parts.scheduler != nullptr);
  check_presence(f, "generator", f.metadata.count("rng") != 0, parts.generator != nullptr);
  if (parts.optimizer != nullptr) {
    CRFSEG_CHECK(required(f, "optimizer") == parts.optimizer->name(), ValueError, "load_training_checkpoint(", path,
                 "): the file holds ", required(f, "optimizer"), " state but the optimizer is ",
                 parts.optimizer->name());
  }
  Generator rng_check;
  if (parts.generator != nullptr) rng_check.set_state(f.metadata.at("rng"));  // throws on malformed text

  // Apply in order, rolling back what was applied when a later part fails.
  std::vector<std::function<void()>> undo;
  try {
    const Named model_before = snapshot(parts.model->state_dict());
    parts.model->load_state_dict(model_state, /*strict=*/true);
    undo.push_back([&, model_before] { parts.model->load_state_dict(model_before, true); });
    if (parts.optimizer != nullptr) {
      const Named before = snapshot(parts.optimizer->state_tensors());
      parts.optimizer->load_state(optim_state);
      undo.push_back([&, before] { parts.optimizer->load_state(before); });
    }
    if (parts.scheduler != nullptr) parts.scheduler->load_state(sched_state);
  } catch (...) {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
    rethrow_with_context("load_training_checkpoint(" + path + "): ");
  }
  if (parts.generator != nullptr) *parts.generator = rng_check;
  return out;
}

void load_weights(const std::string& path, nn::Module& model, bool strict) {
  load_weights(load_safetensors(path), model, strict);
}

void load_weights(const SafetensorsFile& f, nn::Module& model, bool strict) {
  const std::string& path = f.path;
  if (auto it = f.metadata.find("format"); it != f.metadata.end() && it->second == kFormat) {
    require_checksum(f, "load_weights");
  }
  Named state = take_prefixed(f, "model.");
  if (state.empty()) state = f.tensors;  // a plain weights file
  try {
    model.load_state_dict(state, strict);
  } catch (...) {
    rethrow_with_context("load_weights(" + path + "): ");
  }
}

}  // namespace crfseg::models
