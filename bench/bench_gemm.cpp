// bench_gemm: times every available SGEMM variant (and OpenBLAS's
// cblas_sgemm when built with it) on the given sizes, after checking each
// against kernels::ref::gemm on that size. A wrong kernel prints no number.
//
//   build/bench/bench_gemm [--quick] [--json] [--repeats R] [--variants a,b,...] [--blocks MC,KC,NC]
//                          [M N K ...]
// Reports median and min ms over R runs (timed in alternated blocks, each after a
// warm-up: see bench/support/timer.h's time_alternated), GFLOP/s = 2MNK/t and
// % of the FMA peak measured by bench/support/peak.h. --variants restricts
// the run to the named variants ("openblas" included), so each kernel of the
// ladder can be timed on its own; --blocks MC,KC,NC adds BLIS-style
// variants run with other block sizes, for tuning on a new CPU.
// For OpenBLAS, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the shell
// that runs this, or it picks a slower kernel.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench/support/peak.h"
#include "bench/support/timer.h"
#include "kernels/cpu/gemm/gemm.h"
#include "kernels/ref/gemm.h"
#include "tensor/cpu_allocator.h"
#include "tensor/random.h"

#ifdef CRFSEG_HAVE_OPENBLAS
#include <cblas.h>
#endif

using namespace crfseg;

namespace {

struct Row {
  std::string variant;
  int64_t M, N, K;
  double median_ms, min_ms, gflops;
  bool verified;
};

// An SGEMM with kernels::ref::gemm's signature: a variant, or one run with other block sizes.
using GemmCall = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                    const float*, int64_t, float, float*, int64_t)>;

bool verify(const GemmCall& fn, int64_t M, int64_t N, int64_t K) {
  // Check on a size capped at 256 x 256 x 1100 (an affordable reference):
  // the same code paths but for a second jc block, with a second pc slice
  // for any KC under 1100 (v4's 1024 included) where K reaches it.
  const int64_t m = std::min<int64_t>(M, 256), n = std::min<int64_t>(N, 256), k = std::min<int64_t>(K, 1100);
  Generator g(1);
  std::vector<float> A(m * k), B(k * n), C(m * n, 0.f), R(m * n, 0.f);
  for (float& v : A) v = g.uniform_f32() - 0.5f;
  for (float& v : B) v = g.uniform_f32() - 0.5f;
  fn(false, false, m, n, k, 1.f, A.data(), k, B.data(), n, 0.f, C.data(), n);
  kernels::ref::gemm<float>(false, false, m, n, k, 1.f, A.data(), k, B.data(), n, 0.f, R.data(), n);
  for (size_t i = 0; i < C.size(); ++i) {
    if (std::abs(C[i] - R[i]) > 1e-4 * k) return false;
  }
  return true;
}

// Alternated blocks of 3 calls, each block after a 300 ms pause: OpenMP's
// and OpenBLAS's workers spin for a while after a call and would otherwise
// take cycles from the next contender (OpenBLAS's for about 2^28 cycles:
// with a 100 ms pause v4's 1 ms calls at 64 x 65536 x 27 took 1.2-5.2 ms
// after OpenBLAS's blocks and 0.94-1.05 alone; 0.85-0.91 with 300 ms).
constexpr int kBlock = 3;
constexpr auto kPause = std::chrono::milliseconds(300);

constexpr const char* kUsage =
    "usage: bench_gemm [--quick] [--json] [--repeats R] [--variants a,b,...] [--blocks MC,KC,NC] [M N K ...]\n"
    "  times every available SGEMM variant (and OpenBLAS when built with it) on each M x N x K\n"
    "  (row-major, no transposes), after verifying it against the reference.\n"
    "  --blocks MC,KC,NC (repeatable) also times each selected BLIS-style variant (v2-v5) with\n"
    "  these block sizes, as '<variant>@MC,KC,NC': a block-size sweep in one alternated run.\n"
    "  MC must be a multiple of the variant's MR and NC of its NR.\n";

// A positive integer argument, or a usage error.
bool parse_positive(const std::string& s, int64_t& out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 9) return false;
  out = std::stoll(s);
  return out > 0;
}

struct Blocks {
  int64_t mc, kc, nc;
};

// "MC,KC,NC": three positive integers.
bool parse_blocks(const std::string& s, Blocks& out) {
  const size_t a = s.find(','), b = a == std::string::npos ? a : s.find(',', a + 1);
  if (b == std::string::npos) return false;
  return parse_positive(s.substr(0, a), out.mc) && parse_positive(s.substr(a + 1, b - a - 1), out.kc) &&
         parse_positive(s.substr(b + 1), out.nc);
}

