// CPU-feature queries through GCC's __builtin_cpu_supports (cpuid under the hood).
#include "kernels/cpu/cpu_features.h"

namespace crfseg::kernels::cpu {

bool has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool has_avx512f() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

bool is_intel_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_is("intel");
#else
  return false;
#endif
}

std::string cpu_feature_summary() {
  std::string s = "baseline";
  if (has_avx2_fma()) s += " avx2+fma";
  if (has_avx512f()) s += " avx512f";
  return s;
}

}  // namespace crfseg::kernels::cpu
