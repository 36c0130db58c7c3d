// AutogradMeta helpers, SavedTensor and the AccumulateGrad node.
#include "autograd/autograd_meta.h"

#include <algorithm>
#include <atomic>

#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include "tensor/ops.h"

namespace crfseg {

namespace {

// Whether t is the only handle on its tensor and the tensor the only one on
// its buffer, which it covers whole.
bool sole_owner(const Tensor& t) {
  return !t.autograd_meta() && t.impl_shared().use_count() == 1 && t.storage_ptr().use_count() == 1 &&
         t.offset() == 0 && t.is_contiguous() &&
         t.storage_ptr()->bytes() == static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
}

// The sink for a leaf: adds the incoming gradient into the leaf's .grad.
// Holds the leaf's metadata (not the leaf itself), so there is no cycle.
class AccumulateGrad : public Node {
 public:
  AccumulateGrad(std::shared_ptr<AutogradMeta> meta, Shape shape, DType dtype)
      : meta_(std::move(meta)), shape_(std::move(shape)), dtype_(dtype) {}
  const char* name() const override { return "AccumulateGrad"; }

  std::vector<Tensor> apply(const Tensor& grad) override {
    CRFSEG_CHECK(grad.shape() == shape_ && grad.dtype() == dtype_, AutogradError,
                 "AccumulateGrad: gradient ", grad.str(), " does not match its leaf ", shape_str(shape_), " ",
                 dtype_name(dtype_), " (a backward function returned a wrong shape)");
    if (!meta_->grad.defined()) {
      // A gradient held by nothing else becomes .grad as it is (torch's
      // AccumulateGrad steals it too): copying it was 4% of a ResNet-50
      // U-Net's step. Any other is copied, since gradients may alias graph
      // temporaries, another input's gradient or the caller's grad_output.
      meta_->grad = sole_owner(grad) ? grad : ops::clone(grad);
    } else {
      ops::add_(meta_->grad, grad);
    }
    if (!meta_->grad_accumulated_hooks.empty()) {
      const auto hooks = meta_->grad_accumulated_hooks;  // a copy: a hook may remove itself
      for (const auto& [id, hook] : hooks) hook(meta_->grad);
    }
    return {};
  }

 private:
  std::shared_ptr<AutogradMeta> meta_;
  Shape shape_;
  DType dtype_;
};

AutogradMeta* meta_of(const Tensor& t) { return t.defined() ? t.autograd_meta().get() : nullptr; }

}  // namespace

Node::~Node() {
  std::vector<std::shared_ptr<Node>> orphans;
  auto adopt = [&orphans](std::vector<Edge>& edges) {
    for (Edge& e : edges) {
      // Only nodes nobody else holds would die (recursively) with this one.
      if (e.node && e.node.use_count() == 1) orphans.push_back(std::move(e.node));
    }
  };
  adopt(next_edges);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    adopt(node->next_edges);  // take its children first, so it dies with no chain behind it
  }
}

SavedTensor::SavedTensor(const Tensor& t) : data_(t.defined() ? t.alias() : Tensor()) {
  if (t.defined()) version_ = t.version();
}

Tensor SavedTensor::unpack(const char* op) const {
  CRFSEG_CHECK(!released_, AutogradError, op,
               ": trying to backward through the graph a second time (its saved tensors were freed); "
               "pass retain_graph=true to the first backward");
  if (data_.defined()) {
    CRFSEG_CHECK(data_.version() == version_, AutogradError, op,
                 ": a tensor saved for backward was modified by an in-place operation (saved at version ",
                 version_, ", now at version ", data_.version(), "); clone it before modifying it");
  }
  return data_;
}

bool requires_grad(const Tensor& t) {
  const AutogradMeta* m = meta_of(t);
  return m != nullptr && m->requires_grad;
}

