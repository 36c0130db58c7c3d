// CudaPermutohedralFilter: the permutohedral-lattice Gaussian filter of
// crf/permutohedral.h, run on a CUDA device.
//
// The lattice (embedding, vertex keys sorted or hashed, neighbour table,
// splat lists) is built once per image on the host by PermutohedralLattice;
// this class uploads its index and weight tables to the GPU once, and each
// filter() call then runs splat, d + 1 blur passes and slice as CUDA
// kernels (kernels/cuda/permutohedral.cu) over values [N x C] in device memory. It
// computes the same linear operator as PermutohedralLattice::apply, with
// the same summation order (gathers, no atomics: deterministic), so the two
// agree to floating-point rounding; transpose = true is the exact adjoint.
//
// Device memory: the tables take about N (d + 1) 16 bytes + M (d + 1) 8 bytes
// (~8 MB for a 256x256 RGB bilateral lattice); each filter() call takes two
// (M + 1) x C scratch buffers from the stream-ordered allocator
// (cudaMallocAsync), so concurrent calls on different streams are safe.
//
// When crfseg is built without CUDA the class still compiles; its
// constructor throws DeviceError ("... built without CUDA"), so callers need
// no #ifdefs. Matches the CPU filter on an H200 (2.5e-7 relative in f32,
// 4e-16 in f64). Test: tests/cuda/test_cuda_permutohedral.cpp.
#pragma once

#include <cstdint>
#include <memory>

#include "crf/permutohedral.h"

// cudaStream_t is `CUstream_st*`; declaring the struct keeps
// <cuda_runtime.h> out of this header, which no-CUDA builds also include.
struct CUstream_st;

namespace crfseg::crf {

using CudaStream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

class CudaPermutohedralFilter {
 public:
  // Uploads `lattice`'s tables to cuda:`device` (synchronously); the lattice
  // need not outlive this object. Throws DeviceError when crfseg was built
  // without CUDA, or `device` is not a valid device index (including when no
  // device is present), OutOfMemoryError / CudaError from the runtime.
  CudaPermutohedralFilter(const PermutohedralLattice& lattice, int device);
  ~CudaPermutohedralFilter();
  CudaPermutohedralFilter(CudaPermutohedralFilter&&) noexcept;
  CudaPermutohedralFilter& operator=(CudaPermutohedralFilter&&) noexcept;
  CudaPermutohedralFilter(const CudaPermutohedralFilter&) = delete;
  CudaPermutohedralFilter& operator=(const CudaPermutohedralFilter&) = delete;

  int64_t num_points() const { return num_points_; }
  int64_t feature_dim() const { return dim_; }
  int64_t num_lattice_points() const { return num_lattice_; }
  int device() const { return device_; }

  // out = K in (transpose = false) or K^T in (transpose = true), with K the
  // lattice's operator. d_in and d_out are device pointers on device() to
  // [num_points x channels] row-major values, and must not alias. The call
  // is asynchronous on `stream` (which must belong to device()); it makes
  // device() the current device. Throws ValueError for channels < 1 or null
  // pointers, CudaError when a launch fails.
  void filter(const float* d_in, float* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const;
  void filter(const double* d_in, double* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const;

  // Convenience for tests and one-off use: host in/out [num_points x
  // channels]; copies to the device, filters on the default stream, copies
  // back and waits. Same errors as filter().
  void filter_host(const float* in, float* out, int64_t channels, bool transpose = false) const;
  void filter_host(const double* in, double* out, int64_t channels, bool transpose = false) const;

 private:
  template <typename T>
  void run(const T* d_in, T* d_out, int64_t channels, bool transpose, CudaStream stream) const;
  template <typename T>
  void run_host(const T* in, T* out, int64_t channels, bool transpose) const;

  struct DeviceTables;  // the uploaded tables (RAII device buffers), defined in the .cpp
  std::unique_ptr<DeviceTables> tables_;
  int64_t num_points_ = 0, dim_ = 0, num_lattice_ = 0;
  double alpha_ = 1.0;  // the lattice's slice_scale()
  int device_ = 0;
};

}  // namespace crfseg::crf
