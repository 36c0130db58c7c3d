// Reductions over any dims: sum, mean, max (with index), argmax, sum_to,
// and max's backward scatter.
#include <algorithm>

#include "kernels/cpu/reduce.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/reduce.h"
#endif

namespace crfseg::ops {

namespace kc = kernels::cpu;

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(normalize_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  CRFSEG_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), ShapeError, op, ": dim repeated in ",
               shape_str(dims));
  if (ndim == 0) out.clear();  // a 0-dim tensor has nothing to reduce
  return out;
}

namespace {

// Output shape of a reduction: reduced dims removed, or kept as 1.
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    const bool reduced = std::binary_search(dims.begin(), dims.end(), static_cast<int64_t>(d));
    if (!reduced) out.push_back(in[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

#ifdef CRFSEG_WITH_CUDA
// The CUDA reductions work on rows: t permuted so the kept dims come first and
// the (sorted) reduced dims last, made contiguous. Row r is then output r,
// and a position inside a row is row-major over the reduced dims, as the
// CPU's max index is.
std::vector<int64_t> kept_then_reduced(int64_t ndim, const std::vector<int64_t>& dims) {
  std::vector<int64_t> order;
  for (int64_t d = 0; d < ndim; ++d) {
    if (!std::binary_search(dims.begin(), dims.end(), d)) order.push_back(d);
  }
  order.insert(order.end(), dims.begin(), dims.end());
  return order;
}

Tensor reduced_last(const Tensor& t, const std::vector<int64_t>& dims) {
  return contiguous(permute(t, kept_then_reduced(t.dim(), dims)));
}
#endif

Tensor sum_scaled(const char* op, const Tensor& t, std::vector<int64_t> dims, bool keepdim, bool average) {
  check_defined(op, t, "t");
  dims = normalize_dims(dims, t.dim(), op);
  const kc::ReducePlan plan = kc::make_reduce_plan(t.shape(), t.strides(), dims);
  Tensor out = Tensor::empty(reduced_shape(t.shape(), dims, keepdim), t.options());
  const double scale = average ? 1.0 / static_cast<double>(plan.block()) : 1.0;
  if (average) {
    CRFSEG_CHECK(plan.block() > 0, ShapeError, op, ": mean over an empty set of elements in ",
                 shape_str(t.shape()));
  }
#ifdef CRFSEG_WITH_CUDA
  if (t.device().is_cuda()) {
    const Tensor rows = reduced_last(t, dims);
    // A few long rows are summed in chunks, their partial sums kept here
    // (from the caching allocator, freed in stream order).
    const int64_t partials = kernels::cuda::sum_rows_scratch(plan.outputs(), plan.block());
    const Tensor scratch = partials > 0 ? Tensor::empty({partials}, {DType::f64, t.device()}) : Tensor();
    dispatch_float(t.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::sum_rows<T>(rows.data<T>(), plan.outputs(), plan.block(), scale, out.data<T>(),
                                 scratch.defined() ? scratch.data<double>() : nullptr, detail::stream_of(t));
    });
    return out;
  }
#endif
  check_cpu(op, t);
  dispatch_float(t.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    kc::sum_reduce(plan, t.data<T>(), out.data<T>(), scale);
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& t, std::vector<int64_t> dims, bool keepdim) {
  return sum_scaled("sum", t, std::move(dims), keepdim, false);
}

Tensor mean(const Tensor& t, std::vector<int64_t> dims, bool keepdim) {
  return sum_scaled("mean", t, std::move(dims), keepdim, true);
}

std::pair<Tensor, Tensor> max_with_index(const Tensor& t, std::vector<int64_t> dims, bool keepdim) {
  check_defined("max", t, "t");
  dims = normalize_dims(dims, t.dim(), "max");
  const kc::ReducePlan plan = kc::make_reduce_plan(t.shape(), t.strides(), dims);
  CRFSEG_CHECK(plan.block() > 0, ShapeError, "max: reduction over zero elements in ", shape_str(t.shape()));
  const Shape shape = reduced_shape(t.shape(), dims, keepdim);
  Tensor values = Tensor::empty(shape, t.options());
  Tensor index = Tensor::empty(shape, {DType::i64, t.device()});
#ifdef CRFSEG_WITH_CUDA
  if (t.device().is_cuda()) {
    const Tensor rows = reduced_last(t, dims);
    dispatch_float(t.dtype(), "max", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::max_rows<T>(rows.data<T>(), plan.outputs(), plan.block(), values.data<T>(),
                                 index.data<int64_t>(), detail::stream_of(t));
    });
    return {values, index};
  }
#endif
  check_cpu("max", t);
  dispatch_float(t.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    kc::max_reduce(plan, t.data<T>(), values.data<T>(), index.data<int64_t>());
  });
  return {values, index};
}

Tensor max(const Tensor& t, std::vector<int64_t> dims, bool keepdim) {
  return max_with_index(t, std::move(dims), keepdim).first;
}

Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) {
  check_defined("argmax", t, "t");
  return max_with_index(t, {normalize_dim(dim, t.dim(), "argmax")}, keepdim).second;
}

