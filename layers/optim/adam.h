// Adam and AdamW, with the exact update of torch.optim.Adam / AdamW.
// For each parameter p with gradient g, at its t-th step (t counts only the
// steps on which p had a gradient, as torch's per-parameter state['step']):
//
//   g = g (or -g when maximize)
//   Adam : g = g + weight_decay * p               (L2 penalty added to the gradient)
//   AdamW: p = p - lr * weight_decay * p          (decoupled decay, before the update)
//   m = beta1 * m + (1 - beta1) * g               (first moment,  m_0 = 0)
//   v = beta2 * v + (1 - beta2) * g^2             (second moment, v_0 = 0)
//   amsgrad: v_max = max(v_max, v), and v_max replaces v below
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// The bias corrections 1 - beta^t undo the pull of m_0 = v_0 = 0 towards 0.
// State per parameter: "step" (0-d i64), "exp_avg" (m), "exp_avg_sq" (v) and
// with amsgrad "max_exp_avg_sq" (v_max), all created on the first step.
// References: Kingma & Ba 2015 (arXiv:1412.6980); Loshchilov & Hutter 2019
// (AdamW, arXiv:1711.05101); Reddi et al. 2018 (AMSGrad);
// https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
#pragma once

#include "layers/optim/optimizer.h"

namespace crfseg::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool amsgrad = false;
  bool maximize = false;
};

// The same fields; only weight_decay's default differs (torch's 1e-2).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p -= lr * weight_decay * p
  bool amsgrad = false;
  bool maximize = false;
};

class Adam : public Optimizer {
 public:
  // Throws ValueError unless 0 <= beta1, beta2 < 1, eps >= 0 and weight_decay >= 0.
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});

  // The options given at construction (options().lr is the initial rate).
  const AdamOptions& options() const { return options_; }
  // True for AdamW.
  bool decoupled_weight_decay() const { return decoupled_; }

 protected:
  Adam(std::vector<Tensor> params, const AdamOptions& options, bool decoupled, const char* name);

  void update(size_t index, const Tensor& param, const Tensor& grad) override;
  void export_param_state(size_t index, NamedTensors& out) const override;
  void import_param_states(const std::vector<std::map<std::string, Tensor>>& per_param) override;

 private:
  struct ParamState {
    int64_t step = 0;  // 0: no state yet
    Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  AdamOptions options_;
  bool decoupled_ = false;
  std::vector<ParamState> state_;
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
};

}  // namespace crfseg::optim
