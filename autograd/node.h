// The autograd graph: Nodes, the edges between them, and saved tensors.
//
// A differentiable op's output carries (in its AutogradMeta) a shared_ptr to
// the Node that computes the op's backward. The Node holds one Edge per
// differentiable input, pointing at that input's own grad_fn, or at an
// AccumulateGrad node when the input is a leaf that requires grad, or at
// nothing when the input needs no gradient.
//
// Saved tensors are stored as aliases without autograd metadata (no
// reference cycles) together with the storage version seen at save time;
// unpacking after an in-place edit throws an AutogradError naming the op.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
};

class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // Returns the saved data; throws AutogradError if it was modified in place
  // since it was saved, or if the graph was already freed by a backward pass.
  Tensor unpack(const char* op) const;
  void release() { released_ = true; data_ = Tensor(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
  bool released_ = false;
};

class Node {
 public:
  // Frees the chain of Nodes only this one keeps alive iteratively: the
  // default recursive destruction of a 100,000-op graph overflows the stack.
  virtual ~Node();
  // Name used in error messages, e.g. "MulBackward".
  virtual const char* name() const = 0;
  // Given the gradient of the loss w.r.t. this node's output, returns one
  // gradient per edge (an undefined Tensor where there is none).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors once backward has run (unless retain_graph).
  virtual void release_saved() {}

  std::vector<Edge> next_edges;
  // While a profiler::Session records: the scope that created this node
  // (its forward module, e.g. "Conv2d (16 -> 32, ...) in [4, 16, 64, 64]"),
  // so that its backward is timed under the layer it belongs to.
  std::string profile_label;
};

}  // namespace crfseg