Tensor max_backward(const Tensor& grad, const Tensor& index, const Shape& input_shape,
                    std::vector<int64_t> dims, bool keepdim) {
  dims = normalize_dims(dims, static_cast<int64_t>(input_shape.size()), "max_backward");
  check_same_device("max_backward", grad, index);
  const Tensor g = contiguous(grad), idx = contiguous(index);
  CRFSEG_CHECK(g.shape() == reduced_shape(input_shape, dims, keepdim) && idx.shape() == g.shape(), ShapeError,
               "max_backward: grad ", shape_str(g.shape()), " and index ", shape_str(idx.shape()),
               " do not match the reduction of ", shape_str(input_shape));
#ifdef CRFSEG_WITH_CUDA
  if (grad.device().is_cuda()) {
    // Scatter into the rows layout of reduced_last, then permute back.
    const std::vector<int64_t> order = kept_then_reduced(static_cast<int64_t>(input_shape.size()), dims);
    Shape rows_shape;
    for (int64_t d : order) rows_shape.push_back(input_shape[static_cast<size_t>(d)]);
    std::vector<int64_t> inverse(order.size());
    for (size_t i = 0; i < order.size(); ++i) inverse[static_cast<size_t>(order[i])] = static_cast<int64_t>(i);
    Tensor rows = zeros(rows_shape, grad.options());
    const int64_t nrows = g.numel(), cols = nrows == 0 ? 0 : numel(input_shape) / nrows;
    dispatch_float(grad.dtype(), "max_backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::cuda::scatter_rows<T>(g.data<T>(), idx.data<int64_t>(), nrows, cols, rows.data<T>(),
                                     detail::stream_of(grad));
    });
    return contiguous(permute(rows, inverse));
  }
#endif
  check_cpu("max_backward", grad);
  Tensor out = zeros(input_shape, grad.options());
  const kc::ReducePlan plan = kc::make_reduce_plan(out.shape(), out.strides(), dims);
  dispatch_float(grad.dtype(), "max_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pg = g.data<T>();
    const int64_t* pi = idx.data<int64_t>();
    T* po = out.data<T>();
    const int64_t n = plan.outputs();
    for (int64_t o = 0; o < n; ++o) {
      // Position pi[o] inside the block, decomposed over the reduced dims.
      int64_t offset = plan.base_offset(o), rest = pi[o];
      for (int64_t d = static_cast<int64_t>(plan.reduced_shape.size()) - 1; d >= 0; --d) {
        offset += (rest % plan.reduced_shape[d]) * plan.reduced_strides[d];
        rest /= plan.reduced_shape[d];
      }
      po[offset] += pg[o];
    }
  });
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  check_defined("sum_to", t, "t");
  if (t.shape() == shape) return t;
  CRFSEG_CHECK(broadcast_shapes(shape, t.shape(), "sum_to") == t.shape(), ShapeError, "sum_to: ",
               shape_str(shape), " does not broadcast to ", shape_str(t.shape()));
  const int64_t lead = t.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && t.shape()[d] != 1)) dims.push_back(d);
  }
  if (dims.empty()) return reshape(t, shape);
  return reshape(sum(t, dims, true), shape);
}

}  // namespace crfseg::ops
