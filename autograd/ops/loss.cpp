// Segmentation losses beyond cross-entropy (which lives in softmax.cpp).
//
// binary_cross_entropy_with_logits: fused raw op (tensor/ops_loss.cpp);
//   dlogits = g / n * ((1 + (p - 1) t) sigmoid(x) - p t). Targets get no gradient.
//
// dice_loss: soft Dice (Milletari et al. 2016, V-Net) composed from
// differentiable ops, so its backward is the chain rule through them. With
// probabilities P (softmax over classes, or sigmoid for one channel), one-hot
// targets G and a mask M that zeroes ignored positions, per class c, summed
// over the batch and all pixels:
//   I_c = sum P M G,   S_c = sum P M + sum G,   dice_c = (2 I_c + s) / (S_c + s)
//   loss = 1 - mean over the chosen classes of dice_c
// The smoothing s keeps classes absent from both prediction and target at
// dice 1 (no gradient blow-up on empty masks).
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"
#include "tensor/factory.h"

namespace crfseg {

namespace {

class BCEWithLogitsBackward : public Node {
 public:
  BCEWithLogitsBackward(const Tensor& logits, const Tensor& target, double pos_weight)
      : logits_(logits), target_(target), pos_weight_(pos_weight) {}
  const char* name() const override { return "BCEWithLogitsBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::binary_cross_entropy_with_logits_backward(g, logits_.unpack(name()), target_.unpack(name()),
                                                           pos_weight_)};
  }
  void release_saved() override {
    logits_.release();
    target_.release();
  }

 private:
  SavedTensor logits_, target_;
  double pos_weight_;
};

}  // namespace

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, double pos_weight) {
  CRFSEG_CHECK(!requires_grad(target), AutogradError,
               "binary_cross_entropy_with_logits: targets are constants and must not require grad");
  Tensor loss = ops::binary_cross_entropy_with_logits(logits, target, pos_weight);
  if (needs_grad({&logits})) {
    attach(loss, std::make_shared<BCEWithLogitsBackward>(logits, target, pos_weight), {&logits});
  }
  return loss;
}

Tensor dice_loss(const Tensor& logits, const Tensor& target, const DiceOptions& options) {
  const char* op = "dice_loss";
  CRFSEG_CHECK(logits.defined() && logits.dim() >= 2, ShapeError, op, ": expected logits [N, C, ...], got ",
               logits.defined() ? shape_str(logits.shape()) : std::string("an undefined tensor"));
  CRFSEG_CHECK(options.smooth >= 0 && std::isfinite(options.smooth), ValueError, op, ": invalid smooth ",
               options.smooth, " (expected a finite value >= 0)");
  const int64_t C = logits.shape()[1];
  Shape want = logits.shape();
  want.erase(want.begin() + 1);
  CRFSEG_CHECK(target.defined() && target.shape() == want, ShapeError, op, ": expected target of shape ",
               shape_str(want), " for logits ", shape_str(logits.shape()), ", got ",
               target.defined() ? shape_str(target.shape()) : std::string("an undefined tensor"));
  CRFSEG_CHECK(options.include_background || C > 1, ValueError, op,
               ": include_background = false needs at least 2 classes, got C = 1");

  // One channel: the logit is the foreground's, targets are 0/1 (one_hot with
  // two classes, keeping the foreground plane).
  const Tensor onehot = C == 1 ? ops::slice(ops::one_hot(target, 2, logits.dtype(), options.ignore_index), 1, 1, 2)
                               : ops::one_hot(target, C, logits.dtype(), options.ignore_index);
  const Tensor probs = C == 1 ? sigmoid(logits) : softmax(logits, 1);
  // 1 where the target is kept, 0 at ignored positions, as [N, 1, ...].
  const Tensor mask = ops::to_dtype(ops::compare(ops::CompareOp::ne, ops::unsqueeze(target, 1),
                                                 scalar_tensor(static_cast<double>(options.ignore_index),
                                                               {DType::i64, target.device()})),
                                    logits.dtype());
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < logits.dim(); ++d) dims.push_back(d);
  const Tensor kept = probs * mask;
  const Tensor inter = sum(kept * onehot, dims);
  const Tensor total = sum(kept, dims) + ops::sum(onehot, dims);
  Tensor dice = (2.0 * inter + options.smooth) / (total + options.smooth);
  if (!options.include_background) dice = slice(dice, 0, 1, C);
  return 1.0 - mean(dice);
}

}  // namespace crfseg
