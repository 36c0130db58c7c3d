// The --device option; see device_option.h.
#include "tools/crfseg/device_option.h"

#include "tools/crfseg/args.h"

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
  try {
    return cuda::parse_matmul_precision_for("--precision", value, device.is_cuda());
  } catch (const ValueError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace crfseg::app
