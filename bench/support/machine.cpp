// Machine stamp for benchmark output.
#include <omp.h>

#include <fstream>

#include "bench/support/timer.h"
#include "kernels/cpu/cpu_features.h"

namespace crfseg::bench {

std::string machine_info() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return model + ", " + std::to_string(omp_get_max_threads()) + " OpenMP threads, features: " +
         kernels::cpu::cpu_feature_summary();
}

}  // namespace crfseg::bench
