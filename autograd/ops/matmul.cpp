// matmul: C = A B with A [..., M, K], B [..., K, N] (batch dims broadcast).
//   dA = dC B^T   (then summed over batch dims A was broadcast along)
//   dB = A^T dC
// Derivation: C_ij = sum_k A_ik B_kj, so dL/dA_ik = sum_j dC_ij B_kj.
// The transposes are views, which GEMM consumes as transpose flags.
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class MatmulBackward : public Node {
 public:
  MatmulBackward(const Tensor& a, const Tensor& b) : a_shape_(a.shape()), b_shape_(b.shape()) {
    if (requires_grad(b)) a_ = SavedTensor(a);
    if (requires_grad(a)) b_ = SavedTensor(b);
  }
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor ga, gb;
    if (next_edges[0].node) ga = ops::sum_to(ops::matmul(g, ops::transpose(b_.unpack(name()), -1, -2)), a_shape_);
    if (next_edges[1].node) gb = ops::sum_to(ops::matmul(ops::transpose(a_.unpack(name()), -1, -2), g), b_shape_);
    return {ga, gb};
  }
  void release_saved() override {
    a_.release();
    b_.release();
  }

 private:
  Shape a_shape_, b_shape_;
  SavedTensor a_, b_;
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = ops::matmul(a, b);
  if (needs_grad({&a, &b})) attach(out, std::make_shared<MatmulBackward>(a, b), {&a, &b});
  return out;
}

}  // namespace crfseg
