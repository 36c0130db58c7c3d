#include "layers/norm.h"

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "tensor/factory.h"

namespace crfseg::nn {

BatchNorm2d::BatchNorm2d(const BatchNorm2dOptions& o) : Module("BatchNorm2d"), options(o) {
  CRFSEG_CHECK(o.num_features >= 1 && o.eps > 0 && o.momentum >= 0 && o.momentum <= 1, ValueError,
               "BatchNorm2d: expected num_features >= 1, eps > 0 and momentum in [0, 1], got ", o.num_features,
               ", ", o.eps, ", ", o.momentum);
  if (o.affine) {
    weight = register_parameter("weight", ones({o.num_features}, {o.dtype}));
    bias = register_parameter("bias", zeros({o.num_features}, {o.dtype}));
  }
  running_mean = register_buffer("running_mean", zeros({o.num_features}, {o.dtype}));
  running_var = register_buffer("running_var", ones({o.num_features}, {o.dtype}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, {DType::i64}));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  CRFSEG_CHECK(x.dim() == 4 && x.size(1) == options.num_features, ShapeError, "BatchNorm2d: expected input [N, ",
               options.num_features, ", H, W], got ", shape_str(x.shape()));
  if (is_training()) {
    NoGradGuard no_grad;
    if (num_batches_tracked.device().is_cuda()) {
      // On the device (i64 -> f64, + 1, back): item() would synchronise every forward.
      ops::copy_(num_batches_tracked,
                 ops::scalar_op(ops::ScalarOp::add, ops::to_dtype(num_batches_tracked, DType::f64), 1.0));
    } else {
      ops::fill_(num_batches_tracked, num_batches_tracked.item() + 1);
    }
  }
  return batch_norm(x, weight, bias, running_mean, running_var, is_training(), options.momentum, options.eps,
                    options.fuse_relu, sync);
}

std::string BatchNorm2d::extra_repr() const {
  return std::to_string(options.num_features) + (options.fuse_relu ? ", fused ReLU" : "") +
         (sync ? ", synchronised over " + std::to_string(sync->replicas()) + " replicas" : "");
}

int64_t set_batch_norm_sync(Module& root, const std::shared_ptr<kernels::ReplicaSync>& sync) {
  int64_t count = 0;
  root.apply([&](Module& m) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&m)) {
      bn->sync = sync;
      ++count;
    }
  });
  return count;
}

}  // namespace crfseg::nn
