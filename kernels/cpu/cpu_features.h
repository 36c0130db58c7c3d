// Runtime CPU-feature detection for kernel dispatch.
//
// Kernel variants that use AVX2 or AVX-512 are compiled with GCC target
// attributes, so one binary carries all paths; the registry asks these
// functions which ones this CPU can run.
#pragma once

#include <string>

namespace crfseg::kernels::cpu {

bool has_avx2_fma();  // AVX2 + FMA3
bool has_avx512f();   // AVX-512 Foundation
bool is_intel_cpu();  // vendor GenuineIntel (block sizes are tuned per vendor's cache sizes)
std::string cpu_feature_summary();  // e.g. "avx2+fma avx512f"

}  // namespace crfseg::kernels::cpu
