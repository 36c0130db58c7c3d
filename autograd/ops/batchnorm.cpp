// batch_norm, with an optional fused ReLU.
//
// Forward, per channel c over its M = N * spatial elements:
//   xhat = (x - mean) invstd,  invstd = 1 / sqrt(var + eps),  y = w xhat + b,
//   then y = max(0, y) when fuse_relu.
// Training uses the batch mean and biased variance (so both depend on every
// x of the channel); eval uses the running statistics (constants).
//
// Backward, with gm = g where y > 0 and 0 elsewhere when the ReLU is fused
// (else gm = g), and dxhat = w gm:
//   dbias   = sum gm
//   dweight = sum gm xhat
//   eval:     dx = w invstd gm
//   training: var = 1/M sum (x - mean)^2 and mean = 1/M sum x give
//     dvar  = -1/2 invstd^3 sum dxhat (x - mean)
//     dmean = -invstd sum dxhat   (the dvar * dvar/dmean term vanishes: sum (x - mean) = 0)
//     dx    = invstd dxhat + dvar 2 (x - mean) / M + dmean / M
//           = w invstd (gm - mean(gm) - xhat mean(gm xhat))
// The running statistics are buffers: the raw op updates them in place (in
// training), outside the graph; they get no edge and no gradient, and may
// not require grad.
//
// Synchronised (sync != nullptr): the statistics are over every replica's
// batch, and the backward's sums too (see ops::batch_norm); the node keeps
// the sync alive until it has run, because its backward is a collective.
//
// Saved for backward, decided per input: x in training (dx needs xhat) or
// when weight needs a gradient (dweight needs xhat); in eval with only x or
// bias needing a gradient, x is not kept. weight, mean and invstd are [C];
// y only with fuse_relu, for the mask.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class BatchNormBackward : public Node {
 public:
  BatchNormBackward(const Tensor& x, const Tensor& weight, const ops::BatchNormForward& fwd, bool training,
                    bool fuse_relu, std::shared_ptr<kernels::ReplicaSync> sync)
      : weight_(weight), mean_(fwd.mean), invstd_(fwd.invstd), training_(training), fuse_relu_(fuse_relu),
        sync_(std::move(sync)) {
    if (training || requires_grad(weight)) x_ = SavedTensor(x);
    if (fuse_relu) y_ = SavedTensor(fwd.y);
  }
  const char* name() const override { return fuse_relu_ ? "BatchNormReluBackward" : "BatchNormBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    const bool need_x = next_edges[0].node != nullptr, need_w = next_edges[1].node != nullptr,
               need_b = next_edges[2].node != nullptr;
    const ops::BatchNormForward fwd{y_.unpack(name()), mean_.unpack(name()), invstd_.unpack(name())};
    ops::BatchNormGrads grads =
        ops::batch_norm_backward(g, x_.unpack(name()), weight_.unpack(name()), fwd, training_, fuse_relu_,
                                 sync_.get());
    return {need_x ? grads.dx : Tensor(), need_w ? grads.dweight : Tensor(), need_b ? grads.dbias : Tensor()};
  }
  void release_saved() override {
    x_.release();
    weight_.release();
    mean_.release();
    invstd_.release();
    y_.release();
  }

 private:
  SavedTensor x_, weight_, mean_, invstd_, y_;
  bool training_, fuse_relu_;
  std::shared_ptr<kernels::ReplicaSync> sync_;
};

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps, bool fuse_relu,
                  std::shared_ptr<kernels::ReplicaSync> sync) {
  CRFSEG_CHECK(!requires_grad(running_mean) && !requires_grad(running_var), AutogradError,
               "batch_norm: running_mean and running_var are buffers updated in place and must not require grad");
  const ops::BatchNormForward fwd =
      ops::batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, fuse_relu, sync.get());
  if (needs_grad({&x, &weight, &bias})) {
    attach(fwd.y, std::make_shared<BatchNormBackward>(x, weight, fwd, training, fuse_relu, std::move(sync)),
           {&x, &weight, &bias});
  }
  return fwd.y;
}

}  // namespace crfseg
