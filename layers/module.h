// Module: the base of every layer and model, in the spirit of PyTorch's
// C++ frontend (torch::nn::Module), without the ModuleHolder indirection.
//
// A module owns
//   - parameters: tensors that train (requires_grad), e.g. conv weights;
//   - buffers: tensors that are state but do not train, e.g. BatchNorm's
//     running_mean;
//   - child modules, held by shared_ptr.
// Each is registered under a name, and names compose with dots through the
// tree, so a ResNet's parameters are called "layer1.0.conv1.weight" exactly
// as in torchvision; that is what lets a torchvision state_dict exported to
// safetensors load with strict checks.
//
// Layers keep a Tensor member for each parameter as well as registering it.
// A Tensor is a handle, so both refer to the same data; load_state_dict
// copies into that data and to(device) swaps the storage under the handle,
// so the members stay valid.
//
// Training vs evaluation (BatchNorm statistics, Dropout) is the module's
// mode, set by train()/eval(); it is separate from autograd's NoGradGuard.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::nn {

using NamedTensor = std::pair<std::string, Tensor>;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Conv2d", "Sequential", ...
  const std::string& type_name() const { return type_name_; }
  // The hyper-parameters for summaries, e.g. "3, 64, kernel=3x3, padding=1".
  virtual std::string extra_repr() const { return ""; }

  // Single-input forward. Modules with other signatures (encoders returning
  // several feature maps, the segmenter) define their own methods instead
  // and leave this throwing NotImplementedError.
  virtual Tensor forward(const Tensor& x);
  // forward(x), plus recording the output shape while a summary runs, and
  // timing the call while a profiler::Session records (autograd/profiler.h).
  Tensor operator()(const Tensor& x);

  // ---- registration (names must be non-empty, dot-free and unique) ----
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- traversal: registration order, this module before its children ----
  std::vector<NamedTensor> named_parameters(bool recurse = true) const;
  std::vector<NamedTensor> named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // Every module of the tree with its dotted path; this one first, as "".
  std::vector<std::pair<std::string, Module*>> named_modules();
  // The child registered under `name`; throws ValueError listing the names otherwise.
  Module& child(const std::string& name) const;
  int64_t num_parameters() const;  // elements over all parameters

  // ---- modes and bulk operations ----
  void train(bool on = true);  // this module and all children
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // zero_grad() on every parameter that has a gradient
  // Moves parameters, buffers and gradients; existing Tensor handles stay valid.
  void to(Device device);
  void apply(const std::function<void(Module&)>& fn);  // fn on every module, this one first

  // ---- state: parameters then buffers of each module, depth first ----
  std::vector<NamedTensor> state_dict() const;
  // Copies values into the existing tensors (dtype cast allowed, shapes must
  // match). strict: the names must be exactly this module's state names.
  // Throws ShapeError/ValueError naming the tensor; on error nothing is modified.
  void load_state_dict(const std::vector<NamedTensor>& state, bool strict = true);

 private:
  Tensor observed_forward(const Tensor& x);  // forward(x) and the summary/observer hooks
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, bool params, bool buffers, bool recurse,
               std::vector<NamedTensor>& out) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<NamedTensor> parameters_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Calls `fn(module, output)` after every Module::operator() that runs on this
// thread while the guard lives (children complete before their parents, so
// calls come in completion order). Guards nest: the newest one is active and
// the previous one is restored on destruction. Used by the non-finite
// diagnosis (layers/nonfinite.h); observation must not change the forward.
class ForwardObserverGuard {
 public:
  using Fn = std::function<void(const Module& module, const Tensor& output)>;
  explicit ForwardObserverGuard(Fn fn);
  ~ForwardObserverGuard();
  ForwardObserverGuard(const ForwardObserverGuard&) = delete;
  ForwardObserverGuard& operator=(const ForwardObserverGuard&) = delete;

 private:
  Fn fn_;
  const Fn* previous_;
};

// True while summary() or a ForwardObserverGuard watches module calls on
// this thread (fusions that skip module calls, layers/conv_bn.h, then stay off).
bool forward_observed();

// A table of the model: one row per module that ran during a forward of
// `example` (dotted path, type, output shape, parameters), then totals and
// a memory estimate for training: parameters, gradients, Adam's two moment
// buffers (f32), and the activations the forward produced (what autograd
// keeps alive at most). Runs the forward under NoGradGuard in eval mode
// and restores the mode afterwards.
std::string summary(Module& model, const Tensor& example);

}  // namespace crfseg::nn
