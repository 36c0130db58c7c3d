// The --device option; see device_option.h.
#include "tools/crfseg/device_option.h"

#include "tools/crfseg/args.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/gemm/gemm.h"
#endif

namespace crfseg::app {

Device parse_device_option(const std::string& value) {
  try {
    return Device::parse(value);
  } catch (const DeviceError&) {
    throw UsageError("--device must be cpu, cuda or cuda:N, got '" + value + "'");
  }
}

void check_device_usable(const Device& device) {
  if (!device.is_cuda() || device.index < cuda::device_count()) return;
  throw DeviceError("--device " + device.str() + ": " +
                    (cuda::is_compiled() ? std::to_string(cuda::device_count()) + " CUDA device(s) visible"
                                         : std::string("crfseg was built without CUDA")) +
                    "; use --device cpu");
}

cuda::MatmulPrecision parse_precision_option(const std::string& value, const Device& device) {
  cuda::MatmulPrecision precision = cuda::MatmulPrecision::fp32;
  try {
    precision = cuda::parse_matmul_precision(value);
  } catch (const ValueError& e) {
    throw UsageError(std::string("--precision: ") + e.what());
  }
  if (precision != cuda::MatmulPrecision::fp32 && !device.is_cuda()) {
    throw UsageError("--precision " + value + " applies to CUDA GEMMs; use it with --device cuda");
  }
#ifdef CRFSEG_WITH_CUDA
  // A hand-written production SGEMM (CRFSEG_CUDA_SGEMM, for kernel studies)
  // multiplies at its own precision whatever this option says.
  if (device.is_cuda()) {
    try {
      kernels::cuda::check_production_precision(static_cast<kernels::cuda::GemmPrecision>(precision), "--precision");
    } catch (const ValueError& e) {
      throw UsageError(e.what());
    }
  }
#endif
  return precision;
}

}  // namespace crfseg::app
