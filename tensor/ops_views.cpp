// View ops: new geometry over the same Storage, no data copied
// (reshape copies only when the strides make a view impossible).
#include <algorithm>

#include "tensor/ops.h"

namespace crfseg::ops {

Tensor reshape(const Tensor& t, Shape shape) {
  check_defined("reshape", t, "t");
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      CRFSEG_CHECK(infer_at < 0, ShapeError, "reshape: only one dim may be -1, got ", shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      CRFSEG_CHECK(shape[i] >= 0, ShapeError, "reshape: invalid size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    CRFSEG_CHECK(known != 0 && t.numel() % known == 0, ShapeError, "reshape: cannot infer -1 in ",
                 shape_str(shape), " for ", t.numel(), " elements");
    shape[infer_at] = t.numel() / known;
  }
  CRFSEG_CHECK(numel(shape) == t.numel(), ShapeError, "reshape: shape ", shape_str(shape), " has ",
               numel(shape), " elements, input ", shape_str(t.shape()), " has ", t.numel());
  const Tensor src = contiguous(t);
  return src.as_strided(shape, contiguous_strides(shape), src.offset());
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  check_defined("permute", t, "t");
  CRFSEG_CHECK(static_cast<int64_t>(dims.size()) == t.dim(), ShapeError, "permute: expected ", t.dim(),
               " dims, got ", shape_str(dims));
  Shape shape(dims.size());
  Strides strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = normalize_dim(dims[i], t.dim(), "permute");
    CRFSEG_CHECK(!seen[d], ShapeError, "permute: dim ", d, " repeated in ", shape_str(dims));
    seen[d] = true;
    shape[i] = t.shape()[d];
    strides[i] = t.strides()[d];
  }
  return t.as_strided(shape, strides, t.offset());
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  check_defined("transpose", t, "t");
  std::vector<int64_t> dims(t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) dims[i] = i;
  std::swap(dims[normalize_dim(d0, t.dim(), "transpose")], dims[normalize_dim(d1, t.dim(), "transpose")]);
  return permute(t, dims);
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  check_defined("slice", t, "t");
  const int64_t d = normalize_dim(dim, t.dim(), "slice");
  const int64_t size = t.shape()[d];
  CRFSEG_CHECK(step > 0, ValueError, "slice: expected a positive step, got ", step);
  // Python semantics: negative bounds count from the end; out-of-range bounds clamp.
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = std::clamp<int64_t>(start, 0, size);
  end = std::clamp<int64_t>(end, start, size);
  Shape shape = t.shape();
  Strides strides = t.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] = t.strides()[d] * step;
  return t.as_strided(shape, strides, t.offset() + start * t.strides()[d]);
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  check_defined("unsqueeze", t, "t");
  const int64_t d = normalize_dim(dim, t.dim() + 1, "unsqueeze");
  Shape shape = t.shape();
  Strides strides = t.strides();
  const int64_t stride = d < t.dim() ? t.strides()[d] * t.shape()[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return t.as_strided(shape, strides, t.offset());
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  check_defined("squeeze", t, "t");
  const int64_t d = normalize_dim(dim, t.dim(), "squeeze");
  CRFSEG_CHECK(t.shape()[d] == 1, ShapeError, "squeeze: dim ", d, " of ", shape_str(t.shape()),
               " has size ", t.shape()[d], ", expected 1");
  Shape shape = t.shape();
  Strides strides = t.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return t.as_strided(shape, strides, t.offset());
}

Tensor expand(const Tensor& t, const Shape& shape) {
  check_defined("expand", t, "t");
  CRFSEG_CHECK(broadcast_shapes(t.shape(), shape, "expand") == shape, ShapeError, "expand: ",
               shape_str(t.shape()), " cannot be expanded to ", shape_str(shape));
  return t.as_strided(shape, broadcast_strides(t.shape(), t.strides(), shape), t.offset());
}

Tensor flatten(const Tensor& t, int64_t start_dim, int64_t end_dim) {
  check_defined("flatten", t, "t");
  if (t.dim() == 0) return reshape(t, {1});
  const int64_t s = normalize_dim(start_dim, t.dim(), "flatten");
  const int64_t e = normalize_dim(end_dim, t.dim(), "flatten");
  CRFSEG_CHECK(s <= e, ShapeError, "flatten: start_dim ", s, " is after end_dim ", e);
  Shape shape(t.shape().begin(), t.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= t.shape()[d];
  shape.push_back(merged);
  shape.insert(shape.end(), t.shape().begin() + e + 1, t.shape().end());
  return reshape(t, shape);
}

}  // namespace crfseg::ops
