// The backward engine.
//
// 1. Collect every Node reachable from the root with an explicit stack (no
//    recursion, so a 1000-step unrolled CRF or a deep U-Net cannot overflow
//    the call stack) and count, for each Node, how many edges point at it.
// 2. Kahn's algorithm: a Node runs once every consumer has delivered its
//    gradient; gradients arriving at a Node from several consumers are summed.
// The order is fixed by the graph's structure, so results are deterministic.
#include "autograd/engine.h"

#include <optional>
#include <unordered_map>
#include <vector>

#include "autograd/autograd_meta.h"
#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg {

void backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  check_defined("backward", root, "root");
  CRFSEG_CHECK(requires_grad(root), AutogradError,
               "backward: the tensor does not require grad and has no grad_fn (did you forget "
               "set_requires_grad on an input, or compute it under NoGradGuard?)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    CRFSEG_CHECK(root.numel() == 1, AutogradError,
                 "backward: grad_output can be omitted only for a one-element output, got shape ",
                 shape_str(root.shape()));
    seed = ones(root.shape(), root.options());
  }
  CRFSEG_CHECK(seed.shape() == root.shape() && seed.dtype() == root.dtype() && seed.device() == root.device(),
               AutogradError,
               "backward: expected grad_output like ", root.str(), ", got ", seed.str());

  NoGradGuard no_grad;  // backward itself is not recorded: no double backward
  const Edge root_edge = gradient_edge(root);

  // Pass 1: dependency counts over the reachable graph.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack = {root_edge.node.get()};
  dependencies[root_edge.node.get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& e : node->next_edges) {
      if (!e.node) continue;
      auto [it, inserted] = dependencies.try_emplace(e.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.node.get());
    }
  }

  // Pass 2: run nodes whose gradient is complete.
  std::unordered_map<Node*, Tensor> pending = {{root_edge.node.get(), seed}};
  std::vector<Node*> ready = {root_edge.node.get()};
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    Tensor grad_in = std::move(pending[node]);
    pending.erase(node);
    std::vector<Tensor> grads;
    if (grad_in.defined()) {
      // Profiling: timed under the forward scope that made the node, else
      // by its gradient's shape (the label is built only then).
      std::optional<profiler::Scope> scope;
      if (profiler::active()) {
        scope.emplace(node->name(),
                      node->profile_label.empty() ? "of " + shape_str(grad_in.shape()) : node->profile_label);
      }
      grads = node->apply(grad_in);
    }
    if (!retain_graph) node->release_saved();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      Node* next = node->next_edges[i].node.get();
      if (next == nullptr) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor& slot = pending[next];
        slot = slot.defined() ? ops::add(slot, grads[i]) : grads[i];
      }
      if (--dependencies[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace crfseg
