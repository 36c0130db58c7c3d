// softmax, log_softmax and cross_entropy.
//   softmax:     y = softmax(x),      dx = y * (g - sum_dim(g * y))
//   log_softmax: y = log_softmax(x),  dx = g - softmax(x) * sum_dim(g) = g - exp(y) * sum_dim(g)
//   cross_entropy (mean, weights w, ignore index; W = sum of w[t] over kept positions):
//     dlogits = g * w[t] / W * (softmax(logits) - onehot(t)),  0 at ignored positions.
// Targets and weights are constants: they receive no gradient.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class SoftmaxBackward : public Node {
 public:
  SoftmaxBackward(const Tensor& y, int64_t dim, bool log) : y_(y), dim_(dim), log_(log) {}
  const char* name() const override { return log_ ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {ops::softmax_backward(g, y_.unpack(name()), dim_, log_)};
  }
  void release_saved() override { y_.release(); }

 private:
  SavedTensor y_;
  int64_t dim_;
  bool log_;
};

class CrossEntropyBackward : public Node {
 public:
  CrossEntropyBackward(ops::CrossEntropyForward fwd, const Tensor& target, const Tensor& weight, int64_t ignore_index)
      : log_probs_(fwd.log_probs), weight_sum_(fwd.weight_sum), sums_(fwd.sums), target_(target), weight_(weight),
        ignore_index_(ignore_index) {}
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    ops::CrossEntropyForward fwd{Tensor(), log_probs_.unpack(name()), weight_sum_, sums_};
    return {ops::cross_entropy_backward(g, fwd, target_.unpack(name()), weight_.unpack(name()), ignore_index_)};
  }
  void release_saved() override {
    log_probs_.release();
    sums_ = Tensor();
    target_.release();
    weight_.release();
  }

 private:
  SavedTensor log_probs_;
  double weight_sum_;
  Tensor sums_;  // CUDA: the forward's device sums (the weight sum is read there); an op's output, not an input
  SavedTensor target_, weight_;
  int64_t ignore_index_;
};

Tensor softmax_with_grad(const Tensor& x, int64_t dim, bool log) {
  Tensor y = log ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
  if (needs_grad({&x})) attach(y, std::make_shared<SoftmaxBackward>(y, dim, log), {&x});
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_with_grad(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_with_grad(x, dim, true); }

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options) {
  CRFSEG_CHECK(!requires_grad(options.weight), AutogradError,
               "cross_entropy: class weights are constants and must not require grad");
  ops::CrossEntropyForward fwd = ops::cross_entropy(logits, target, options.weight, options.ignore_index);
  Tensor loss = fwd.loss;
  if (needs_grad({&logits})) {
    attach(loss, std::make_shared<CrossEntropyBackward>(fwd, target, options.weight, options.ignore_index),
           {&logits});
  }
  return loss;
}

}  // namespace crfseg
