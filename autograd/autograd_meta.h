// Autograd metadata attached to a Tensor, and the user-facing helpers.
//
// A tensor takes part in autograd when it has AutogradMeta: a leaf created by
// the user with set_requires_grad(t, true), or the output of a differentiable
// op run while grad mode is on (then grad_fn is set).
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "tensor/tensor.h"

namespace crfseg {

// Called with a leaf's accumulated grad right after a backward pass has
// added its contribution (see add_grad_accumulated_hook).
using GradAccumulatedHook = std::function<void(const Tensor& grad)>;

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                           // accumulated gradient (leaves only)
  std::shared_ptr<Node> grad_fn;         // null for leaves
  std::weak_ptr<Node> grad_accumulator;  // cached AccumulateGrad for leaves
  std::vector<std::pair<int64_t, GradAccumulatedHook>> grad_accumulated_hooks;  // (id, hook), leaves only
};

bool requires_grad(const Tensor& t);
// Marks a leaf as requiring grad. Throws AutogradError for non-leaf outputs
// and for integer tensors (which cannot have gradients).
void set_requires_grad(const Tensor& t, bool value = true);
bool is_leaf(const Tensor& t);
// The accumulated gradient of a leaf (undefined until a backward reaches it).
Tensor grad(const Tensor& t);
// Sets a leaf's accumulated gradient to zero in place (keeps the buffer).
void zero_grad(const Tensor& t);
// Forgets a leaf's accumulated gradient (the next backward allocates anew).
void reset_grad(const Tensor& t);
std::shared_ptr<Node> grad_fn(const Tensor& t);
// Registers `hook` to run each time a backward pass has accumulated (+=) its
// gradient into leaf t's grad, with that grad; hooks run in registration
// order, on the thread running backward, while the rest of the backward is
// still to come (torch's register_post_accumulate_grad_hook). A leaf used
// several times in one graph gets one call per backward, after all its
// contributions are summed. Data-parallel training uses it to start a
// bucket's all-reduce as soon as the bucket's gradients are final
// (distributed/grad_sync.h). An exception thrown by a hook propagates out of
// backward(). Returns an id for remove_grad_accumulated_hook. Throws
// AutogradError unless t is a leaf that requires grad.
int64_t add_grad_accumulated_hook(const Tensor& t, GradAccumulatedHook hook);
// Removes the hook with that id; throws AutogradError if t has no such hook.
void remove_grad_accumulated_hook(const Tensor& t, int64_t id);
// A tensor sharing t's data but outside the graph.
Tensor detach(const Tensor& t);

// ---- helpers for writing differentiable ops ----
// True when grad mode is on and any input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
// The edge through which gradient flows into `t` (see node.h).
Edge gradient_edge(const Tensor& t);
// Connects `node` to `inputs` and records it as `out`'s grad_fn.
void attach(const Tensor& out, std::shared_ptr<Node> node, std::initializer_list<const Tensor*> inputs);
void attach(const Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs);

}  // namespace crfseg
