// The --device and --precision options that train, eval and predict share.
#pragma once

#include <string>

#include "tensor/cuda_memory.h"
#include "tensor/device.h"

namespace crfseg::app {

// "cpu", "cuda" or "cuda:N"; UsageError naming --device otherwise.
Device parse_device_option(const std::string& value);

// DeviceError naming --device when `device` is a CUDA device this process
// cannot use (none visible, an index past the last, or a build without
// CUDA), with the advice to use --device cpu.
void check_device_usable(const Device& device);

// --precision: fp32, tf32 or bf16 (UsageError otherwise); a reduced one
// only with a CUDA device (UsageError naming both options otherwise). On a
// CUDA device, a hand-written production SGEMM (CRFSEG_CUDA_SGEMM) must
// multiply at that precision (UsageError naming both otherwise).
cuda::MatmulPrecision parse_precision_option(const std::string& value, const Device& device);

}  // namespace crfseg::app
