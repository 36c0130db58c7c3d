// View and copy ops. Each moves elements without arithmetic, so its backward
// moves the gradient back the same way:
//   reshape/flatten/unsqueeze/squeeze: dx = reshape(g, x.shape)
//   permute(p):   dx = permute(g, p^-1)
//   slice:        dx = zeros(x.shape) with g written into the sliced window
//   expand:       dx = sum_to(g, x.shape)   (each x element was read many times)
//   contiguous:   dx = g
//   to_dtype:     dx = to_dtype(g, x.dtype)
#include <numeric>

#include "autograd/autograd_meta.h"
#include "autograd/functions.h"
#include "tensor/factory.h"

namespace crfseg {

namespace {

class ReshapeBackward : public Node {
 public:
  ReshapeBackward(Shape in_shape, const char* name) : in_shape_(std::move(in_shape)), name_(name) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::reshape(g, in_shape_)}; }

 private:
  Shape in_shape_;
  const char* name_;
};

class PermuteBackward : public Node {
 public:
  explicit PermuteBackward(std::vector<int64_t> inverse) : inverse_(std::move(inverse)) {}
  const char* name() const override { return "PermuteBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::permute(g, inverse_)}; }

 private:
  std::vector<int64_t> inverse_;
};

class SliceBackward : public Node {
 public:
  SliceBackward(Shape in_shape, int64_t dim, int64_t start, int64_t end, int64_t step)
      : in_shape_(std::move(in_shape)), dim_(dim), start_(start), end_(end), step_(step) {}
  const char* name() const override { return "SliceBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor gx = zeros(in_shape_, g.options());
    ops::copy_(ops::slice(gx, dim_, start_, end_, step_), g);
    return {gx};
  }

 private:
  Shape in_shape_;
  int64_t dim_, start_, end_, step_;
};

class ExpandBackward : public Node {
 public:
  explicit ExpandBackward(Shape in_shape) : in_shape_(std::move(in_shape)) {}
  const char* name() const override { return "ExpandBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::sum_to(g, in_shape_)}; }

 private:
  Shape in_shape_;
};

class IdentityBackward : public Node {
 public:
  const char* name() const override { return "ContiguousBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g}; }
};

class CastBackward : public Node {
 public:
  explicit CastBackward(DType in_dtype) : in_dtype_(in_dtype) {}
  const char* name() const override { return "ToDtypeBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {ops::to_dtype(g, in_dtype_)}; }

 private:
  DType in_dtype_;
};

Tensor reshape_like(const Tensor& x, Tensor y, const char* name) {
  if (needs_grad({&x})) attach(y, std::make_shared<ReshapeBackward>(x.shape(), name), {&x});
  return y;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  return reshape_like(x, ops::reshape(x, shape), "ReshapeBackward");
}
Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  return reshape_like(x, ops::flatten(x, start_dim, end_dim), "FlattenBackward");
}
Tensor unsqueeze(const Tensor& x, int64_t dim) {
  return reshape_like(x, ops::unsqueeze(x, dim), "UnsqueezeBackward");
}
Tensor squeeze(const Tensor& x, int64_t dim) { return reshape_like(x, ops::squeeze(x, dim), "SqueezeBackward"); }

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor y = ops::permute(x, dims);
  if (needs_grad({&x})) {
    std::vector<int64_t> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inverse[normalize_dim(dims[i], x.dim(), "permute")] = static_cast<int64_t>(i);
    attach(y, std::make_shared<PermuteBackward>(inverse), {&x});
  }
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_dim(d0, x.dim(), "transpose")], dims[normalize_dim(d1, x.dim(), "transpose")]);
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor y = ops::slice(x, dim, start, end, step);
  if (needs_grad({&x})) {
    attach(y, std::make_shared<SliceBackward>(x.shape(), dim, start, end, step), {&x});
  }
  return y;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor y = ops::expand(x, shape);
  if (needs_grad({&x})) attach(y, std::make_shared<ExpandBackward>(x.shape()), {&x});
  return y;
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = ops::contiguous(x);
  if (needs_grad({&x})) attach(y, std::make_shared<IdentityBackward>(), {&x});
  return y;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor y = ops::to_dtype(x, dtype);
  if (needs_grad({&x})) {
    CRFSEG_CHECK(is_floating(dtype), AutogradError, "to_dtype: cannot carry gradients into ",
                 dtype_name(dtype), "; detach() first");
    attach(y, std::make_shared<CastBackward>(x.dtype()), {&x});
  }
  return y;
}

}  // namespace crfseg
