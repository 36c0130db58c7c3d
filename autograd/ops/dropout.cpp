// dropout: y = x * mask, with mask = ops::dropout_mask(x, p, gen) holding 0
// (dropped, probability p) or 1 / (1 - p) (kept), so E[y] = x.
//   dy/dx = diag(mask), hence dx = g * mask: the same elements are dropped
//   and the same scale applied on the way back.
// When !training or p == 0 dropout is the identity and returns x itself
// (no mask, no node, no draws from gen), as torch does. p must lie in
// [0, 1]; p == 1 drops everything (y = 0 * x).
// Only the mask is saved, and only when x needs a gradient.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class DropoutBackward : public Node {
 public:
  explicit DropoutBackward(const Tensor& mask) : mask_(mask) {}
  const char* name() const override { return "DropoutBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::mul(g, mask_.unpack(name()))}; }
  void release_saved() override { mask_.release(); }

 private:
  SavedTensor mask_;
};

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", x, "x");
  CRFSEG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: expected a drop probability p in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  const Tensor mask = ops::dropout_mask(x, p, gen);
  Tensor y = ops::mul(x, mask);
  if (needs_grad({&x})) attach(y, std::make_shared<DropoutBackward>(mask), {&x});
  return y;
}

}  // namespace crfseg
