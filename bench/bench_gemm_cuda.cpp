// bench_gemm_cuda: every CUDA SGEMM variant (kernels/cuda/gemm) beside
// cuBLAS in the same run, on the same device buffers.
//
//   build/bench/bench_gemm_cuda [--quick] [--repeats R] [--sizes 4096,1024x768x300,...] [--tf32] [--tb]
//                               [--skip NAME,NAME]
//
// Each variant runs W warm-up calls, then R timed calls, each timed with CUDA
// events on the current stream; the table gives the median ms, GFLOP/s
// (2 M N K / t) and the ratio to cuBLAS SGEMM measured in the same run. The
// inputs are uniform random (never zeros, which can run faster), and every
// variant's output is checked against cuBLAS first (max relative error
// printed; a variant more than 1e-3 off, 1e-2 for TF32 ones, prints FAIL and
// no speed). cuBLAS with TF32 tensor cores is a second baseline row when a
// TF32 variant is registered (or with --tf32); TF32 variants' ratios are to it. Without a
// device it prints why and exits 0 (so `meson test --benchmark` passes on
// CPU-only machines), naming the skip.
//
// --tb stores B as [N][K] and runs every variant with B transposed: the
// layout the wgmma variants (v6, v7) read in place; without it they pack
// B K-major first, inside the timed call. --skip leaves the named variants
// out (scripts/gpu-check.sh: the ones whose tests timed out).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/random.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/gemm/gemm.h"
#endif

using namespace crfseg;

namespace {

struct Size {
  int64_t M, N, K;
};

std::vector<Size> parse_sizes(const std::string& text) {
  std::vector<Size> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t m = 0, n = 0, k = 0;
    if (std::sscanf(item.c_str(), "%ldx%ldx%ld", &m, &n, &k) == 3) out.push_back({m, n, k});
    else if (std::sscanf(item.c_str(), "%ld", &m) == 1) out.push_back({m, m, m});
  }
  return out;
}

