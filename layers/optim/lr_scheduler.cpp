// LR schedules: the warmup/step driver shared by all schedulers, their
// checkpoint state, and the StepLR / CosineAnnealingLR closed forms (see
// lr_scheduler.h). Closed forms are evaluated from base_lr every time rather
// than updated multiplicatively, so a resumed run gets bit-identical rates.
#include "layers/optim/lr_scheduler.h"

#include <cmath>
#include <map>
#include <numbers>

#include "tensor/factory.h"

namespace crfseg::optim {

LRScheduler::LRScheduler(Optimizer& optimizer, LinearWarmup warmup, std::string name)
    : name_(std::move(name)), optimizer_(optimizer), warmup_(warmup), base_lr_(optimizer.lr()) {
  CRFSEG_CHECK(warmup.steps >= 0, ValueError, name_, ": invalid warmup.steps ", warmup.steps, " (expected >= 0)");
  CRFSEG_CHECK(warmup.start_factor > 0.0 && warmup.start_factor <= 1.0, ValueError, name_,
               ": invalid warmup.start_factor ", warmup.start_factor, " (expected 0 < start_factor <= 1)");
}

void LRScheduler::step() {
  ++last_epoch_;
  optimizer_.set_lr(lr_at(last_epoch_));
}

double LRScheduler::lr_at(int64_t epoch) const {
  CRFSEG_CHECK(epoch >= 0, ValueError, name_, ": lr_at expects an epoch >= 0, got ", epoch);
  if (epoch < warmup_.steps) {
    // torch's LinearLR with end_factor 1: the factor climbs from s at e = 0
    // to 1 at e = W, where the main schedule takes over at its own epoch 0.
    const double s = warmup_.start_factor;
    return base_lr_ * (s + (1.0 - s) * static_cast<double>(epoch) / static_cast<double>(warmup_.steps));
  }
  return schedule_lr(epoch - warmup_.steps);
}

NamedTensors LRScheduler::state_tensors() const {
  return {{"last_epoch", scalar_tensor(static_cast<double>(last_epoch_), {DType::i64})},
          {"base_lr", scalar_tensor(base_lr_, {DType::f64})}};
}

void LRScheduler::load_state(const NamedTensors& state) {
  std::map<std::string, Tensor> entries;
  for (const auto& [name, t] : state) {
    CRFSEG_CHECK(name == "last_epoch" || name == "base_lr", ValueError, name_, ": load_state: unknown entry '",
                 name, "' (expected 'last_epoch' and 'base_lr')");
    CRFSEG_CHECK(entries.emplace(name, t).second, ValueError, name_, ": load_state: duplicate entry '", name, "'");
  }
  for (const char* name : {"last_epoch", "base_lr"}) {
    CRFSEG_CHECK(entries.count(name) != 0, ValueError, name_, ": load_state: missing entry '", name, "'");
  }
  const Tensor& epoch_t = entries.at("last_epoch");
  const Tensor& base_t = entries.at("base_lr");
  CRFSEG_CHECK(epoch_t.defined() && epoch_t.dim() == 0 && epoch_t.dtype() == DType::i64, ValueError, name_,
               ": load_state: entry 'last_epoch' must be a 0-d i64 tensor");
  CRFSEG_CHECK(base_t.defined() && base_t.dim() == 0 && base_t.dtype() == DType::f64, ValueError, name_,
               ": load_state: entry 'base_lr' must be a 0-d f64 tensor");
  const auto epoch = static_cast<int64_t>(epoch_t.item());  // exact: |epoch| < 2^53 in any real run
  const double base = base_t.item();
  CRFSEG_CHECK(epoch >= 0, ValueError, name_, ": load_state: entry 'last_epoch' holds ", epoch, " (expected >= 0)");
  CRFSEG_CHECK(std::isfinite(base) && base >= 0.0, ValueError, name_, ": load_state: entry 'base_lr' holds ", base,
               " (expected a finite value >= 0)");
  last_epoch_ = epoch;
  base_lr_ = base;
  optimizer_.set_lr(lr_at(last_epoch_));
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& optimizer, StepLROptions options)
    : LRScheduler(optimizer, options.warmup, "StepLR"), options_(options) {
  CRFSEG_CHECK(options.step_size >= 1, ValueError, "StepLR: invalid step_size ", options.step_size,
               " (expected >= 1)");
  CRFSEG_CHECK(std::isfinite(options.gamma) && options.gamma >= 0.0, ValueError, "StepLR: invalid gamma ",
               options.gamma, " (expected a finite value >= 0)");
  start();
}

double StepLR::schedule_lr(int64_t epoch) const {
  // Integer division is the floor for epoch >= 0. std::pow with an integral
  // exponent is exact for the powers of 2 and as exact as torch's gamma ** k.
  return base_lr() * std::pow(options_.gamma, static_cast<double>(epoch / options_.step_size));
}

// ---- CosineAnnealingLR ----

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, CosineAnnealingLROptions options)
    : LRScheduler(optimizer, options.warmup, "CosineAnnealingLR"), options_(options) {
  CRFSEG_CHECK(options.T_max >= 1, ValueError, "CosineAnnealingLR: invalid T_max ", options.T_max,
               " (expected >= 1)");
  CRFSEG_CHECK(std::isfinite(options.eta_min) && options.eta_min >= 0.0, ValueError,
               "CosineAnnealingLR: invalid eta_min ", options.eta_min, " (expected a finite value >= 0)");
  start();
}

double CosineAnnealingLR::schedule_lr(int64_t epoch) const {
  // Half a cosine period from base_lr (e = 0) down to eta_min (e = T_max).
  const double phase = std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(options_.T_max);
  return options_.eta_min + (base_lr() - options_.eta_min) * (1.0 + std::cos(phase)) / 2.0;
}

}  // namespace crfseg::optim