void set_requires_grad(const Tensor& t, bool value) {
  check_defined("set_requires_grad", t, "t");
  CRFSEG_CHECK(is_leaf(t), AutogradError, "set_requires_grad: only leaf tensors can change requires_grad; ",
               "this one was produced by ", grad_fn(t)->name(), " (use detach() first)");
  // bf16 and f16 are storage types (tensor/half.h): no op computes with them.
  CRFSEG_CHECK(!value || t.dtype() == DType::f32 || t.dtype() == DType::f64, AutogradError,
               "set_requires_grad: only floating-point tensors can require grad (f32, f64), got ",
               dtype_name(t.dtype()));
  if (!t.autograd_meta()) t.set_autograd_meta(std::make_shared<AutogradMeta>());
  t.autograd_meta()->requires_grad = value;
}

bool is_leaf(const Tensor& t) {
  const AutogradMeta* m = meta_of(t);
  return m == nullptr || m->grad_fn == nullptr;
}

Tensor grad(const Tensor& t) {
  const AutogradMeta* m = meta_of(t);
  return m ? m->grad : Tensor();
}

void zero_grad(const Tensor& t) {
  AutogradMeta* m = meta_of(t);
  if (m && m->grad.defined()) ops::zero_(m->grad);
}

void reset_grad(const Tensor& t) {
  AutogradMeta* m = meta_of(t);
  if (m) m->grad = Tensor();
}

std::shared_ptr<Node> grad_fn(const Tensor& t) {
  const AutogradMeta* m = meta_of(t);
  return m ? m->grad_fn : nullptr;
}

int64_t add_grad_accumulated_hook(const Tensor& t, GradAccumulatedHook hook) {
  check_defined("add_grad_accumulated_hook", t, "t");
  CRFSEG_CHECK(is_leaf(t) && requires_grad(t), AutogradError,
               "add_grad_accumulated_hook: expected a leaf that requires grad, got ",
               is_leaf(t) ? "a leaf that does not require grad" : "the output of an op");
  CRFSEG_CHECK(hook != nullptr, AutogradError, "add_grad_accumulated_hook: the hook is empty");
  static std::atomic<int64_t> next_id{1};
  const int64_t id = next_id++;
  t.autograd_meta()->grad_accumulated_hooks.emplace_back(id, std::move(hook));
  return id;
}

void remove_grad_accumulated_hook(const Tensor& t, int64_t id) {
  if (AutogradMeta* m = meta_of(t)) {
    auto& hooks = m->grad_accumulated_hooks;
    auto it = std::find_if(hooks.begin(), hooks.end(), [id](const auto& h) { return h.first == id; });
    if (it != hooks.end()) {
      hooks.erase(it);
      return;
    }
  }
  throw AutogradError("remove_grad_accumulated_hook: the tensor has no hook with id " + std::to_string(id));
}

Tensor detach(const Tensor& t) {
  check_defined("detach", t, "t");
  return t.alias();
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (requires_grad(*t)) return true;
  }
  return false;
}

Edge gradient_edge(const Tensor& t) {
  AutogradMeta* m = meta_of(t);
  if (m == nullptr || !m->requires_grad) return {};
  if (m->grad_fn) return {m->grad_fn};
  std::shared_ptr<Node> acc = m->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.autograd_meta(), t.shape(), t.dtype());
    m->grad_accumulator = acc;
  }
  return {acc};
}

namespace {
void set_history(const Tensor& out, std::shared_ptr<Node> node) {
  if (profiler::active()) node->profile_label = profiler::innermost_label();
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = std::move(node);
  out.set_autograd_meta(std::move(meta));
}
}  // namespace

void attach(const Tensor& out, std::shared_ptr<Node> node, std::initializer_list<const Tensor*> inputs) {
  for (const Tensor* t : inputs) node->next_edges.push_back(gradient_edge(*t));
  set_history(out, std::move(node));
}

void attach(const Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs) {
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  set_history(out, std::move(node));
}

}  // namespace crfseg