#ifdef CRFSEG_WITH_CUDA
// Where a failing variant is wrong, for a first look at a kernel that has
// never run: the share of elements off by more than 1% of the row's scale
// (or NaN: unwritten, as C is poisoned), the first one, and how many fall
// in the last 128 rows or 256 columns (tile tails) against the rest.
std::string wrong_elements(const std::vector<float>& got, const std::vector<float>& want, int64_t M, int64_t N) {
  int64_t wrong = 0, in_tails = 0, first = -1;
  for (int64_t m = 0; m < M; ++m) {
    double scale = 0;
    for (int64_t n = 0; n < N; ++n) scale = std::max(scale, std::abs(static_cast<double>(want[m * N + n])));
    for (int64_t n = 0; n < N; ++n) {
      const double d = static_cast<double>(got[m * N + n]) - want[m * N + n];
      if (!(std::abs(d) <= 1e-2 * scale + 1e-6)) {
        ++wrong;
        if (first < 0) first = m * N + n;
        if (m >= M - M % 128 || n >= N - N % 256) ++in_tails;
      }
    }
  }
  std::ostringstream out;
  out << "  wrong elements: " << wrong << " of " << M * N << " (" << 100.0 * wrong / std::max<int64_t>(M * N, 1)
      << "%), " << in_tails << " of them in the tail rows/columns";
  if (first >= 0) {
    out << "; first at (" << first / N << ", " << first % N << "): got " << got[first] << ", want " << want[first];
  }
  return out.str();
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int repeats = 20, warmup = 3;
  bool tf32 = false, tb = false;
  std::vector<std::string> skip;
  std::vector<Size> sizes = {{4096, 4096, 4096}, {1024, 1024, 1024}, {4096, 1024, 4608}, {127, 1023, 515}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") repeats = 3, warmup = 1, sizes = {{256, 256, 256}, {127, 65, 33}};
    else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--sizes" && i + 1 < argc) sizes = parse_sizes(argv[++i]);
    else if (a == "--tf32") tf32 = true;
    else if (a == "--tb") tb = true;
    else if (a == "--skip" && i + 1 < argc) {
      std::stringstream names(argv[++i]);
      for (std::string name; std::getline(names, name, ',');) skip.push_back(name);
    }
    else {
      std::fprintf(stderr, "usage: bench_gemm_cuda [--quick] [--repeats R] [--sizes LIST] [--tf32] [--tb] [--skip NAME,NAME]\n");
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    std::printf("bench_gemm_cuda: skipped: %s\n",
                cuda::is_compiled() ? "no CUDA device visible" : "crfseg was built without CUDA");
    return 0;
  }
#ifdef CRFSEG_WITH_CUDA
  namespace kcu = kernels::cuda;
  Generator gen(1);
  const auto stream = cuda::current_stream(0);
  std::printf("# B %s; wgmma kernels (v6, v7) %s\n", tb ? "transposed ([N][K])" : "as [K][N]",
              kcu::sgemm_wgmma_active() ? "active" : "inactive: they run v5");
  std::printf("| M x N x K | variant | median ms | GFLOP/s | vs cuBLAS | max rel err |\n|---|---|---|---|---|---|\n");
  for (const Size s : sizes) {
    const Tensor A = rand({s.M, s.K}, {DType::f32, Device::cuda(0)}, gen);
    const Tensor B = rand(tb ? Shape{s.N, s.K} : Shape{s.K, s.N}, {DType::f32, Device::cuda(0)}, gen);
    const int64_t ldb = tb ? s.K : s.N;
    // C = A op(B) by one variant, the product every row of the table times.
    auto run = [&](kcu::CudaSgemmFn fn, const Tensor& C) {
      fn(false, tb, s.M, s.N, s.K, 1.0f, A.data<float>(), s.K, B.data<float>(), ldb, 0.0f, C.data<float>(), s.N,
         stream);
    };
    const Tensor ref = empty({s.M, s.N}, {DType::f32, Device::cuda(0)});
    run(kcu::sgemm_cublas, ref);
    const std::vector<float> want = ref.to(Device::cpu()).to_vector<float>();
    auto time_variant = [&](kcu::CudaSgemmFn fn, const Tensor& C) {
      for (int i = 0; i < warmup; ++i) run(fn, C);
      std::vector<double> ms;
      cuda::Event start(0), stop(0);
      for (int i = 0; i < repeats; ++i) {
        start.record(stream);
        run(fn, C);
        stop.record(stream);
        stop.synchronize();
        ms.push_back(stop.elapsed_ms_since(start));
      }
      std::sort(ms.begin(), ms.end());
      return ms[ms.size() / 2];
    };
    struct Row {
      std::string name;
      kcu::CudaSgemmFn fn;
      bool tf32;  // TF32 precision (cuBLAS: TF32 math mode on for this row)
    };
    // Baselines first: each variant's ratio is to cuBLAS at its own precision.
    std::vector<Row> rows = {{"cublas", kcu::sgemm_cublas, false}};
    bool any_tf32 = tf32;
    for (const auto& v : kcu::sgemm_variants()) any_tf32 = any_tf32 || v.tf32;
    if (any_tf32) rows.push_back({"cublas (tf32)", kcu::sgemm_cublas, true});
    for (const auto& v : kcu::sgemm_variants()) {
      if (v.name != "cublas" && std::find(skip.begin(), skip.end(), v.name) == skip.end()) {
        rows.push_back({v.name, v.fn, v.tf32});
      }
    }
    double cublas_ms = NAN, cublas_tf32_ms = NAN;
    for (const Row& r : rows) {
      const kcu::GemmPrecision previous = kcu::set_gemm_precision(
          r.tf32 && r.fn == kcu::sgemm_cublas ? kcu::GemmPrecision::tf32 : kcu::GemmPrecision::fp32);
      const Tensor C = full({s.M, s.N}, NAN, {DType::f32, Device::cuda(0)});  // poisoned: unwritten shows
      run(r.fn, C);
      const std::vector<float> got = C.to(Device::cpu()).to_vector<float>();
      double num = 0, den = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = static_cast<double>(got[i]) - want[i];
        num += std::isnan(d) ? INFINITY : d * d;
        den += static_cast<double>(want[i]) * want[i];
      }
      const double err = std::sqrt(num / std::max(den, 1e-30));
      const double limit = r.tf32 ? 1e-2 : 1e-3;
      if (!(err <= limit)) {
        std::printf("| %ldx%ldx%ld | %s | FAIL | | | %.2e |\n", s.M, s.N, s.K, r.name.c_str(), err);
        std::printf("%s\n", wrong_elements(got, want, s.M, s.N).c_str());
        kcu::set_gemm_precision(previous);
        continue;
      }
      const double ms = time_variant(r.fn, C);
      kcu::set_gemm_precision(previous);
      if (r.name == "cublas") cublas_ms = ms;
      if (r.name == "cublas (tf32)") cublas_tf32_ms = ms;
      const double gflops = 2.0 * s.M * s.N * s.K / (ms * 1e6);
      std::printf("| %ldx%ldx%ld | %s | %.3f | %.0f | %.2f%s | %.2e |\n", s.M, s.N, s.K, r.name.c_str(), ms, gflops,
                  (r.tf32 ? cublas_tf32_ms : cublas_ms) / ms, r.tf32 ? " (tf32)" : "", err);
    }
  }
#endif
  return 0;
}
