// backward(): reverse-mode differentiation over the dynamic graph.
#pragma once

#include "tensor/tensor.h"

namespace crfseg {

// Computes d(root)/d(leaf) for every leaf reachable from root that requires
// grad, and accumulates (+=) it into the leaf's grad.
//  - grad_output: d(loss)/d(root); may be omitted only when root has one element.
//  - retain_graph: keep saved tensors so backward can run again through the
//    same graph; otherwise they are freed and a second pass throws.
// Double backward (differentiating a backward pass) is not supported: the
// pass runs in no-grad mode.
void backward(const Tensor& root, const Tensor& grad_output = Tensor(), bool retain_graph = false);

}  // namespace crfseg
