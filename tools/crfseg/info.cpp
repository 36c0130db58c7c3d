// `crfseg info`: the build, the devices, the CPU features, the kernels the
// dispatch rules chose, and the model summary for the given options.
#include <omp.h>

#include <cstdio>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm/gemm.h"
#include "layers/module.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/model_spec.h"

namespace crfseg::app {

ArgParser info_parser() {
  ArgParser p("crfseg info", "Prints the build, devices, CPU features, chosen kernels and a model summary.");
  add_model_options(p);
  p.option("--in-channels", "C", "3", "input channels of the summarised model")
      .option("--classes", "L", "3", "classes of the summarised model")
      .option("--size", "S", "256", "input size (S x S) of the summary's example");
  return p;
}

int run_info(const std::vector<std::string>& args) {
  ArgParser p = info_parser();
  if (!p.parse(args)) {
    std::printf("%s", p.help().c_str());
    return 0;
  }
  const ModelSpec spec = model_spec_from(p, p.get_int("--in-channels", 1, 64), p.get_int("--classes", 1, 1000));
  const int64_t size = p.get_int("--size", 1, 4096);

  std::printf("crfseg %s, built %s %s with %s (%s)\n", CRFSEG_VERSION, __DATE__, __TIME__, __VERSION__,
#ifdef NDEBUG
              "release"
#else
              "debug"
#endif
  );
  std::printf("CUDA backend: %s", cuda::is_compiled() ? "compiled" : "not compiled");
  if (cuda::is_compiled()) {
    std::printf(" for compute capabilities %s, %d device(s) visible", cuda::built_archs().c_str(),
                cuda::device_count());
    for (int d = 0; d < cuda::device_count(); ++d) std::printf("\n  %s", cuda::describe_device(d).c_str());
  }
  std::printf("\nCPU: %s; OpenMP threads: %d\n", kernels::cpu::cpu_feature_summary().c_str(), omp_get_max_threads());
  std::printf("SGEMM: %s (CRFSEG_SGEMM=<name> overrides); variants:", kernels::cpu::sgemm_production_name().c_str());
  for (const auto& v : kernels::cpu::sgemm_variants()) {
    std::printf(" %s%s", v.name.c_str(), v.available() ? "" : " (unavailable)");
  }
  const auto& blis = kernels::cpu::sgemm_blis_config();
  std::printf("\nconvolution: implicit im2col into the %lldx%lld micro-kernel, MC %lld KC %lld NC %lld\n",
              static_cast<long long>(blis.mr), static_cast<long long>(blis.nr), static_cast<long long>(blis.mc),
              static_cast<long long>(blis.kc), static_cast<long long>(blis.nc));
  std::printf("\nmodel: %s\n", describe(spec).c_str());
  Generator gen(0);
  auto net = build_model(spec, gen);
  net->eval();
  std::printf("%s", nn::summary(*net, zeros({1, spec.segmenter.in_channels, size, size})).c_str());
  return 0;
}

}  // namespace crfseg::app
