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

// The same with 16-lane zmm registers. Cores that split a 512-bit FMA into
// two 256-bit halves (AMD Zen 4) reach the AVX2 figure here; cores with two
// full-width FMA units (Intel server parts) reach twice it.
__attribute__((target("avx512f"))) float fma_loop_avx512(float seed) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < kIters; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];  // every chain must feed the result, or the compiler drops it
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float out[16];  // (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized)
  _mm512_store_ps(out, sum);
  return out[0] + out[15];
}
constexpr double kAvx512FlopsPerIter = 12 * 16 * 2;
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

enum class Isa { portable, avx2, avx512 };

double probe_once(Isa isa) {
  const int threads = omp_get_max_threads();
  std::vector<float> sink(threads);
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const float seed = static_cast<float>(t);
#if defined(__x86_64__)
    sink[t] = isa == Isa::avx512 ? fma_loop_avx512(seed)
              : isa == Isa::avx2 ? fma_loop_avx2(seed)
                                 : fma_loop_portable(seed);
#else
    sink[t] = fma_loop_portable(seed);
#endif
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];  // the results must look used
  (void)keep;
  double per_iter = kPortableFlopsPerIter;
#if defined(__x86_64__)
  if (isa == Isa::avx2) per_iter = kAvx2FlopsPerIter;
  if (isa == Isa::avx512) per_iter = kAvx512FlopsPerIter;
#endif
  return per_iter * kIters * threads / s / 1e9;
}

double median_probe(Isa isa) {
  std::vector<double> runs;
  probe_once(isa);  // warm-up: clocks ramp, threads spawn
  for (int i = 0; i < 5; ++i) runs.push_back(probe_once(isa));
  std::sort(runs.begin(), runs.end());
  return runs[2];
}

}  // namespace

double measured_peak_gflops() {
  // The widest FMA the CPU has; the faster of AVX2 and AVX-512 when both
  // exist, since which one wins depends on the core (see fma_loop_avx512).
  static const double peak = [] {
    double best = median_probe(Isa::portable);
#if defined(__x86_64__)
    if (kernels::cpu::has_avx2_fma()) best = std::max(best, median_probe(Isa::avx2));
    if (kernels::cpu::has_avx512f()) best = std::max(best, median_probe(Isa::avx512));
#endif
    return best;
  }();
  return peak;
}

}  // namespace crfseg::bench
