// Module registration, traversal, modes, device moves, state dicts and the
// model summary; see module.h.
#include "layers/module.h"

#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "autograd/autograd_meta.h"
#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include "tensor/ops.h"

namespace crfseg::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Points `dst`'s handle at `src`'s data (same TensorImpl object, so every
// copy of the handle sees the move).
void swap_data(const Tensor& dst, const Tensor& src) {
  TensorImpl* impl = dst.impl_ptr();
  impl->storage = src.storage_ptr();
  impl->offset = src.offset();
  impl->strides = src.strides();
}

// The summary recorder: while summary() runs, Module::operator() appends a row.
struct SummaryRow {
  const Module* module;
  Shape output;
};
thread_local std::vector<SummaryRow>* g_summary_rows = nullptr;
thread_local const ForwardObserverGuard::Fn* g_observer = nullptr;

}  // namespace

Tensor Module::forward(const Tensor&) {
  CRFSEG_CHECK(false, NotImplementedError, type_name_,
               ": this module has no single-input forward(x); call its own methods instead");
  return Tensor();
}

Tensor Module::operator()(const Tensor& x) {
  if (!profiler::active()) return observed_forward(x);
  const std::string repr = extra_repr();
  const profiler::Scope scope(type_name_.c_str(),
                              (repr.empty() ? "" : "(" + repr + ") ") + "in " + shape_str(x.shape()));
  return observed_forward(x);
}

Tensor Module::observed_forward(const Tensor& x) {
  if (g_summary_rows == nullptr && g_observer == nullptr) return forward(x);
  // Rows in call order (a parent before its children): reserve, then fill.
  const size_t row = g_summary_rows != nullptr ? g_summary_rows->size() : 0;
  if (g_summary_rows != nullptr) g_summary_rows->push_back({this, {}});
  Tensor y = forward(x);
  if (g_summary_rows != nullptr) (*g_summary_rows)[row].output = y.shape();
  if (g_observer != nullptr) (*g_observer)(*this, y);
  return y;
}

bool forward_observed() { return g_summary_rows != nullptr || g_observer != nullptr; }

ForwardObserverGuard::ForwardObserverGuard(Fn fn) : fn_(std::move(fn)), previous_(g_observer) { g_observer = &fn_; }
ForwardObserverGuard::~ForwardObserverGuard() { g_observer = previous_; }

void Module::check_new_name(const std::string& name, const char* what) const {
  CRFSEG_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError, type_name_, ": ", what,
               " name \"", name, "\" must be non-empty and contain no '.'");
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list) {
      if (n == name) return true;
    }
    return false;
  };
  CRFSEG_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), ValueError, type_name_, ": ", what,
               " name \"", name, "\" is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  check_defined("register_parameter", t, name.c_str());
  if (requires_grad) set_requires_grad(t, true);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name, "buffer");
  check_defined("register_buffer", t, name.c_str());
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  CRFSEG_CHECK(module != nullptr, ValueError, type_name_, ": module \"", name, "\" is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool params, bool buffers, bool recurse,
                     std::vector<NamedTensor>& out) const {
  if (params) {
    for (const auto& [n, t] : parameters_) out.emplace_back(join(prefix, n), t);
  }
  if (buffers) {
    for (const auto& [n, t] : buffers_) out.emplace_back(join(prefix, n), t);
  }
  if (!recurse) return;
  for (const auto& [n, child] : children_) child->collect(join(prefix, n), params, buffers, true, out);
}

std::vector<NamedTensor> Module::named_parameters(bool recurse) const {
  std::vector<NamedTensor> out;
  collect("", true, false, recurse, out);
  return out;
}

std::vector<NamedTensor> Module::named_buffers(bool recurse) const {
  std::vector<NamedTensor> out;
  collect("", false, true, recurse, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  // Depth first, children in registration order (an explicit stack: model
  // trees are shallow, but this keeps the traversal order obvious).
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<std::pair<std::string, Module*>> kids;
    for (const auto& [n, child] : out[i].second->children_) kids.emplace_back(join(out[i].first, n), child.get());
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(i) + 1, kids.begin(), kids.end());
  }
  return out;
}

Module& Module::child(const std::string& name) const {
  std::string names;
  for (const auto& [n, c] : children_) {
    if (n == name) return *c;
    names += (names.empty() ? "" : ", ") + n;
  }
  CRFSEG_CHECK(false, ValueError, type_name_, ": no child module \"", name, "\"; children: ",
               names.empty() ? "(none)" : names);
  return *children_.front().second;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  apply([on](Module& m) { m.training_ = on; });
}

