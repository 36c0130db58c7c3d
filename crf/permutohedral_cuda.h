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
// (M + 1) x C scratch buffers from the caching allocator on its stream, so
// concurrent calls on different streams are safe.
//
// When crfseg is built without CUDA the class still compiles; its
// constructor throws DeviceError ("... built without CUDA"), so callers need
// no #ifdefs. Matches the CPU filter on an H200 (2.5e-7 relative in f32,
// 4e-16 in f64). Test: tests/cuda/test_cuda_permutohedral.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "crf/gaussian_filter_cuda.h"
#include "crf/permutohedral.h"
#include "tensor/tensor.h"

namespace crfseg::crf {

// The tables the CUDA kernels read (layouts in crf/permutohedral.h), on the
// host, for one lattice or several stacked: lattice b's points are rows
// [sum of the previous N, + N_b) of the values and its lattice points rows
// [sum of the previous M, + M_b) of the buffers, every index shifted by
// those offsets and every absent neighbour pointing at the one zero row M
// (the total). One filter over the stack is then the block-diagonal
// operator of the lattices: a CRF batch's bilateral filters in one launch
// per step instead of one per image. The lattices must share d (and so the
// slice scale).
// The vectors come from the CPU cache (tensor/cpu_allocator.h): a batch's
// tables are hundreds of MB each step, and fresh pages took the CPU
// machine 1 s to fault in for 16 noisy 256^2 images.
struct LatticeTables {
  CpuVector<int64_t> splat_offsets;  // [M + 1]
  CpuVector<int32_t> splat_points;   // [N (d + 1)]
  CpuVector<float> splat_weights;    // [N (d + 1)]
  CpuVector<int32_t> neighbours;     // [(d + 1) x M x 2]
  CpuVector<int32_t> vertices;       // [N x (d + 1)]
  CpuVector<float> barycentric;      // [N x (d + 1)]
  int64_t num_points = 0, num_lattice = 0, dim = 0;
  double alpha = 1.0;  // slice_scale()
};
// Throws ValueError for no lattices or different dims, NotImplementedError
// when the stack's indices do not fit 32 bits.
LatticeTables lattice_tables(const std::vector<const PermutohedralLattice*>& lattices);

// The GPU lattice build's host twin (kernels/lattice_rules.h has the
// algorithm): the stacked tables of `images` images of `points` points each
// (features [images points x dim], each image's rows consecutive, divided
// by their thetas) from the same steps, run on the CPU, so that tests check
// the GPU build's algorithm on machines without a GPU. The filter over them
// is that of lattice_tables over the images' PermutohedralLattices, bit for
// bit (the lattice points are numbered in code order instead, which changes
// no sum). nullopt where the batch build does not apply: dim outside
// [2, 5], or codes (with the image numbers) over 64 bits. Throws ValueError
// for sizes that disagree, 2^31 entries or more, or features out of the
// lattice's range (NaN, infinite, or not divided by theta).
std::optional<LatticeTables> lattice_tables_sorted(const std::vector<double>& features, int64_t images,
                                                   int64_t points, int64_t dim);

// The CUDA kernels' arithmetic on the host (kernels/cuda/permutohedral.cu,
// step for step): out = alpha S^T B S in over `t`. For tests of the tables
// on machines without a GPU.
void filter_with_tables(const LatticeTables& t, const double* in, double* out, int64_t channels, bool transpose);

class CudaPermutohedralFilter final : public CudaGaussianFilter {
 public:
  // Uploads `lattice`'s tables to cuda:`device` (synchronously); the lattice
  // need not outlive this object. Throws DeviceError when crfseg was built
  // without CUDA, or `device` is not a valid device index (including when no
  // device is present), OutOfMemoryError / CudaError from the runtime.
  CudaPermutohedralFilter(const PermutohedralLattice& lattice, int device);
  // The same for tables built by lattice_tables (several lattices stacked).
  CudaPermutohedralFilter(const LatticeTables& tables, int device);
  // The same, the tables from `stream`'s pool and copied on `stream`; the
  // host waits for that stream before returning. For uploads off the
  // compute stream (crf/bilateral_prefetch.h): call record_stream(compute)
  // before the filter is used there.
  CudaPermutohedralFilter(const LatticeTables& tables, int device, cuda::StreamHandle stream);
  // The tables are used by work on `stream` too (Tensor::record_stream's
  // rule): freed, they wait for that work before they are reused.
  void record_stream(cuda::StreamHandle stream) const override;
  // The stacked lattice of a batch, built on cuda:`device` itself
  // (kernels/cuda/lattice_build.h: embed, sort, number and link there; the
  // host only uploads the features and reads back the keys' bounds and
  // the lattice's size). The same filter as lattice_tables_sorted's tables
  // (arguments and errors as there, plus the device's). nullopt where the
  // batch build does not apply: build on the host then.
  static std::optional<CudaPermutohedralFilter> build(const std::vector<double>& features, int64_t images,
                                                      int64_t points, int64_t dim, int device);
  // The same for the CRF's bilateral lattices of a CUDA image batch [B, C,
  // H, W] (any float dtype): the features (crf::bilateral_features' for
  // each image) are computed on the device too, so the image never leaves
  // it. Throws ValueError for an image that is not a 4-d CUDA tensor or
  // thetas that are not positive.
  static std::optional<CudaPermutohedralFilter> build_bilateral(const Tensor& image, double theta_alpha,
                                                                double theta_beta);
  ~CudaPermutohedralFilter();
  CudaPermutohedralFilter(CudaPermutohedralFilter&&) noexcept;
  CudaPermutohedralFilter& operator=(CudaPermutohedralFilter&&) noexcept;
  CudaPermutohedralFilter(const CudaPermutohedralFilter&) = delete;
  CudaPermutohedralFilter& operator=(const CudaPermutohedralFilter&) = delete;

  int64_t num_points() const override { return num_points_; }
  int64_t feature_dim() const override { return dim_; }
  int64_t num_lattice_points() const { return num_lattice_; }
  // A host copy of the device tables (synchronous), for tests and debugging.
  LatticeTables download_tables() const;
  int device() const override { return device_; }

  // out = K in or K^T in, with K the lattice's operator (CudaGaussianFilter::filter).
  void filter(const float* d_in, float* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const override;
  void filter(const double* d_in, double* d_out, int64_t channels, bool transpose = false,
              CudaStream stream = nullptr) const override;
  using CudaGaussianFilter::filter_host;

 private:
  template <typename T>
  void run(const T* d_in, T* d_out, int64_t channels, bool transpose, CudaStream stream) const;

  CudaPermutohedralFilter() = default;  // for build()
  void upload(const LatticeTables& tables, cuda::StreamHandle stream);  // the constructors' copies
  // build()'s steps from the features on the device ([images points x dim]).
  static std::optional<CudaPermutohedralFilter> build_device(const char* op, DeviceBuffer features, int64_t images,
                                                             int64_t points, int64_t dim, int device);

  struct DeviceTables;  // the uploaded tables (RAII device buffers), defined in the .cpp
  std::unique_ptr<DeviceTables> tables_;
  int64_t num_points_ = 0, dim_ = 0, num_lattice_ = 0;
  double alpha_ = 1.0;  // the lattice's slice_scale()
  int device_ = 0;
};

}  // namespace crfseg::crf
