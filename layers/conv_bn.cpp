#include "layers/conv_bn.h"

#include "autograd/autograd_meta.h"
#include "autograd/grad_mode.h"

namespace crfseg::nn {

namespace {

// The tensors a fold is computed from, in a fixed order (undefined ones
// stay undefined: a conv without bias, a batch norm without affine).
std::vector<Tensor> fold_sources(const Conv2d& conv, const BatchNorm2d& bn) {
  return {conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var};
}

bool wants_grad(const Tensor& t) { return t.defined() && requires_grad(t); }

}  // namespace

bool conv_bn_fuses(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x) {
  if (bn.is_training() || forward_observed()) return false;
  if (!GradMode::is_enabled()) return true;
  if (wants_grad(x)) return false;
  for (const Tensor& t : fold_sources(conv, bn))
    if (wants_grad(t)) return false;
  return true;
}

Tensor conv_bn(Conv2d& conv, BatchNorm2d& bn, const Tensor& x) {
  if (!conv_bn_fuses(conv, bn, x)) return bn(conv(x));
  CRFSEG_CHECK(conv.options.out_channels == bn.options.num_features, ShapeError, "conv_bn: the convolution has ",
               conv.options.out_channels, " output channels, the batch norm ", bn.options.num_features, " features");
  const std::vector<Tensor> sources = fold_sources(conv, bn);
  BatchNorm2d::Folded& f = bn.folded;
  bool fresh = f.storages.size() == sources.size();
  for (size_t i = 0; fresh && i < sources.size(); ++i) {
    const Tensor& a = sources[i];
    const std::shared_ptr<Storage> held = f.storages[i].lock();
    fresh = a.defined() ? held == a.storage_ptr() && a.offset() == f.offsets[i] && a.version() == f.versions[i]
                        : f.offsets[i] < 0;
  }
  if (!fresh) {
    NoGradGuard no_grad;
    const int64_t K = bn.options.num_features;
    // s = gamma / sqrt(var + eps), t = beta - s mean (gamma = 1, beta = 0 without affine).
    const Tensor stddev =
        ops::unary(ops::UnaryOp::sqrt, ops::scalar_op(ops::ScalarOp::add, bn.running_var, bn.options.eps));
    Tensor s = ops::unary(ops::UnaryOp::reciprocal, stddev);
    if (bn.weight.defined()) s = ops::binary(ops::BinaryOp::mul, s, bn.weight);
    Tensor shift = conv.bias.defined() ? ops::binary(ops::BinaryOp::sub, conv.bias, bn.running_mean)
                                       : ops::scalar_op(ops::ScalarOp::mul, bn.running_mean, -1.0);
    shift = ops::binary(ops::BinaryOp::mul, shift, s);
    if (bn.bias.defined()) shift = ops::binary(ops::BinaryOp::add, shift, bn.bias);
    f.weight = ops::binary(ops::BinaryOp::mul, conv.weight, ops::reshape(s, {K, 1, 1, 1}));
    f.bias = shift;
    f.storages.clear();
    f.offsets.clear();
    f.versions.clear();
    for (const Tensor& t : sources) {
      f.storages.push_back(t.defined() ? std::weak_ptr<Storage>(t.storage_ptr()) : std::weak_ptr<Storage>());
      f.offsets.push_back(t.defined() ? t.offset() : -1);
      f.versions.push_back(t.defined() ? t.version() : 0);
    }
  }
  return bn.options.fuse_relu ? ops::conv2d_relu(x, f.weight, f.bias, conv.args())
                              : ops::conv2d(x, f.weight, f.bias, conv.args());
}

}  // namespace crfseg::nn
