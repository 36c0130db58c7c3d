// Optimizer: the base class of crfseg's optimizers (SGD, Adam, AdamW).
//
// An optimizer holds a list of parameters (leaf tensors, f32 or f64, CPU) and
// updates them in place from their accumulated gradients, the way
// torch.optim does with a single parameter group:
//
//   optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
//   loss.backward(); opt.step(); opt.zero_grad();
//
// A parameter whose grad() is undefined is skipped by step() and keeps its
// state untouched, as in torch. Updates are fused loops over the raw data
// (no autograd graph is recorded) and bump the parameter's version counter,
// like every in-place op.
//
// Checkpoints: state_tensors() lists the full state as named tensors
// ("step", "lr", "param.3.exp_avg", ...), ready for save_safetensors();
// load_state() restores it with strict name, shape and dtype checks, so a
// resumed run takes bit-identical steps.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::optim {

// Named tensors in a fixed order, the unit of optimizer/scheduler state.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The update loops (and clip_grad_norm_) go parallel over elements from this
// size on: below it, OpenMP start-up (~1-5 us) costs more than the loop itself.
inline constexpr int64_t kParallelElements = 1 << 15;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a gradient, then increments step_count().
  // Throws ShapeError/DTypeError when a gradient does not match its parameter.
  void step();

  // Clears the gradients: set_to_none=true forgets them (reset_grad, torch's
  // default since 2.0, and the next backward allocates them afresh);
  // set_to_none=false zeroes them in place and keeps the buffers.
  void zero_grad(bool set_to_none = true);

  // The current learning rate (schedulers change it through set_lr).
  double lr() const { return lr_; }
  // Throws ValueError unless lr is finite and >= 0.
  void set_lr(double lr);

  // Per-parameter learning-rate multipliers (torch's parameter groups, in
  // their most common use): parameter i is updated with lr() * scale. The
  // scale is configuration, not state: it is not in state_tensors(), and a
  // resumed run sets it again. Every parameter starts at 1. Throws
  // ValueError for a scale that is negative or not finite, or for a tensor
  // that is not one of params().
  void set_lr_scale(const Tensor& param, double scale);
  double lr_scale(size_t index) const { return lr_scale_.at(index); }

  // Number of step() calls so far (restored by load_state).
  int64_t step_count() const { return step_count_; }
  const std::vector<Tensor>& params() const { return params_; }
  // "SGD", "Adam", "AdamW": used in error messages.
  const std::string& name() const { return name_; }

  // The state as named tensors:
  //   "step"              0-d i64, step_count()
  //   "lr"                0-d f64, lr()
  //   "param.<i>.<key>"   per-parameter buffers (keys depend on the optimizer),
  //                       present only for parameters that have state yet.
  // Buffers alias the optimizer's own tensors (no copy, like torch's
  // state_dict): write them out before the next step(), or clone them.
  NamedTensors state_tensors() const;

  // Restores a state from state_tensors() of an optimizer of the same kind,
  // options and parameter shapes. Entries are copied. Throws ValueError for
  // missing, duplicate or unknown names and for incomplete per-parameter
  // state, ShapeError/DTypeError for a buffer that does not match its
  // parameter. On error the optimizer is left unchanged.
  void load_state(const NamedTensors& state);

 protected:
  // Validates `params` (non-empty, defined, distinct leaves, f32/f64, CPU)
  // and `lr`; throws ValueError/DTypeError/NotImplementedError naming `name`.
  Optimizer(std::vector<Tensor> params, double lr, std::string name);

  // One parameter's update. `param` and `grad` are contiguous, same shape and
  // dtype (step() copies and writes back when the parameter is a strided view).
  virtual void update(size_t index, const Tensor& param, const Tensor& grad) = 0;

  // Appends parameter `index`'s state as ("<key>", tensor) pairs, keys without
  // the "param.<i>." prefix; nothing when it has no state yet.
  virtual void export_param_state(size_t index, NamedTensors& out) const = 0;

  // Replaces all per-parameter state. per_param[i] holds parameter i's
  // entries (prefix stripped, possibly empty). Implementations validate every
  // entry before modifying anything, using checked_buffer() / checked_count().
  virtual void import_param_states(const std::vector<std::map<std::string, Tensor>>& per_param) = 0;

  // A private contiguous copy of a state buffer after checking that it is
  // defined, on the CPU, and has the shape and dtype of parameter `index`.
  Tensor checked_buffer(size_t index, const std::string& key, const Tensor& t) const;
  // The value of a 0-d i64 counter entry, checked to be >= 0.
  int64_t checked_count(const std::string& entry, const Tensor& t) const;

  // The learning rate for parameter `index`: lr() * lr_scale(index).
  double lr_for(size_t index) const { return lr_ * lr_scale_[index]; }

  // The prefix "<name>: " for error messages.
  std::string where() const { return name_ + ": "; }

 private:
  std::vector<Tensor> params_;
  std::vector<double> lr_scale_;  // one per parameter
  double lr_ = 0.0;
  int64_t step_count_ = 0;
  std::string name_;
};

}  // namespace crfseg::optim
