// Device parsing and printing; error helpers shared by the tensor layer.
#include "tensor/device.h"

#include <cstring>

#include "tensor/error.h"

namespace crfseg {

namespace detail {
std::string basename_of(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}
}  // namespace detail

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    bool all_digits = digits.find_first_not_of("0123456789") == std::string::npos;
    CRFSEG_CHECK(all_digits && digits.size() < 4, DeviceError,
                 "Device::parse: expected \"cpu\" or \"cuda:N\", got \"", text, "\"");
    return cuda(std::stoi(digits));
  }
  CRFSEG_CHECK(false, DeviceError, "Device::parse: expected \"cpu\" or \"cuda:N\", got \"", text, "\"");
  return cpu();
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

}  // namespace crfseg