void Module::zero_grad() {
  for (const auto& [_, t] : named_parameters()) {
    if (grad(t).defined()) crfseg::zero_grad(t);
  }
}

void Module::to(Device device) {
  for (const auto& [_, t] : state_dict()) {
    if (t.device() == device) continue;
    swap_data(t, ops::to_device(t, device));
    const Tensor g = grad(t);
    if (g.defined()) swap_data(g, ops::to_device(g, device));
  }
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [_, m] : named_modules()) fn(*m);
}

std::vector<NamedTensor> Module::state_dict() const {
  std::vector<NamedTensor> out;
  collect("", true, true, true, out);
  return out;
}

void Module::load_state_dict(const std::vector<NamedTensor>& state, bool strict) {
  const std::vector<NamedTensor> mine = state_dict();
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : state) {
    CRFSEG_CHECK(given.emplace(n, &t).second, ValueError, "load_state_dict: \"", n, "\" appears twice");
  }
  // Validate everything first, so a bad state changes nothing.
  std::vector<std::string> missing;
  std::set<std::string> used;
  for (const auto& [n, t] : mine) {
    auto it = given.find(n);
    if (it == given.end()) {
      missing.push_back(n);
      continue;
    }
    used.insert(n);
    const Tensor& src = *it->second;
    CRFSEG_CHECK(src.defined() && src.shape() == t.shape(), ShapeError, "load_state_dict: \"", n,
                 "\" expects shape ", shape_str(t.shape()), ", got ",
                 src.defined() ? shape_str(src.shape()) : std::string("an undefined tensor"));
  }
  if (strict) {
    std::string unexpected;
    for (const auto& [n, _] : given) {
      if (!used.count(n)) unexpected += (unexpected.empty() ? "" : ", ") + n;
    }
    std::string miss;
    for (const auto& n : missing) miss += (miss.empty() ? "" : ", ") + n;
    CRFSEG_CHECK(missing.empty() && unexpected.empty(), ValueError, "load_state_dict (strict): missing keys [", miss,
                 "], unexpected keys [", unexpected, "]");
  }
  NoGradGuard no_grad;
  for (const auto& [n, t] : mine) {
    auto it = given.find(n);
    if (it == given.end()) continue;
    const Tensor& src = *it->second;
    ops::copy_(t, ops::to_dtype(ops::to_device(src, t.device()), t.dtype()));
  }
}

std::string summary(Module& model, const Tensor& example) {
  std::map<const Module*, std::string> path;
  for (auto& [n, m] : model.named_modules()) path[m] = n.empty() ? "(model)" : n;

  const bool was_training = model.is_training();
  std::vector<SummaryRow> rows;
  Tensor out;
  {
    NoGradGuard no_grad;
    model.eval();
    g_summary_rows = &rows;
    try {
      out = model(example);
    } catch (...) {
      g_summary_rows = nullptr;
      model.train(was_training);
      throw;
    }
    g_summary_rows = nullptr;
    model.train(was_training);
  }

  std::ostringstream s;
  char line[512];
  std::snprintf(line, sizeof line, "%-40s %-20s %-22s %12s\n", "module", "type", "output", "parameters");
  s << line << std::string(97, '-') << "\n";
  int64_t activation_elems = 0;
  for (const SummaryRow& r : rows) {
    int64_t own = 0;
    for (const auto& [_, t] : r.module->named_parameters(false)) own += t.numel();
    activation_elems += numel(r.output);
    std::snprintf(line, sizeof line, "%-40s %-20s %-22s %12lld\n", path[r.module].c_str(),
                  r.module->type_name().c_str(), shape_str(r.output).c_str(), static_cast<long long>(own));
    s << line;
  }
  const int64_t params = model.num_parameters();
  const double mib = 1.0 / (1024.0 * 1024.0), elem = static_cast<double>(dtype_size(example.dtype()));
  s << std::string(97, '-') << "\n";
  s << "input " << shape_str(example.shape()) << ", output " << shape_str(out.shape()) << "\n";
  s << "parameters: " << params << "\n";
  std::snprintf(line, sizeof line,
                "training memory estimate (%s): parameters %.1f MiB, gradients %.1f MiB, Adam moments %.1f MiB, "
                "activations %.1f MiB (forward outputs at this input size)\n",
                dtype_name(example.dtype()), params * elem * mib, params * elem * mib, 2 * params * elem * mib,
                activation_elems * elem * mib);
  s << line;
  return s.str();
}

}  // namespace crfseg::nn
