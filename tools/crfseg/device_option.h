// The --device option that train, eval and predict share.
#pragma once

#include <string>

#include "tensor/device.h"

namespace crfseg::app {

// "cpu", "cuda" or "cuda:N"; UsageError naming --device otherwise.
Device parse_device_option(const std::string& value);

// DeviceError naming --device when `device` is a CUDA device this process
// cannot use (none visible, an index past the last, or a build without
// CUDA), with the advice to use --device cpu.
void check_device_usable(const Device& device);

}  // namespace crfseg::app
