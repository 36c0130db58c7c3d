// Optimizer base: parameter validation, the step() driver that hands each
// (parameter, gradient) pair to the subclass's fused update, zero_grad, and
// the named-tensor state export/import shared by all optimizers.
#include "layers/optim/optimizer.h"

#include <cmath>

#include "autograd/autograd_meta.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::string name)
    : params_(std::move(params)), name_(std::move(name)) {
  CRFSEG_CHECK(!params_.empty(), ValueError, where(), "got an empty parameter list");
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    CRFSEG_CHECK(p.defined(), ValueError, where(), "parameter ", i, " is an undefined tensor");
    CRFSEG_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, DTypeError, where(), "parameter ", i,
                 " has dtype ", dtype_name(p.dtype()), "; expected f32 or f64");
    CRFSEG_CHECK(is_leaf(p), ValueError, where(), "parameter ", i, " is not a leaf tensor (it was produced by ",
                 grad_fn(p)->name(), "); optimizers update leaves only");
    // The same tensor twice would be updated twice per step (torch only warns).
    for (size_t j = 0; j < i; ++j) {
      const Tensor& q = params_[j];
      const bool same = p.is_same(q) || (p.storage_ptr() == q.storage_ptr() && p.offset() == q.offset() &&
                                         p.shape() == q.shape() && p.strides() == q.strides());
      CRFSEG_CHECK(!same, ValueError, where(), "parameter ", i, " is the same tensor as parameter ", j);
    }
  }
  set_lr(lr);
  lr_scale_.assign(params_.size(), 1.0);
}

void Optimizer::set_lr_scale(const Tensor& param, double scale) {
  CRFSEG_CHECK(std::isfinite(scale) && scale >= 0.0, ValueError, where(), "invalid learning-rate scale ", scale,
               " (expected a finite value >= 0)");
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].is_same(param)) {
      lr_scale_[i] = scale;
      return;
    }
  }
  CRFSEG_CHECK(false, ValueError, where(), "set_lr_scale: the tensor ", param.str(),
               " is not one of this optimizer's parameters");
}

void Optimizer::set_lr(double lr) {
  CRFSEG_CHECK(std::isfinite(lr) && lr >= 0.0, ValueError, where(), "invalid learning rate ", lr,
               " (expected a finite value >= 0)");
  lr_ = lr;
}

void Optimizer::step() {
  // Check every gradient first, so a mismatch leaves all parameters untouched.
  std::vector<Tensor> grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    grads[i] = crfseg::grad(p);
    if (!grads[i].defined()) continue;  // no gradient reached it: skipped, as in torch
    const Tensor& g = grads[i];
    CRFSEG_CHECK(g.shape() == p.shape(), ShapeError, where(), "the gradient of parameter ", i, " has shape ",
                 shape_str(g.shape()), " but the parameter has shape ", shape_str(p.shape()));
    CRFSEG_CHECK(g.dtype() == p.dtype(), DTypeError, where(), "the gradient of parameter ", i, " has dtype ",
                 dtype_name(g.dtype()), " but the parameter has dtype ", dtype_name(p.dtype()));
    CRFSEG_CHECK(g.device() == p.device(), DeviceError, where(), "the gradient of parameter ", i, " lives on ",
                 g.device().str(), " but the parameter on ", p.device().str());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!grads[i].defined()) continue;
    const Tensor& p = params_[i];
    // The fused loops want flat arrays. Gradients accumulated by autograd are
    // contiguous already; a strided parameter (a view into a larger buffer)
    // is updated through a contiguous copy written back with copy_.
    const Tensor g = ops::contiguous(grads[i]);
    if (p.is_contiguous()) {
      update(i, p, g);
      p.bump_version();
    } else {
      const Tensor work = ops::clone(p);
      update(i, work, g);
      ops::copy_(p, work);  // bumps p's version
    }
  }
  ++step_count_;
}

void Optimizer::zero_grad(bool set_to_none) {
  for (const Tensor& p : params_) {
    if (set_to_none) {
      reset_grad(p);
    } else {
      crfseg::zero_grad(p);
    }
  }
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  out.emplace_back("step", scalar_tensor(static_cast<double>(step_count_), {DType::i64}));
  out.emplace_back("lr", scalar_tensor(lr_, {DType::f64}));
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedTensors entries;
    export_param_state(i, entries);
    for (auto& [key, t] : entries) out.emplace_back("param." + std::to_string(i) + "." + key, t);
  }
  return out;
}