bool selected(const std::string& list, const std::string& name) {
  if (list.empty()) return true;
  return ("," + list + ",").find("," + name + ",") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, quick = false;
  int repeats = 20;
  std::string variants;
  std::vector<int64_t> dims;
  std::vector<Blocks> blocks;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    int64_t value = 0;
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--repeats" && i + 1 < argc && parse_positive(argv[i + 1], value)) {
      repeats = static_cast<int>(value);
      ++i;
    } else if (a == "--variants" && i + 1 < argc) {
      variants = argv[++i];
    } else if (a == "--blocks" && i + 1 < argc && parse_blocks(argv[i + 1], blocks.emplace_back())) {
      ++i;
    } else if (parse_positive(a, value)) {
      dims.push_back(value);
    } else {
      std::fprintf(stderr, "bench_gemm: bad argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (dims.size() % 3 != 0) {
    std::fprintf(stderr, "bench_gemm: sizes come in M N K triples, got %zu numbers\n%s", dims.size(), kUsage);
    return 2;
  }
  if (dims.empty()) dims = quick ? std::vector<int64_t>{128, 128, 128} : std::vector<int64_t>{512, 512, 512, 64, 4096, 576};
  if (quick) repeats = 3;

  // The FMA probe first: right after a GEMM, its threads (or OpenBLAS's)
  // still spin and the probe read as little as a third of the peak.
  const double peak = bench::measured_peak_gflops();
  std::vector<Row> rows;
  for (size_t s = 0; s + 2 < dims.size(); s += 3) {
    const int64_t M = dims[s], N = dims[s + 1], K = dims[s + 2];
    // The operands come from crfseg's allocator, as a tensor's storage
    // does: 2 MiB aligned and advised as transparent huge pages. Every
    // contender, OpenBLAS included, reads the same buffers. (On 4 KiB
    // pages, from std::vector, our 4096^3 time varied by 30% between
    // processes on the development VM and OpenBLAS's by 5%: see
    // bench/NOTES.md.)
    Generator g(2);
    CpuVector<float> A(M * K), B(K * N), C(M * N, 0.f);
    for (float& v : A) v = g.uniform_f32();
    for (float& v : B) v = g.uniform_f32();
    const double flops = 2.0 * M * N * K;
    std::vector<bench::Contender> contenders;
    // Verified on a capped size, then timed on this one's operands.
    const auto add = [&](const std::string& name, const GemmCall& gemm) {
      contenders.push_back({name, verify(gemm, M, N, K), [&, gemm] {
                              gemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
                            }});
    };
    for (const auto& v : kernels::cpu::sgemm_variants()) {
      if (!v.available() || !selected(variants, v.name)) continue;
      if (v.name == "v0_naive" && flops > 2e9) continue;  // minutes per call; skip big sizes
      add(v.name, v.fn);
      if (v.blis == nullptr) continue;
      for (const Blocks& bs : blocks) {
        kernels::cpu::BlisConfig cfg = v.blis();
        if (bs.mc % cfg.mr != 0 || bs.nc % cfg.nr != 0) {
          std::fprintf(stderr, "bench_gemm: --blocks %lld,%lld,%lld: %s needs MC a multiple of %lld and NC of %lld\n",
                       (long long)bs.mc, (long long)bs.kc, (long long)bs.nc, v.name.c_str(), (long long)cfg.mr,
                       (long long)cfg.nr);
          return 2;
        }
        cfg.mc = bs.mc;
        cfg.kc = bs.kc;
        cfg.nc = bs.nc;
        add(v.name + "@" + std::to_string(bs.mc) + "," + std::to_string(bs.kc) + "," + std::to_string(bs.nc),
            [cfg](bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
              kernels::cpu::blis_sgemm(cfg, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            });
      }
    }
#ifdef CRFSEG_HAVE_OPENBLAS
    if (selected(variants, "openblas")) {
      contenders.push_back({"openblas", true, [&] {
                              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.f, A.data(), K,
                                          B.data(), N, 0.f, C.data(), N);
                            }});
    }
#endif
    bench::time_alternated(contenders, repeats, kBlock, kPause);
    for (const bench::Contender& c : contenders) {
      Row r{c.name, M, N, K, 0, 0, 0, c.verified};
      if (c.verified) {
        const bench::Timing t = bench::summarize(c.ms);
        r.median_ms = t.median_ms;
        r.min_ms = t.min_ms;
        r.gflops = flops / (t.median_ms * 1e6);
      }
      rows.push_back(r);
    }
  }

  if (json) {
    std::printf("{\"machine\": \"%s\", \"peak_gflops\": %.1f, \"repeats\": %d, \"results\": [\n",
                bench::machine_info().c_str(), peak, repeats);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("  {\"variant\": \"%s\", \"M\": %lld, \"N\": %lld, \"K\": %lld, \"verified\": %s, \"median_ms\": %.4f, "
                  "\"min_ms\": %.4f, \"gflops\": %.2f}%s\n",
                  r.variant.c_str(), (long long)r.M, (long long)r.N, (long long)r.K, r.verified ? "true" : "false",
                  r.median_ms, r.min_ms, r.gflops, i + 1 < rows.size() ? "," : "");
    }
    std::printf("]}\n");
  } else {
    std::printf("# SGEMM, %s, %d repeats, measured peak %.0f GFLOP/s\n", bench::machine_info().c_str(), repeats,
                peak);
    std::printf("| variant | M | N | K | median ms | min ms | GFLOP/s | %% peak |\n|---|---|---|---|---|---|---|---|\n");
    for (const Row& r : rows) {
      if (!r.verified) {
        std::printf("| %s | %lld | %lld | %lld | WRONG RESULT, not timed | | |\n", r.variant.c_str(), (long long)r.M,
                    (long long)r.N, (long long)r.K);
        continue;
      }
      std::printf("| %s | %lld | %lld | %lld | %.3f | %.3f | %.1f | %.0f%% |\n", r.variant.c_str(), (long long)r.M,
                  (long long)r.N, (long long)r.K, r.median_ms, r.min_ms, r.gflops, 100.0 * r.gflops / peak);
    }
  }
  for (const Row& r : rows) {
    if (!r.verified) return 1;
  }
  return 0;
}
