// Tensor: a strided view (shape, strides, offset) onto a refcounted Storage.
//
// Copying a Tensor copies a handle: both refer to the same TensorImpl, the
// way torch::Tensor does. View ops (reshape, permute, slice, ...) make a new
// TensorImpl that shares the Storage. Shapes are outermost-first (NCHW).
//
// This layer knows nothing about autograd: it carries an opaque pointer to
// autograd metadata (defined in autograd/autograd_meta.h) and nothing else.
// Raw, non-differentiable ops on tensors live in tensor/ops.h; the
// differentiable ones users normally call live in autograd/functions.h.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

struct CUstream_st;
namespace crfseg::cuda {
using StreamHandle = CUstream_st*;  // as in tensor/cuda_memory.h (cudaStream_t)
}

namespace crfseg {

struct AutogradMeta;  // opaque here; see autograd/autograd_meta.h

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null for plain tensors
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (defined() == false)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Allocates an uninitialised contiguous tensor.
  static Tensor empty(const Shape& shape, TensorOptions options = {});
  // A view of `storage` with the given geometry (no copy, no checks beyond bounds).
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                             const Strides& strides, int64_t offset, DType dtype);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return crfseg::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  TensorOptions options() const { return {dtype(), device()}; }
  bool is_contiguous() const;

  // Raw pointer to the first element (storage base + offset).
  // A Tensor is a handle, so these are const like torch's data_ptr().
  void* raw_data() const;
  // Typed pointer; throws DTypeError if T does not match dtype().
  template <typename T> T* data() const;

  Storage& storage() const { return *impl().storage; }
  const std::shared_ptr<Storage>& storage_ptr() const { return impl().storage; }
  // Bumps the storage's version counter; every in-place op calls this.
  void bump_version() const { impl().storage->bump_version(); }
  uint64_t version() const { return impl().storage->version(); }
  // CUDA: this tensor's memory is also used by work queued on `stream` (not
  // the stream it was allocated on), so once it is freed the caching
  // allocator hands it out again only after that work (torch's
  // Tensor.record_stream; tensor/block_allocator.h). A no-op on the CPU.
  void record_stream(cuda::StreamHandle stream) const;

  // ---- views (share storage; no autograd) ----
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;
  // A new TensorImpl over the same storage and geometry, without autograd metadata.
  Tensor alias() const;

  // ---- conversions (raw ops; see ops::to_device / ops::to_dtype) ----
  Tensor to(Device device) const;  // returns *this when already there
  Tensor to(DType dtype) const;

  // ---- element access (CPU; slow, for tests and small tensors) ----
  double item() const;  // the single element of a one-element tensor, as double
  double at(const std::vector<int64_t>& index) const;
  template <typename T> std::vector<T> to_vector() const;  // row-major copy

  // ---- identity and autograd hook ----
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  TensorImpl* impl_ptr() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_shared() const { return impl_; }
  const std::shared_ptr<AutogradMeta>& autograd_meta() const { return impl().autograd; }
  void set_autograd_meta(std::shared_ptr<AutogradMeta> meta) const { impl().autograd = std::move(meta); }

  std::string str() const;          // "Tensor[2, 3] f32 cpu"
  std::string to_string() const;    // values, for small tensors

 private:
  TensorImpl& impl() const;
  std::shared_ptr<TensorImpl> impl_;
};

// Throws DTypeError unless `t` has dtype `expected`.
void check_dtype(const char* op, const Tensor& t, DType expected);
// Throws DeviceError unless all tensors are on the same device.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
// Throws NotImplementedError unless `t` lives on the CPU.
void check_cpu(const char* op, const Tensor& t);
// Throws ValueError unless `t` is defined.
void check_defined(const char* op, const Tensor& t, const char* name);

template <typename T>
T* Tensor::data() const {
  check_dtype("Tensor::data", *this, dtype_of<T>::value);
  return static_cast<T*>(raw_data());
}

}  // namespace crfseg
