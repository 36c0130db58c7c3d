// Inference-time fusion of a convolution with the batch norm after it (and
// that batch norm's ReLU), as inference engines do ("folding").
//
// In eval mode batch norm is a fixed per-channel affine map of the
// convolution's output z:
//   bn(z)[k] = gamma[k] (z[k] - mean[k]) / sqrt(var[k] + eps) + beta[k] = s[k] z[k] + t[k],
// and z[k] = W[k] * x + b[k] is linear in W[k], so
//   bn(conv(x; W, b)) = conv(x; W', b'),  W'[k] = s[k] W[k],  b'[k] = s[k] (b[k] - mean[k]) + beta[k].
// One convolution then writes the block's output once, with the ReLU of a
// fuse_relu batch norm applied as the convolution's epilogue
// (ops::conv2d_relu), instead of a second pass that reads and writes every
// activation again. W' and b' are computed once and kept until any of the
// tensors they come from changes (their version counters, tensor/storage.h).
//
// conv_bn(conv, bn, x) equals bn(conv(x)) up to rounding (W' rounds s W once,
// where the plain path rounds s z). It fuses only where that is safe:
// bn in eval mode, no gradient wanted (grad mode off, or nothing involved
// requires one: the fused op is not differentiable), and no summary or
// forward observer watching module calls (they would miss the two modules).
// Everywhere else it is bn(conv(x)), through both modules. The fold is kept
// in the batch norm (BatchNorm2d::folded), so one module pair must not run
// from several threads at once.
#pragma once

#include "layers/conv.h"
#include "layers/norm.h"

namespace crfseg::nn {

Tensor conv_bn(Conv2d& conv, BatchNorm2d& bn, const Tensor& x);

// Whether conv_bn(conv, bn, x) would take the fused path (for tests and benchmarks).
bool conv_bn_fuses(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x);

}  // namespace crfseg::nn
