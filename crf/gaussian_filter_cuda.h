// Gaussian filters on a CUDA device, the GPU side of crf/gaussian_filter.h:
//   - CudaGaussianFilter: the interface the composed mean-field
//     (crf/mean_field_composed.h) filters through, out = K in or K^T in over
//     device values [num_points x C];
//   - CudaDenseGaussianFilter (here): the exact O(N^2) filter, the dense
//     mode's, from DenseGaussianFilters' features, one or a batch's stacked
//     block-diagonally (kernels/cuda/dense_gaussian.cu);
//   - CudaPermutohedralFilter (crf/permutohedral_cuda.h): the lattice's.
// When crfseg is built without CUDA these still compile; constructing one
// throws DeviceError ("... built without CUDA"), so callers need no #ifdefs.
#pragma once

#include <cstdint>
#include <vector>

#include "crf/dense_filter.h"
#include "crf/device_buffer.h"

// cudaStream_t is `CUstream_st*`; declaring the struct keeps
// <cuda_runtime.h> out of this header, which no-CUDA builds also include.
struct CUstream_st;

namespace crfseg::crf {

using CudaStream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

class CudaGaussianFilter {
 public:
  virtual ~CudaGaussianFilter() = default;
  virtual int64_t num_points() const = 0;
  virtual int64_t feature_dim() const = 0;
  virtual int device() const = 0;

  // out = K in (transpose = false) or K^T in (transpose = true). d_in and
  // d_out are device pointers on device() to [num_points x channels]
  // row-major values, and must not alias. Asynchronous on `stream` (which
  // must belong to device()); makes device() the current device. Throws
  // ValueError for channels < 1, null or aliasing pointers, CudaError when
  // a launch fails.
  virtual void filter(const float* d_in, float* d_out, int64_t channels, bool transpose = false,
                      CudaStream stream = nullptr) const = 0;
  virtual void filter(const double* d_in, double* d_out, int64_t channels, bool transpose = false,
                      CudaStream stream = nullptr) const = 0;
  // The filter's device tables are read by work on `stream` too
  // (Tensor::record_stream's rule): once freed, they are reused only after
  // that work. A no-op for the stream they were allocated on. Filters are
  // cached across forwards (crf/mean_field_composed.cpp), so a filter made
  // under one stream can be evicted while another stream still reads it.
  virtual void record_stream(CudaStream stream) const = 0;

  // For tests and one-off use: host in / out [num_points x channels];
  // copies to the device, filters on its current stream, copies back and
  // waits. Same errors as filter().
  void filter_host(const float* in, float* out, int64_t channels, bool transpose = false) const;
  void filter_host(const double* in, double* out, int64_t channels, bool transpose = false) const;

 protected:
  // Throws DeviceError when crfseg was built without CUDA or `device` is
  // not a device index (no device present included); `op` names the caller.
  static void check_device(const char* op, int device);
  // filter()'s argument checks.
  static void check_filter_args(const char* op, const void* d_in, const void* d_out, int64_t channels);

 private:
  template <typename T>
  void run_host(const T* in, T* out, int64_t channels, bool transpose) const;
};

class CudaDenseGaussianFilter final : public CudaGaussianFilter {
 public:
  // Uploads the filter's features to cuda:`device` (synchronously). Throws
  // DeviceError as check_device, OutOfMemoryError / CudaError from the runtime.
  CudaDenseGaussianFilter(const DenseGaussianFilter& host, int device);
  // The block-diagonal stack of `blocks` (as StackedFilter: block b filters
  // its own rows). Throws ValueError for no blocks, a null one, or blocks
  // of different sizes or dimensions (the kernel takes equal blocks: a
  // batch's images).
  CudaDenseGaussianFilter(const std::vector<const DenseGaussianFilter*>& blocks, int device);

  int64_t num_points() const override { return num_points_; }
  int64_t feature_dim() const override { return dim_; }
  int device() const override { return device_; }
  // The kernel is symmetric: transpose changes nothing.
  void filter(const float* d_in, float* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const override;
  void filter(const double* d_in, double* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const override;
  void record_stream(CudaStream stream) const override { features_.record_stream(stream); }
  using CudaGaussianFilter::filter_host;

 private:
  template <typename T>
  void run(const T* d_in, T* d_out, int64_t channels, CudaStream stream) const;

  DeviceBuffer features_;  // [N x d] double
  int64_t num_points_ = 0, dim_ = 0, block_ = 0;  // block_: the rows of one block
  int device_ = 0;
};

}  // namespace crfseg::crf
