// bench_gemm_cuda: every CUDA SGEMM variant (kernels/cuda/gemm) beside
// cuBLAS in the same run, on the same device buffers.
//
//   build/bench/bench_gemm_cuda [--quick] [--repeats R] [--sizes 4096,1024x768x300,...] [--tf32] [--tb]
//                               [--bf16-kernels] [--skip NAME,NAME]
//
// Each variant runs W warm-up calls, then R timed calls, each timed with CUDA
// events on the current stream; the table gives the median ms, GFLOP/s
// (2 M N K / t) and the ratio to cuBLAS SGEMM measured in the same run. The
// inputs are uniform random (never zeros, which can run faster), and every
// variant's output is checked against cuBLAS first (relative Frobenius
// error printed; a variant more than 1e-3 off, 1e-2 for TF32 ones and 3e-2
// for BF16 ones, prints FAIL and no speed). cuBLAS at TF32 and at BF16 are
// more baseline rows when a variant of that precision is registered (TF32
// also with --tf32), and those variants' ratios are to them. cuBLAS at
// bf16 rounds A and B into BF16 copies first, as v9/v10 do while packing:
// both times include that pass. Without a
// device it prints why and exits 0 (so `meson test --benchmark` passes on
// CPU-only machines), naming the skip.
//
// --tb stores B as [N][K] and runs every variant with B transposed: the
// layout the TF32 wgmma variants (v6, v7) read in place; without it they
// pack B K-major first, inside the timed call (v9 and v10 round and pack
// both operands either way). --bf16-kernels adds a second table: the BF16
// products alone, v9's and v10's kernels against cuBLAS's on the same BF16
// operands already K-major (no rounding pass on either side), checked
// against cuBLAS's result. --skip leaves the named variants
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

