// Finite-difference gradient check (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg {

namespace {

std::vector<double> flat(const Tensor& t) { return ops::contiguous(t).to_vector<double>(); }

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_dtype("gradcheck", inputs[i], DType::f64);
    check_cpu("gradcheck", inputs[i]);
    CRFSEG_CHECK(inputs[i].is_contiguous() && is_leaf(inputs[i]), ValueError, "gradcheck: input ", i,
                 " must be a contiguous leaf (make views inside fn)");
    set_requires_grad(inputs[i], true);
  }
  Tensor y0;
  {
    NoGradGuard no_grad;
    y0 = fn(inputs);
  }
  const int64_t ny = y0.numel();

  // Numerical Jacobians, one column per input element.
  std::vector<std::vector<double>> numeric(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t nx = inputs[i].numel();
    numeric[i].assign(static_cast<size_t>(nx * ny), 0.0);
    double* x = inputs[i].data<double>();
    for (int64_t k = 0; k < nx; ++k) {
      const double saved = x[k];
      std::vector<double> plus, minus;
      {
        NoGradGuard no_grad;
        x[k] = saved + options.eps;
        plus = flat(fn(inputs));
        x[k] = saved - options.eps;
        minus = flat(fn(inputs));
        x[k] = saved;
      }
      for (int64_t j = 0; j < ny; ++j) numeric[i][j * nx + k] = (plus[j] - minus[j]) / (2.0 * options.eps);
    }
  }

  // Analytical Jacobians, one row per output element.
  GradcheckResult result;
  for (int64_t j = 0; j < ny; ++j) {
    for (const Tensor& x : inputs) reset_grad(x);
    Tensor y = fn(inputs);
    CRFSEG_CHECK(requires_grad(y), ValueError, "gradcheck: fn's output does not depend on any input");
    std::vector<double> onehot(static_cast<size_t>(ny), 0.0);
    onehot[j] = 1.0;
    backward(y, from_vector(onehot, y.shape()));
    for (size_t i = 0; i < inputs.size(); ++i) {
      const int64_t nx = inputs[i].numel();
      const Tensor g = grad(inputs[i]);
      const std::vector<double> row = g.defined() ? flat(g) : std::vector<double>(nx, 0.0);
      for (int64_t k = 0; k < nx; ++k) {
        const double num = numeric[i][j * nx + k], ana = row[k];
        const double err = std::abs(ana - num);
        result.max_abs_error = std::max(result.max_abs_error, err);
        if (result.ok && !(err <= options.atol + options.rtol * std::abs(num))) {
          std::ostringstream msg;
          msg.precision(10);
          msg << "gradcheck: mismatch for input " << i << " element " << k << ", output element " << j
              << ": analytical " << ana << ", numerical " << num << " (|diff| " << err << ")";
          result.ok = false;
          result.message = msg.str();
        }
      }
    }
  }
  for (const Tensor& x : inputs) reset_grad(x);
  return result;
}

}  // namespace crfseg
