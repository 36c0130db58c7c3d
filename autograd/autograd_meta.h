// Autograd metadata attached to a Tensor, and the user-facing helpers.
//
// A tensor takes part in autograd when it has AutogradMeta: a leaf created by
// the user with set_requires_grad(t, true), or the output of a differentiable
// op run while grad mode is on (then grad_fn is set).
#pragma once

#include <memory>

#include "autograd/node.h"
#include "tensor/tensor.h"

namespace crfseg {

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                           // accumulated gradient (leaves only)
  std::shared_ptr<Node> grad_fn;         // null for leaves
  std::weak_ptr<Node> grad_accumulator;  // cached AccumulateGrad for leaves
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
