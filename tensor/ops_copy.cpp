// Copies, casts, device transfers, concat and stack.
#include <cstring>

#include "tensor/cuda_deferred.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg {
Tensor Tensor::to(Device device) const { return ops::to_device(*this, device); }
Tensor Tensor::to(DType dtype) const { return ops::to_dtype(*this, dtype); }
}  // namespace crfseg

namespace crfseg::ops {

Tensor contiguous(const Tensor& t) {
  check_defined("contiguous", t, "t");
  return t.is_contiguous() ? t : clone(t);
}

Tensor clone(const Tensor& t) {
  check_defined("clone", t, "t");
  Tensor out = Tensor::empty(t.shape(), t.options());
  if (t.device().is_cuda() && t.is_contiguous()) {
    if (t.numel() > 0) {
      cuda::copy_device_to_device(out.raw_data(), t.raw_data(), t.numel() * dtype_size(t.dtype()),
                                  t.device().index);
    }
    return out;
  }
  copy_(out, t);  // strided (on either device)
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  check_defined("to_dtype", t, "t");
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.shape(), {dtype, t.device()});
  copy_(out, t);  // copy_ casts element by element
  return out;
}

namespace {

// A CPU tensor copied to CUDA `device` on the current stream (allocated from
// its pool; the host waits for the copy): to_device's and upload_ahead's.
// before_copy, if any, gets the result allocated and not yet filled.
Tensor host_to_device(const Tensor& t, Device device, const std::function<void(const Tensor&)>& before_copy) {
  const Tensor src = contiguous(t);
  Tensor out = Tensor::empty(t.shape(), {t.dtype(), device});
  if (before_copy) before_copy(out);
  const size_t bytes = t.numel() * dtype_size(t.dtype());
  if (bytes > 0) cuda::copy_to_device(out.raw_data(), src.raw_data(), bytes, device.index);
  return out;
}

}  // namespace

Tensor to_device(const Tensor& t, Device device) {
  check_defined("to_device", t, "t");
  if (t.device() == device) return t;
  if (t.device().is_cpu()) return host_to_device(t, device, {});
  if (!device.is_cpu()) return to_device(to_device(t, Device::cpu()), device);  // between two GPUs: through the host
  const Tensor src = contiguous(t);  // on its own device
  Tensor out = Tensor::empty(t.shape(), {t.dtype(), device});
  const size_t bytes = t.numel() * dtype_size(t.dtype());
  if (bytes > 0) cuda::copy_to_host(out.raw_data(), src.raw_data(), bytes, src.device().index);
  // The host has waited for the current stream: read the checks that ops
  // queued instead of waiting (tensor/cuda_deferred.h).
  cuda::raise_deferred_errors(src.device().index);
  return out;
}

Tensor upload_ahead(const Tensor& t, Device device, const std::function<void(const Tensor&)>& before_copy) {
  check_defined("upload_ahead", t, "t");
  if (!(device.is_cuda() && t.device().is_cpu())) return to_device(t, device);
  Tensor out;
  {
    // Allocated from the upload stream's pool and copied on that stream;
    // copy_to_device waits for that stream alone.
    const cuda::StreamGuard on_upload(cuda::upload_stream(device.index, cuda::UploadLane::batches));
    out = host_to_device(t, device, before_copy);
  }
  out.record_stream(cuda::current_stream(device.index));
  return out;
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  CRFSEG_CHECK(!tensors.empty(), ValueError, "concat: expected at least one tensor, got none");
  const Tensor& first = tensors[0];
  check_defined("concat", first, "tensors[0]");
  const int64_t d = normalize_dim(dim, first.dim(), "concat");
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_defined("concat", t, "tensors[i]");
    CRFSEG_CHECK(t.dtype() == first.dtype(), DTypeError, "concat: tensor ", i, " has dtype ",
                 dtype_name(t.dtype()), ", expected ", dtype_name(first.dtype()));
    check_same_device("concat", first, t);
    bool same_rank = t.dim() == first.dim();
    bool ok = same_rank;
    for (int64_t k = 0; ok && k < t.dim(); ++k) ok = k == d || t.shape()[k] == first.shape()[k];
    CRFSEG_CHECK(ok, ShapeError, "concat: tensor ", i, " has shape ", shape_str(t.shape()),
                 ", expected ", shape_str(first.shape()), " in every dim but ", d);
    shape[d] += t.shape()[d];
  }
  Tensor out = Tensor::empty(shape, first.options());
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    const int64_t len = t.shape()[d];
    if (len > 0) copy_(slice(out, d, start, start + len), t);
    start += len;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  CRFSEG_CHECK(!tensors.empty(), ValueError, "stack: expected at least one tensor, got none");
  check_defined("stack", tensors[0], "tensors[0]");
  const int64_t d = normalize_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    check_defined("stack", tensors[i], "tensors[i]");
    CRFSEG_CHECK(tensors[i].shape() == tensors[0].shape(), ShapeError, "stack: tensor ", i, " has shape ",
                 shape_str(tensors[i].shape()), ", expected ", shape_str(tensors[0].shape()));
    expanded.push_back(unsqueeze(tensors[i], d));
  }
  return concat(expanded, d);
}

}  // namespace crfseg::ops
