// Tensor core: construction, geometry queries, views, element access, printing.
#include "tensor/tensor.h"

#include <cstring>
#include <sstream>

#include "kernels/cpu/strided_loop.h"
#include "tensor/cuda_memory.h"
#include "tensor/dispatch.h"

namespace crfseg {

TensorImpl& Tensor::impl() const {
  CRFSEG_CHECK(impl_ != nullptr, ValueError, "Tensor: operation on an undefined tensor");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, TensorOptions options) {
  for (int64_t s : shape) {
    CRFSEG_CHECK(s >= 0, ShapeError, "empty: expected non-negative sizes, got ", shape_str(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(crfseg::numel(shape) * dtype_size(options.dtype), options.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = options.dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                            const Strides& strides, int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "Tensor::size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "Tensor::stride")]; }

bool Tensor::is_contiguous() const {
  // An empty tensor has no element out of place, whatever its strides (as in
  // PyTorch); without this, [2, 0] with contiguous_strides() was rejected
  // (found by fuzz/fuzz_safetensors).
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] != 1 && strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void Tensor::record_stream(cuda::StreamHandle stream) const {
  if (device().is_cuda()) cuda::record_stream(storage().data(), device().index, stream);
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * dtype_size(dtype());
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  CRFSEG_CHECK(shape.size() == strides.size(), ShapeError, "as_strided: shape ", shape_str(shape),
               " and strides ", shape_str(strides), " differ in length");
  // Bounds: the furthest element reachable must lie inside the storage.
  int64_t lo = offset, hi = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) { lo = hi = offset; break; }
    const int64_t span = (shape[d] - 1) * strides[d];
    (span < 0 ? lo : hi) += span;
  }
  const int64_t capacity = static_cast<int64_t>(storage().bytes() / dtype_size(dtype()));
  CRFSEG_CHECK(lo >= 0 && (crfseg::numel(shape) == 0 || hi < capacity), ShapeError,
               "as_strided: view ", shape_str(shape), " strides ", shape_str(strides), " offset ", offset,
               " reaches elements [", lo, ", ", hi, "] outside a storage of ", capacity, " elements");
  return from_storage(impl().storage, shape, strides, offset, dtype());
}

Tensor Tensor::alias() const { return from_storage(impl().storage, shape(), strides(), offset(), dtype()); }

template <typename T>
std::vector<T> Tensor::to_vector() const {
  check_cpu("to_vector", *this);
  std::vector<T> out(static_cast<size_t>(numel()));
  if (out.empty()) return out;
  const Strides out_strides = contiguous_strides(shape());
  dispatch_all(dtype(), "to_vector", [&](auto tag) {
    using S = decltype(tag);
    const S* src = static_cast<const S*>(raw_data());
    T* dst = out.data();
    kernels::cpu::strided_rows<2>(shape(), {out_strides.data(), strides().data()},
                                  [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
                                    for (int64_t i = 0; i < n; ++i) {
                                      dst[off[0] + i * st[0]] = convert_element<T>(src[off[1] + i * st[1]]);
                                    }
                                  });
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::at(const std::vector<int64_t>& index) const {
  check_cpu("at", *this);
  CRFSEG_CHECK(static_cast<int64_t>(index.size()) == dim(), ShapeError, "at: expected ", dim(),
               " indices, got ", index.size());
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    CRFSEG_CHECK(index[d] >= 0 && index[d] < shape()[d], ShapeError, "at: index ", shape_str(index),
                 " out of range for shape ", shape_str(shape()));
    off += index[d] * strides()[d];
  }
  return dispatch_all(dtype(), "at", [&](auto tag) {
    using T = decltype(tag);
    return static_cast<double>(static_cast<const T*>(raw_data())[off]);
  });
}

double Tensor::item() const {
  CRFSEG_CHECK(numel() == 1, ShapeError, "item: expected a tensor with one element, got shape ",
               shape_str(shape()));
  if (device().is_cuda()) return to(Device::cpu()).item();  // one element back to the host (synchronises)
  return at(std::vector<int64_t>(dim(), 0));
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return "Tensor" + shape_str(shape()) + " " + dtype_name(dtype()) + " " + device().str();
}

std::string Tensor::to_string() const {
  std::ostringstream out;
  out << str();
  if (!defined() || !device().is_cpu()) return out.str();
  const std::vector<double> values = to_vector<double>();
  out << " {";
  const size_t shown = std::min<size_t>(values.size(), 64);
  for (size_t i = 0; i < shown; ++i) out << (i ? ", " : "") << values[i];
  if (shown < values.size()) out << ", ...";
  out << "}";
  return out.str();
}

void check_dtype(const char* op, const Tensor& t, DType expected) {
  CRFSEG_CHECK(t.dtype() == expected, DTypeError, op, ": expected dtype ", dtype_name(expected), ", got ",
               dtype_name(t.dtype()));
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  CRFSEG_CHECK(a.device() == b.device(), DeviceError, op, ": expected tensors on the same device, got ",
               a.device().str(), " and ", b.device().str());
}

void check_cpu(const char* op, const Tensor& t) {
  CRFSEG_CHECK(t.device().is_cpu(), NotImplementedError, op, ": no kernel for device ", t.device().str(),
               " yet (CPU only)");
}

void check_defined(const char* op, const Tensor& t, const char* name) {
  CRFSEG_CHECK(t.defined(), ValueError, op, ": argument '", name, "' is an undefined tensor");
}

}  // namespace crfseg
