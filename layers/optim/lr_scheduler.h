// Learning-rate schedules: StepLR and CosineAnnealingLR (torch's closed
// forms), each with an optional linear warmup.
//
// A scheduler drives one optimizer's lr. Construction records base_lr (the
// optimizer's current lr), sets last_epoch = 0 and applies lr_at(0); each
// step() increments last_epoch and applies lr_at(last_epoch), as torch's
// schedulers do. "Epoch" is whatever unit step() is called per (epoch or
// iteration).
//
//   StepLR:            lr(e) = base_lr * gamma^floor(e / step_size)
//   CosineAnnealingLR: lr(e) = eta_min + (base_lr - eta_min) (1 + cos(pi e / T_max)) / 2
//
// With warmup {.steps = W, .start_factor = s} the first W epochs ramp
// linearly, lr(e) = base_lr (s + (1 - s) e / W) for e < W, and the schedule
// above then runs on e - W. This is torch's
// SequentialLR([LinearLR(start_factor=s, total_iters=W), schedule], milestones=[W]).
// References: https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate,
// Loshchilov & Hutter 2017 (SGDR, arXiv:1608.03983) for the cosine form.
#pragma once

#include <string>

#include "layers/optim/optimizer.h"

namespace crfseg::optim {

struct LinearWarmup {
  int64_t steps = 0;                // W; 0 disables the warmup
  double start_factor = 1.0 / 3.0;  // s in (0, 1]; torch's LinearLR default
};

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one epoch and sets the optimizer's lr to lr_at(last_epoch()).
  void step();

  // The closed-form lr at `epoch` (>= 0; ValueError otherwise).
  double lr_at(int64_t epoch) const;
  int64_t last_epoch() const { return last_epoch_; }
  double base_lr() const { return base_lr_; }

  // {"last_epoch": 0-d i64, "base_lr": 0-d f64}, for checkpoints.
  NamedTensors state_tensors() const;
  // Restores state_tensors() output and re-applies lr_at(last_epoch) to the
  // optimizer. Throws ValueError for missing, unknown or duplicate entries
  // and for wrong dtypes/shapes or invalid values; on error nothing changes.
  void load_state(const NamedTensors& state);

 protected:
  // The optimizer must outlive the scheduler. Throws ValueError for a bad warmup.
  LRScheduler(Optimizer& optimizer, LinearWarmup warmup, std::string name);
  // The schedule after the warmup, at epoch e >= 0 counted from its end.
  virtual double schedule_lr(int64_t epoch) const = 0;
  // Applies lr_at(0); derived constructors call it once their options are set
  // (a virtual call from the base constructor would not reach them).
  void start() { optimizer_.set_lr(lr_at(last_epoch_)); }

  std::string name_;

 private:
  Optimizer& optimizer_;
  LinearWarmup warmup_;
  double base_lr_ = 0.0;
  int64_t last_epoch_ = 0;
};

struct StepLROptions {
  int64_t step_size = 1;  // epochs between decays, >= 1
  double gamma = 0.1;     // decay factor, >= 0
  LinearWarmup warmup = {};
};

class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, StepLROptions options);
  const StepLROptions& options() const { return options_; }

 protected:
  double schedule_lr(int64_t epoch) const override;

 private:
  StepLROptions options_;
};

struct CosineAnnealingLROptions {
  int64_t T_max = 1;     // half period in epochs, >= 1 (past it the cosine rises again, as in torch)
  double eta_min = 0.0;  // the lr at e = T_max, >= 0
  LinearWarmup warmup = {};
};

class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, CosineAnnealingLROptions options);
  const CosineAnnealingLROptions& options() const { return options_; }

 protected:
  double schedule_lr(int64_t epoch) const override;

 private:
  CosineAnnealingLROptions options_;
};

}  // namespace crfseg::optim
