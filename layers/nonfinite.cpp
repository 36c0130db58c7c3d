// Non-finite diagnosis; see nonfinite.h.
#include "layers/nonfinite.h"

#include <cmath>
#include <map>

#include "autograd/autograd_meta.h"
#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace crfseg::nn {

bool all_finite(const Tensor& t) {
  if (!t.defined() || (t.dtype() != DType::f32 && t.dtype() != DType::f64) || t.numel() == 0) return true;
  const Tensor host = ops::contiguous(t.device().is_cpu() ? t : ops::to_device(t, Device::cpu()));
  if (host.dtype() == DType::f32) {
    const float* x = host.data<float>();
    for (int64_t i = 0; i < host.numel(); ++i) {
      if (!std::isfinite(x[i])) return false;
    }
    return true;
  }
  const double* x = host.data<double>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

std::vector<std::string> nonfinite_parameters(const Module& model) {
  std::vector<std::string> out;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!all_finite(p)) out.push_back(name);
  }
  return out;
}

std::vector<std::string> nonfinite_gradients(const Module& model) {
  std::vector<std::string> out;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!all_finite(grad(p))) out.push_back(name);
  }
  return out;
}

std::optional<std::string> first_nonfinite_output(Module& model, const std::function<void()>& forward) {
  std::map<const Module*, std::string> paths;
  for (const auto& [path, m] : model.named_modules()) paths[m] = path.empty() ? "the model" : path;
  std::optional<std::string> first;
  ForwardObserverGuard observe([&](const Module& m, const Tensor& y) {
    if (first || !paths.count(&m) || all_finite(y)) return;
    first = paths.at(&m) + " (" + m.type_name() + ")";
  });
  NoGradGuard no_grad;
  forward();
  return first;
}

std::string describe_names(const std::string& what, const std::vector<std::string>& names) {
  if (names.empty()) return "";
  std::string s = "; " + what + " in " + names.front();
  if (names.size() > 1) s += " (and " + std::to_string(names.size() - 1) + " others)";
  return s;
}

}  // namespace crfseg::nn
