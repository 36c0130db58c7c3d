// CudaGaussianFilter's shared host side and CudaDenseGaussianFilter (see
// crf/gaussian_filter_cuda.h; the dense kernel is kernels/cuda/dense_gaussian.cu).
#include "crf/gaussian_filter_cuda.h"

#include <string>
#include <vector>

#include "tensor/error.h"

#ifdef CRFSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dense_gaussian.h"
#endif

namespace crfseg::crf {

void CudaGaussianFilter::check_device(const char* op, int device) {
  CRFSEG_CHECK(cuda::is_compiled(), DeviceError, op, ": crfseg was built without CUDA (reconfigure with -Dcuda=enabled)");
  const int count = cuda::device_count();
  CRFSEG_CHECK(device >= 0 && device < count, DeviceError, op, ": expected a CUDA device index in [0, ", count,
               "), got cuda:", device, count == 0 ? " (no CUDA device present)" : "");
}

void CudaGaussianFilter::check_filter_args(const char* op, const void* d_in, const void* d_out, int64_t channels) {
  CRFSEG_CHECK(channels >= 1, ValueError, op, ": expected channels >= 1, got ", channels);
  CRFSEG_CHECK(d_in != nullptr && d_out != nullptr, ValueError, op, ": null input or output pointer");
  CRFSEG_CHECK(d_in != d_out, ValueError, op, ": input and output must not alias");
}

template <typename T>
void CudaGaussianFilter::run_host(const T* in, T* out, int64_t channels, bool transpose) const {
  CRFSEG_CHECK(channels >= 1, ValueError, "CudaGaussianFilter::filter_host: expected channels >= 1, got ", channels);
  CRFSEG_CHECK(in != nullptr && out != nullptr, ValueError,
               "CudaGaussianFilter::filter_host: null input or output pointer");
  const size_t bytes = static_cast<size_t>(num_points() * channels) * sizeof(T);
  DeviceBuffer d_in(bytes, device()), d_out(bytes, device());
  cuda::copy_to_device(d_in.as<void>(), in, bytes, device());
  // The copies run on the device's current stream (a StreamGuard's, or the
  // legacy default one), so the filter does too; copy_to_host waits for it
  // and reports any asynchronous launch failure as a CudaError.
  filter(d_in.as<const T>(), d_out.as<T>(), channels, transpose, cuda::current_stream(device()));
  cuda::copy_to_host(out, d_out.as<const void>(), bytes, device());
}

void CudaGaussianFilter::filter_host(const float* in, float* out, int64_t channels, bool transpose) const {
  run_host(in, out, channels, transpose);
}
void CudaGaussianFilter::filter_host(const double* in, double* out, int64_t channels, bool transpose) const {
  run_host(in, out, channels, transpose);
}

namespace {
constexpr const char* kDenseOp = "CudaDenseGaussianFilter";
}

CudaDenseGaussianFilter::CudaDenseGaussianFilter(const DenseGaussianFilter& host, int device)
    : CudaDenseGaussianFilter(std::vector<const DenseGaussianFilter*>{&host}, device) {}

CudaDenseGaussianFilter::CudaDenseGaussianFilter(const std::vector<const DenseGaussianFilter*>& blocks, int device)
    : device_(device) {
  check_device(kDenseOp, device);
  CRFSEG_CHECK(!blocks.empty(), ValueError, kDenseOp, ": expected at least one filter, got none");
  for (size_t b = 0; b < blocks.size(); ++b) {
    CRFSEG_CHECK(blocks[b] != nullptr, ValueError, kDenseOp, ": filter ", b, " is null");
    CRFSEG_CHECK(blocks[b]->num_points() == blocks[0]->num_points() &&
                     blocks[b]->feature_dim() == blocks[0]->feature_dim(),
                 ValueError, kDenseOp, ": expected filters of one size and dimension (", blocks[0]->num_points(),
                 " points of dimension ", blocks[0]->feature_dim(), "), got ", blocks[b]->num_points(), " of ",
                 blocks[b]->feature_dim(), " for filter ", b);
  }
  block_ = blocks[0]->num_points();
  dim_ = blocks[0]->feature_dim();
  num_points_ = block_ * static_cast<int64_t>(blocks.size());
  std::vector<double> features;
  features.reserve(static_cast<size_t>(num_points_ * dim_));
  for (const DenseGaussianFilter* f : blocks) features.insert(features.end(), f->features().begin(), f->features().end());
  features_ = DeviceBuffer::upload(features, device);
}

template <typename T>
void CudaDenseGaussianFilter::run(const T* d_in, T* d_out, int64_t channels, CudaStream stream) const {
  CRFSEG_CHECK(features_.bytes() > 0, ValueError, kDenseOp, ": filter() on a moved-from object");
  check_filter_args(kDenseOp, d_in, d_out, channels);
#ifdef CRFSEG_WITH_CUDA
  CRFSEG_CUDA_CHECK(cudaSetDevice(device_));
  kernels::cuda::dense_gaussian_filter(features_.as<const double>(), num_points_, block_, dim_, d_in, d_out, channels,
                                      stream);
#else
  (void)stream;
  throw DeviceError(std::string(kDenseOp) + ": crfseg was built without CUDA (reconfigure with -Dcuda=enabled)");
#endif
}

void CudaDenseGaussianFilter::filter(const float* d_in, float* d_out, int64_t channels, bool /*transpose*/,
                                     CudaStream stream) const {
  run(d_in, d_out, channels, stream);
}
void CudaDenseGaussianFilter::filter(const double* d_in, double* d_out, int64_t channels, bool /*transpose*/,
                                     CudaStream stream) const {
  run(d_in, d_out, channels, stream);
}

}  // namespace crfseg::crf