namespace {

// Parses "param.<i>.<key>" with a canonical decimal i (no sign, no leading
// zeros) below `count`. Returns false for anything else.
bool parse_param_entry(const std::string& name, size_t count, size_t& index, std::string& key) {
  const std::string prefix = "param.";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot + 1 == name.size()) return false;
  const std::string digits = name.substr(prefix.size(), dot - prefix.size());
  if (digits.size() > 1 && digits[0] == '0') return false;
  size_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<size_t>(c - '0');
    if (value >= count) return false;  // also keeps the accumulation from overflowing
  }
  index = value;
  key = name.substr(dot + 1);
  return true;
}

}  // namespace

void Optimizer::load_state(const NamedTensors& state) {
  std::map<std::string, bool> seen;
  std::vector<std::map<std::string, Tensor>> per_param(params_.size());
  Tensor step_entry, lr_entry;
  for (const auto& [name, t] : state) {
    CRFSEG_CHECK(seen.emplace(name, true).second, ValueError, where(), "load_state: duplicate entry '", name,
                 "'");
    if (name == "step") {
      step_entry = t;
    } else if (name == "lr") {
      lr_entry = t;
    } else {
      size_t index = 0;
      std::string key;
      CRFSEG_CHECK(parse_param_entry(name, params_.size(), index, key), ValueError, where(),
                   "load_state: unknown entry '", name, "' (expected 'step', 'lr' or 'param.<i>.<key>' with i < ",
                   params_.size(), ")");
      per_param[index][key] = t;
    }
  }
  CRFSEG_CHECK(step_entry.defined(), ValueError, where(), "load_state: missing entry 'step'");
  CRFSEG_CHECK(lr_entry.defined(), ValueError, where(), "load_state: missing entry 'lr'");
  const int64_t step = checked_count("step", step_entry);
  CRFSEG_CHECK(lr_entry.dim() == 0 && lr_entry.dtype() == DType::f64, ValueError, where(),
               "load_state: entry 'lr' must be a 0-d f64 tensor, got ", lr_entry.str());
  const double lr = lr_entry.item();
  CRFSEG_CHECK(std::isfinite(lr) && lr >= 0.0, ValueError, where(), "load_state: entry 'lr' holds ", lr,
               " (expected a finite value >= 0)");
  import_param_states(per_param);  // validates everything before replacing the state
  step_count_ = step;
  lr_ = lr;
}

Tensor Optimizer::checked_buffer(size_t index, const std::string& key, const Tensor& t) const {
  const std::string entry = "param." + std::to_string(index) + "." + key;
  const Tensor& p = params_[index];
  CRFSEG_CHECK(t.defined(), ValueError, where(), "load_state: entry '", entry, "' is an undefined tensor");
  CRFSEG_CHECK(t.shape() == p.shape(), ShapeError, where(), "load_state: entry '", entry, "' has shape ",
               shape_str(t.shape()), " but parameter ", index, " has shape ", shape_str(p.shape()));
  CRFSEG_CHECK(t.dtype() == p.dtype(), DTypeError, where(), "load_state: entry '", entry, "' has dtype ",
               dtype_name(t.dtype()), " but parameter ", index, " has dtype ", dtype_name(p.dtype()));
  // Own the buffer (the caller's tensor may be reused or mapped), on the
  // parameter's device, wherever the entry lives (a CUDA optimizer's own
  // state_tensors() are on its device).
  return t.device() == p.device() ? ops::clone(t) : ops::to_device(t, p.device());
}

int64_t Optimizer::checked_count(const std::string& entry, const Tensor& t) const {
  CRFSEG_CHECK(t.defined() && t.dim() == 0 && t.dtype() == DType::i64, ValueError, where(), "load_state: entry '",
               entry, "' must be a 0-d i64 tensor, got ", t.defined() ? t.str() : std::string("an undefined tensor"));
  const int64_t value = *t.to(Device::cpu()).data<int64_t>();
  CRFSEG_CHECK(value >= 0, ValueError, where(), "load_state: entry '", entry, "' holds ", value,
               " (expected a count >= 0)");
  return value;
}

}  // namespace crfseg::optim
