// Adam / AdamW: option checks, the fused update loop (see adam.h for the
// math) and the per-parameter state. One pass reads p, g, m, v (and v_max)
// and writes p, m, v (and v_max): 28 bytes/element for f32 without amsgrad.
#include "layers/optim/adam.h"

#include <algorithm>
#include <cmath>

#include "kernels/optim_step.h"
#include "tensor/cuda_memory.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/optim.h"
#endif

namespace crfseg::optim {

namespace {

// The update of adam.h over n contiguous elements (v_max null without
// amsgrad); the per-element rule, in torch's single-tensor order, is
// kernels/optim_step.h's, shared with CUDA.
template <typename T, bool Amsgrad>
void adam_loop(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, kernels::AdamConstants<T> k) {
// (The if applies to the threads only: unqualified, OpenMP 5 applies it to
// the simd construct too, and small tensors ran a scalar loop.)
#pragma omp parallel for simd schedule(static) firstprivate(k) if (parallel : n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    kernels::adam_update_element(p[i], g[i], m[i], v[i], Amsgrad ? v_max + i : nullptr, k);
  }
}
template <typename T>
void adam_update(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, const kernels::AdamStep& c) {
  const kernels::AdamConstants<T> k(c);
  if (v_max != nullptr) {
    adam_loop<T, true>(p, g, m, v, v_max, n, k);
  } else {
    adam_loop<T, false>(p, g, m, v, nullptr, n, k);
  }
}

void check_beta(const char* name, const char* which, double beta) {
  CRFSEG_CHECK(beta >= 0.0 && beta < 1.0, ValueError, name, ": invalid ", which, " ", beta,
               " (expected 0 <= beta < 1)");
}

AdamOptions to_adam_options(const AdamWOptions& o) {
  return AdamOptions{.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps,
                     .weight_decay = o.weight_decay, .amsgrad = o.amsgrad, .maximize = o.maximize};
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, false, "Adam") {}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& options, bool decoupled, const char* name)
    : Optimizer(std::move(params), options.lr, name), options_(options), decoupled_(decoupled) {
  check_beta(name, "beta1", options.beta1);
  check_beta(name, "beta2", options.beta2);
  CRFSEG_CHECK(options.eps >= 0.0 && std::isfinite(options.eps), ValueError, name, ": invalid eps ", options.eps,
               " (expected >= 0)");
  CRFSEG_CHECK(options.weight_decay >= 0.0 && std::isfinite(options.weight_decay), ValueError, name,
               ": invalid weight_decay ", options.weight_decay, " (expected >= 0)");
  state_.resize(this->params().size());
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam(std::move(params), to_adam_options(options), true, "AdamW") {}

void Adam::update(size_t index, const Tensor& param, const Tensor& grad) {
  ParamState& s = state_[index];
  // Moments made before the parameter moved (Module::to) follow it.
  for (Tensor* t : {&s.exp_avg, &s.exp_avg_sq, &s.max_exp_avg_sq})
    if (t->defined() && t->device() != param.device()) *t = t->to(param.device());
  if (s.step == 0) {  // lazy state, as torch: zeros of the parameter's shape
    s.exp_avg = zeros(param.shape(), param.options());
    s.exp_avg_sq = zeros(param.shape(), param.options());
    if (options_.amsgrad) s.max_exp_avg_sq = zeros(param.shape(), param.options());
  }
  ++s.step;
  const double t = static_cast<double>(s.step);
  kernels::AdamStep c{lr_for(index), options_.beta1, options_.beta2, options_.eps, options_.weight_decay,
                      decoupled_, options_.maximize,
                      lr_for(index) / (1.0 - std::pow(options_.beta1, t)), std::sqrt(1.0 - std::pow(options_.beta2, t))};
  dispatch_float(param.dtype(), "Adam::step", [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (param.device().is_cuda()) {
      kernels::cuda::adam_step<T>(param.data<T>(), grad.data<T>(), s.exp_avg.data<T>(), s.exp_avg_sq.data<T>(),
                                  options_.amsgrad ? s.max_exp_avg_sq.data<T>() : nullptr, param.numel(), c,
                                  cuda::launch_stream(param.device().index));
      return;
    }
#endif
    adam_update<T>(param.data<T>(), grad.data<T>(), s.exp_avg.data<T>(), s.exp_avg_sq.data<T>(),
                   options_.amsgrad ? s.max_exp_avg_sq.data<T>() : nullptr, param.numel(), c);
  });
  s.exp_avg.bump_version();
  s.exp_avg_sq.bump_version();
  if (options_.amsgrad) s.max_exp_avg_sq.bump_version();
}

void Adam::export_param_state(size_t index, NamedTensors& out) const {
  const ParamState& s = state_[index];
  if (s.step == 0) return;
  out.emplace_back("step", scalar_tensor(static_cast<double>(s.step), {DType::i64}));
  out.emplace_back("exp_avg", s.exp_avg);
  out.emplace_back("exp_avg_sq", s.exp_avg_sq);
  if (options_.amsgrad) out.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq);
}

void Adam::import_param_states(const std::vector<std::map<std::string, Tensor>>& per_param) {
  std::vector<std::string> keys = {"step", "exp_avg", "exp_avg_sq"};
  if (options_.amsgrad) keys.push_back("max_exp_avg_sq");
  std::vector<ParamState> states(per_param.size());
  for (size_t i = 0; i < per_param.size(); ++i) {
    const auto& entries = per_param[i];
    for (const auto& [key, t] : entries) {
      CRFSEG_CHECK(std::find(keys.begin(), keys.end(), key) != keys.end(), ValueError, where(),
                   "load_state: unknown entry 'param.", i, ".", key, "'",
                   key == "max_exp_avg_sq" ? " (this optimizer was built without amsgrad)" : "");
    }
    if (entries.empty()) continue;  // the parameter has not been stepped yet
    for (const std::string& key : keys) {
      CRFSEG_CHECK(entries.count(key) != 0, ValueError, where(), "load_state: entry 'param.", i, ".", key,
                   "' is missing while other state of parameter ", i, " is present");
    }
    ParamState& s = states[i];
    s.step = checked_count("param." + std::to_string(i) + ".step", entries.at("step"));
    CRFSEG_CHECK(s.step >= 1, ValueError, where(), "load_state: entry 'param.", i,
                 ".step' holds 0 but the parameter has moment buffers (expected >= 1)");
    s.exp_avg = checked_buffer(i, "exp_avg", entries.at("exp_avg"));
    s.exp_avg_sq = checked_buffer(i, "exp_avg_sq", entries.at("exp_avg_sq"));
    if (options_.amsgrad) s.max_exp_avg_sq = checked_buffer(i, "max_exp_avg_sq", entries.at("max_exp_avg_sq"));
  }
  state_ = std::move(states);
}

}  // namespace crfseg::optim
