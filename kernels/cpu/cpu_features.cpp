// CPU-feature queries through GCC's __builtin_cpu_supports / __builtin_cpu_is
// (cpuid under the hood); on other architectures every answer is false.
#include "kernels/cpu/cpu_features.h"

namespace crfseg::kernels::cpu {

#if defined(__x86_64__) || defined(__i386__)
bool has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512f() { return __builtin_cpu_supports("avx512f"); }
bool is_intel_cpu() { return __builtin_cpu_is("intel"); }
#else
bool has_avx2_fma() { return false; }
bool has_avx512f() { return false; }
bool is_intel_cpu() { return false; }
#endif

std::string cpu_feature_summary() {
  std::string s = "baseline";
  if (has_avx2_fma()) s += " avx2+fma";
  if (has_avx512f()) s += " avx512f";
  return s;
}

}  // namespace crfseg::kernels::cpu
