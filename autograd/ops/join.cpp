// concat and stack. Output slice i along `dim` is input i, so
//   concat: dx_i = g[..., offset_i : offset_i + len_i, ...]   (a slice along dim)
//   stack:  dx_i = g.select(dim, i)                           (a slice, then squeeze)
#include "autograd/autograd_meta.h"
#include "autograd/functions.h"

namespace crfseg {

namespace {

class ConcatBackward : public Node {
 public:
  ConcatBackward(int64_t dim, std::vector<int64_t> lengths, bool squeeze)
      : dim_(dim), lengths_(std::move(lengths)), squeeze_(squeeze) {}
  const char* name() const override { return squeeze_ ? "StackBackward" : "ConcatBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    std::vector<Tensor> grads;
    int64_t start = 0;
    for (int64_t len : lengths_) {
      Tensor part = ops::slice(g, dim_, start, start + len);
      grads.push_back(squeeze_ ? ops::squeeze(part, dim_) : part);
      start += len;
    }
    return grads;
  }

 private:
  int64_t dim_;
  std::vector<int64_t> lengths_;
  bool squeeze_;
};

bool any_needs_grad(const std::vector<Tensor>& xs) {
  for (const Tensor& x : xs) {
    if (needs_grad({&x})) return true;
  }
  return false;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = ops::concat(xs, dim);
  if (any_needs_grad(xs)) {
    const int64_t d = normalize_dim(dim, xs[0].dim(), "concat");
    std::vector<int64_t> lengths;
    for (const Tensor& x : xs) lengths.push_back(x.shape()[d]);
    attach(y, std::make_shared<ConcatBackward>(d, lengths, false), xs);
  }
  return y;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = ops::stack(xs, dim);
  if (any_needs_grad(xs)) {
    const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
    attach(y, std::make_shared<ConcatBackward>(d, std::vector<int64_t>(xs.size(), 1), true), xs);
  }
  return y;
}

}  // namespace crfseg
