#include "layers/linear.h"

#include <cmath>

#include "autograd/functions.h"

namespace crfseg::nn {

Linear::Linear(const LinearOptions& o, Generator& gen) : Module("Linear"), options(o) {
  CRFSEG_CHECK(o.in_features >= 1 && o.out_features >= 1, ValueError,
               "Linear: expected in_features >= 1 and out_features >= 1, got ", o.in_features, " and ",
               o.out_features);
  // torch: kaiming_uniform_(a = sqrt(5)) on W gives bound 1/sqrt(fan_in); b uses the same bound.
  const double bound = 1.0 / std::sqrt(static_cast<double>(o.in_features));
  Tensor w = Tensor::empty({o.out_features, o.in_features}, {o.dtype});
  uniform_(w, -bound, bound, gen);
  weight = register_parameter("weight", w);
  if (o.bias) {
    Tensor b = Tensor::empty({o.out_features}, {o.dtype});
    uniform_(b, -bound, bound, gen);
    bias = register_parameter("bias", b);
  }
}

Tensor Linear::forward(const Tensor& x) {
  CRFSEG_CHECK(x.dim() >= 1 && x.size(-1) == options.in_features, ShapeError, "Linear: expected input [..., ",
               options.in_features, "], got ", shape_str(x.shape()));
  Tensor y = matmul(x, transpose(weight, 0, 1));
  return bias.defined() ? add(y, bias) : y;
}

std::string Linear::extra_repr() const {
  return std::to_string(options.in_features) + " -> " + std::to_string(options.out_features) +
         (options.bias ? "" : ", no bias");
}

}  // namespace crfseg::nn
