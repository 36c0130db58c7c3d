// gradcheck: compares autograd's Jacobian with central finite differences.
//
// For f: (x_1..x_n) -> y, both Jacobians dy/dx_i are built in full:
//  - numerical: column k of J_i is (f(x_i + eps e_k) - f(x_i - eps e_k)) / (2 eps);
//  - analytical: row j of J_i is the gradient of y_j, from backward with a
//    one-hot grad_output.
// They must agree elementwise within atol + rtol * |numerical| (PyTorch's
// gradcheck defaults). Inputs must be f64 CPU leaves; they are marked
// requires_grad here. Cost: 2 * numel(inputs) forwards + numel(y) backwards,
// so use small shapes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch: input, element, output, both values
  double max_abs_error = 0.0;
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          GradcheckOptions options = {});

}  // namespace crfseg
