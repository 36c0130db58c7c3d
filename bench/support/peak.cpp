// FMA-throughput probe; see peak.h.
#include "bench/support/peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace crfseg::bench {

namespace {

constexpr long kIters = 1 << 20;

#if defined(__x86_64__)
// 12 independent dependency chains: each FMA waits only for its own chain,
// so 2 FMA pipes with 4-cycle latency need >= 8 chains to stay full.
__attribute__((target("avx2,fma"))) float fma_loop_avx2(float seed) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < kIters; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0];
}
constexpr double kAvx2FlopsPerIter = 12 * 8 * 2;
#endif

float fma_loop_portable(float seed) {
  float acc[96];
  for (int i = 0; i < 96; ++i) acc[i] = seed + static_cast<float>(i);
  for (long it = 0; it < kIters; ++it) {
    for (int i = 0; i < 96; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  }
  float s = 0;
  for (float v : acc) s += v;
  return s;
}
constexpr double kPortableFlopsPerIter = 96 * 2;

double probe_once() {
  const int threads = omp_get_max_threads();
  std::vector<float> sink(threads);
  bool avx2 = false;
#if defined(__x86_64__)
  avx2 = kernels::cpu::has_avx2_fma();
#endif
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
#if defined(__x86_64__)
    sink[t] = avx2 ? fma_loop_avx2(static_cast<float>(t)) : fma_loop_portable(static_cast<float>(t));
#else
    sink[t] = fma_loop_portable(static_cast<float>(t));
#endif
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];  // the results must look used
  (void)keep;
#if defined(__x86_64__)
  const double per_iter = avx2 ? kAvx2FlopsPerIter : kPortableFlopsPerIter;
#else
  const double per_iter = kPortableFlopsPerIter;
#endif
  return per_iter * kIters * threads / s / 1e9;
}

}  // namespace

double measured_peak_gflops() {
  static const double peak = [] {
    std::vector<double> runs;
    probe_once();  // warm-up: clocks ramp, threads spawn
    for (int i = 0; i < 5; ++i) runs.push_back(probe_once());
    std::sort(runs.begin(), runs.end());
    return runs[2];
  }();
  return peak;
}

}  // namespace crfseg::bench