// ||got - want|| / ||want|| over all elements (infinite if any is NaN).
double frobenius_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += std::isnan(d) ? INFINITY : d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The median of `repeats` calls timed with CUDA events on `stream`, after
// `warmup` untimed ones.
template <typename F>
double median_ms(F call, int warmup, int repeats, kernels::cuda::Stream stream) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> ms;
  cuda::Event start(0), stop(0);
  for (int i = 0; i < repeats; ++i) {
    start.record(stream);
    call();
    stop.record(stream);
    stop.synchronize();
    ms.push_back(stop.elapsed_ms_since(start));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int repeats = 20, warmup = 3;
  bool tf32 = false, tb = false, bf16_kernels = false;
  std::vector<std::string> skip;
  std::vector<Size> sizes = {{4096, 4096, 4096}, {1024, 1024, 1024}, {4096, 1024, 4608}, {127, 1023, 515}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") repeats = 3, warmup = 1, sizes = {{256, 256, 256}, {127, 65, 33}};
    else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--sizes" && i + 1 < argc) sizes = parse_sizes(argv[++i]);
    else if (a == "--tf32") tf32 = true;
    else if (a == "--tb") tb = true;
    else if (a == "--bf16-kernels") bf16_kernels = true;
    else if (a == "--skip" && i + 1 < argc) {
      std::stringstream names(argv[++i]);
      for (std::string name; std::getline(names, name, ',');) skip.push_back(name);
    }
    else {
      std::fprintf(stderr, "usage: bench_gemm_cuda [--quick] [--repeats R] [--sizes LIST] [--tf32] [--tb] [--bf16-kernels] [--skip NAME,NAME]\n");
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
  std::printf("# B %s; wgmma kernels: TF32 (v6, v7) %s, BF16 (v9, v10) %s\n", tb ? "transposed ([N][K])" : "as [K][N]",
              kcu::sgemm_wgmma_active() ? "active" : "inactive: they run v5",
              kcu::sgemm_bf16_wgmma_active() ? "active" : "inactive: they run cuBLAS at bf16");
  std::printf("| M x N x K | variant | median ms | GFLOP/s | vs cuBLAS | rel err (Frobenius) |\n|---|---|---|---|---|---|\n");
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
    struct Row {
      std::string name;
      kcu::CudaSgemmFn fn;
      kcu::GemmPrecision precision;  // the variant's own; for cuBLAS, the math mode set for this row
    };
    // Baselines first: cuBLAS at every precision a variant runs at (TF32
    // also with --tf32); each variant's ratio is to cuBLAS at its own.
    std::vector<Row> rows = {{"cublas", kcu::sgemm_cublas, kcu::GemmPrecision::fp32}};
    for (const kcu::GemmPrecision p : {kcu::GemmPrecision::tf32, kcu::GemmPrecision::bf16}) {
      bool wanted = p == kcu::GemmPrecision::tf32 && tf32;
      for (const auto& v : kcu::sgemm_variants()) wanted = wanted || v.precision == p;
      if (wanted) rows.push_back({std::string("cublas (") + kcu::gemm_precision_name(p) + ")", kcu::sgemm_cublas, p});
    }
    for (const auto& v : kcu::sgemm_variants()) {
      if (v.name != "cublas" && std::find(skip.begin(), skip.end(), v.name) == skip.end()) {
        rows.push_back({v.name, v.fn, v.precision});
      }
    }
    double cublas_ms[3] = {NAN, NAN, NAN};  // by precision
    for (const Row& r : rows) {
      // The process-wide precision is what cuBLAS rows run at; the
      // hand-written variants keep their own.
      const kcu::GemmPrecision previous = kcu::set_gemm_precision(r.precision);
      const Tensor C = full({s.M, s.N}, NAN, {DType::f32, Device::cuda(0)});  // poisoned: unwritten shows
      run(r.fn, C);
      const std::vector<float> got = C.to(Device::cpu()).to_vector<float>();
      const double err = frobenius_error(got, want);
      const double limit = r.precision == kcu::GemmPrecision::fp32 ? 1e-3 : r.precision == kcu::GemmPrecision::tf32 ? 1e-2 : 3e-2;
      if (!(err <= limit)) {
        std::printf("| %ldx%ldx%ld | %s | FAIL | | | %.2e |\n", s.M, s.N, s.K, r.name.c_str(), err);
        std::printf("%s\n", wrong_elements(got, want, s.M, s.N).c_str());
        kcu::set_gemm_precision(previous);
        continue;
      }
      const double ms = median_ms([&] { run(r.fn, C); }, warmup, repeats, stream);
      kcu::set_gemm_precision(previous);
      const int p = static_cast<int>(r.precision);
      if (r.fn == kcu::sgemm_cublas) cublas_ms[p] = ms;
      const double gflops = 2.0 * s.M * s.N * s.K / (ms * 1e6);
      const std::string against =
          r.precision == kcu::GemmPrecision::fp32 ? "" : std::string(" (") + kcu::gemm_precision_name(r.precision) + ")";
      std::printf("| %ldx%ldx%ld | %s | %.3f | %.0f | %.2f%s | %.2e |\n", s.M, s.N, s.K, r.name.c_str(), ms, gflops,
                  cublas_ms[p] / ms, against.c_str(), err);
    }
  }
  if (bf16_kernels) {
    std::printf("\n# BF16 products alone: A [M][K] and B^T [N][K] already BF16 on both sides\n");
    if (!kcu::sgemm_bf16_wgmma_active()) {
      std::printf("# skipped: the BF16 wgmma kernels cannot run here (an sm_90a build on compute capability 9.0)\n");
      return 0;
    }
    std::printf("| M x N x K | kernel | median ms | GFLOP/s | vs cuBLAS | rel err (Frobenius) |\n|---|---|---|---|---|---|\n");
    for (const Size s : sizes) {
      // Rows padded to a multiple of 8 values (16 bytes), as the kernels need.
      const int64_t ld = (s.K + 7) / 8 * 8;
      const Tensor A = rand({s.M, ld}, {DType::f32, Device::cuda(0)}, gen).to(DType::bf16);
      const Tensor Bt = rand({s.N, ld}, {DType::f32, Device::cuda(0)}, gen).to(DType::bf16);
      const auto* a = static_cast<const uint16_t*>(A.raw_data());
      const auto* b = static_cast<const uint16_t*>(Bt.raw_data());
      using Fn = void (*)(int64_t, int64_t, int64_t, float, const uint16_t*, int64_t, const uint16_t*, int64_t, float,
                          float*, int64_t, kcu::Stream);
      const std::pair<const char*, Fn> kernels[] = {
          {"cublas (bf16 operands)", kcu::gemm_bf16_cublas_kmajor},
          {"v9_bf16_wgmma kernel",
           [](int64_t m, int64_t n, int64_t k, float al, const uint16_t* x, int64_t lx, const uint16_t* y, int64_t ly,
              float be, float* c, int64_t lc, kcu::Stream st) {
             kcu::gemm_bf16_wgmma_kmajor(false, m, n, k, al, x, lx, y, ly, be, c, lc, st);
           }},
          {"v10_bf16_wgmma_pair kernel",
           [](int64_t m, int64_t n, int64_t k, float al, const uint16_t* x, int64_t lx, const uint16_t* y, int64_t ly,
              float be, float* c, int64_t lc, kcu::Stream st) {
             kcu::gemm_bf16_wgmma_kmajor(true, m, n, k, al, x, lx, y, ly, be, c, lc, st);
           }},
      };
      std::vector<float> want;
      double cublas_bf16_ms = NAN;
      for (const auto& [name, fn] : kernels) {
        const Tensor C = full({s.M, s.N}, NAN, {DType::f32, Device::cuda(0)});
        auto call = [&, fn = fn] { fn(s.M, s.N, s.K, 1.0f, a, ld, b, ld, 0.0f, C.data<float>(), s.N, stream); };
        call();
        const std::vector<float> got = C.to(Device::cpu()).to_vector<float>();
        if (want.empty()) want = got;  // cuBLAS's, on the same operands
        const double err = frobenius_error(got, want);
        if (!(err <= 1e-3)) {  // same BF16 operands: only the FP32 summation order differs
          std::printf("| %ldx%ldx%ld | %s | FAIL | | | %.2e |\n", s.M, s.N, s.K, name, err);
          std::printf("%s\n", wrong_elements(got, want, s.M, s.N).c_str());
          continue;
        }
        const double median = median_ms(call, warmup, repeats, stream);
        if (std::isnan(cublas_bf16_ms)) cublas_bf16_ms = median;
        std::printf("| %ldx%ldx%ld | %s | %.3f | %.0f | %.2f | %.2e |\n", s.M, s.N, s.K, name, median,
                    2.0 * s.M * s.N * s.K / (median * 1e6), cublas_bf16_ms / median, err);
      }
    }
  }
#endif
  return 0;
}
