// Mean-field CRF-RNN composed from ordinary differentiable ops plus one
// Gaussian-filter op: the same function as crf/mean_field.h's fused kernel,
// on any device. On the CPU the fused kernel is the fast path and this
// composition is its cross-check (tests/crf/test_mean_field_composed.cpp
// compares the two, forward and every gradient); CUDA unaries take this
// path, with the filtering on the GPU (crf/gaussian_filter_cuda.h: the
// lattice's, or the exact filter's in the dense mode).
//
// Per iteration (Q, A pixel-major [n x L] per image, matrices acting on the
// class vector of each pixel as in crf/mean_field.h):
//   Q   = softmax(Z, classes)
//   A_s = filter_s(Q) / (K_s 1),  A_b = filter_b(Q) / (K_b 1)
//   Z   = U - (A_s W_s^T + A_b W_b^T) mu^T
// and autograd differentiates it; filter_op's backward is the transposed
// filter, and the normalisers and the image take no gradient.
//
// The lattices are built once per forward: on the host from a host copy of
// the image, image by image, and on CUDA uploaded (the default), or, with
// the device build selected (cuda_lattice_build), on the GPU itself for
// the whole batch, the image never leaving the device
// (CudaPermutohedralFilter::build_bilateral). The dense mode uploads the
// features and filters exactly on the GPU (O(N^2): small images).
#pragma once

#include <memory>

#include "crf/gaussian_filter.h"
#include "crf/mean_field.h"
#include "tensor/tensor.h"

namespace crfseg::crf {

class CudaGaussianFilter;

// A Gaussian filter usable on the values' device: the host filter, and on
// CUDA its device twin (the lattice's or the exact filter's).
// A lattice built on the GPU has no host filter.
struct DeviceGaussianFilter {
  std::shared_ptr<const GaussianFilter> host;           // null for a lattice built on the GPU
  std::shared_ptr<const CudaGaussianFilter> cuda;  // null on the CPU
  Device device;
  int64_t num_points() const;
};

// Where CUDA forwards build the batch's bilateral lattices: on the host
// (the default: PermutohedralLattice per image, stacked and uploaded) or on
// the device (CudaPermutohedralFilter::build; where that build does not
// apply, a dimension outside 2..5 or codes over 64 bits, the host's). Read
// from CRFSEG_CUDA_LATTICE=host|device at first use (ValueError for other
// values); set_cuda_lattice_build overrides it and returns the previous.
enum class LatticeBuild { host, device };
LatticeBuild cuda_lattice_build();
LatticeBuild set_cuda_lattice_build(LatticeBuild build);

// Builds the filter for `device` (uploads the lattice to a CUDA device).
// Throws ValueError for a filter that is neither a lattice, a dense filter,
// nor a stack of one kind (dense parts of one size).
std::shared_ptr<const DeviceGaussianFilter> to_device_filter(std::shared_ptr<const GaussianFilter> host,
                                                             Device device);

// Differentiable out = K v for values v [n, C] (f32/f64, on the filter's
// device); the gradient is K^T g.
Tensor gaussian_filter(const Tensor& values, std::shared_ptr<const DeviceGaussianFilter> filter);

// The composed mean-field; same arguments, checks and result as crf_mean_field.
Tensor crf_mean_field_composed(const Tensor& unaries, const Tensor& image, const Tensor& spatial_weights,
                               const Tensor& bilateral_weights, const Tensor& compatibility,
                               const MeanFieldOptions& options = {});

}  // namespace crfseg::crf
