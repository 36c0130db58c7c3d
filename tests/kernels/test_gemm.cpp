// Every registered SGEMM variant against kernels::ref::gemm, for all four
// transpose cases, alpha/beta, padded leading dims and awkward sizes
// (1, primes, tile-1, tile+1, non-square), including shapes around the
// MR x NR tiles and MC/KC/NC blocks of the BLIS variants (blis_loops.h).
// Variants the CPU cannot run are skipped and listed as NOT TESTED.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/gemm.h"
#include "kernels/cpu/gemm/transpose_pack.h"
#include "kernels/ref/gemm.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v(n);
  for (float& x : v) x = 2.0f * g.uniform_f32() - 1.0f;
  return v;
}

}  // namespace

TEST_CASE("every SGEMM variant matches the reference") {
  struct Size {
    int64_t M, N, K;
  };
  const std::vector<Size> sizes = {
      {1, 1, 1}, {1, 17, 5}, {13, 1, 7}, {7, 13, 1}, {31, 33, 29}, {15, 47, 63}, {65, 17, 97}, {97, 129, 31},
      {128, 96, 257},
      // Blocked variants (v2+, blis_loops.h): M around MR = 6 and 12, N around
      // NR = 16 and 32, so full tiles, edge tiles and both together occur.
      {5, 15, 3}, {6, 16, 4}, {7, 17, 9}, {13, 33, 11}, {12, 32, 2}, {25, 65, 19},
      // K around KC (256 for v2/v3; 192 is kept for a future AVX-512 variant): a second, 1-deep pc slice
      // must accumulate onto the first (beta applied once only).
      {6, 16, 255}, {7, 17, 257}, {13, 31, 191}, {11, 35, 193},
      // N > NC (4096 for v2/v3, 2048 for v4): several jc blocks, the last
      // narrower than NR.
      {7, 4100, 5},
      // v5 (KC = 320, NC = 1024, MC = 576, A-resident loop order): K and N
      // around its blocks, and M above MC per thread with 2 threads.
      {13, 33, 319}, {13, 33, 321}, {7, 1030, 5}, {25, 1030, 321}, {1160, 20, 30},
      // v4 (MC = 96, KC = 1024, NC = 2048): K around KC, two and three pc
      // slices (the last 1 deep), and N past NC with M over two MC blocks.
      {13, 33, 1023}, {97, 40, 1025}, {25, 70, 2049}, {193, 2051, 9},
      // Several MC, KC blocks at once, with uneven edges and 2+ threads.
      {300, 520, 700},
      // Row blocks dealt whole MR panels unevenly (blis_sgemm's balanced
      // split, v4 on 2 threads: 26 and 85 panels over 4 and 12 blocks), the
      // last panel partial; over 2^20 multiply-adds, so they run threaded.
      {301, 67, 61}, {1009, 40, 31},
      // Short and wide (M < MC per thread): the 2-D per-thread block grid,
      // several column blocks and two KC slices.
      {20, 1000, 300}, {1, 3001, 400}, {7, 515, 257}};
  for (const Size& s : sizes) {
    for (int trans = 0; trans < 4; ++trans) {
      const bool ta = trans & 1, tb = trans & 2;
      // Leading dims padded by 3 to catch code that assumes ld == row length.
      const int64_t lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 3, ldc = s.N + 3;
      const std::vector<float> A = random_floats((ta ? s.K : s.M) * lda, 1);
      const std::vector<float> B = random_floats((tb ? s.N : s.K) * ldb, 2);
      const std::vector<float> C0 = random_floats(s.M * ldc, 3);
      for (float beta : {0.0f, 1.0f, -0.5f}) {
        // The reference (double accumulation) runs once; every variant is compared to it.
        const float alpha = 1.25f;
        std::vector<float> want = C0;
        kernels::ref::gemm<float>(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, want.data(),
                                  ldc);
        const std::vector<double> w(want.begin(), want.end());
        for (const auto& variant : kernels::cpu::sgemm_variants()) {
          if (!variant.available()) continue;  // reported in "variants this CPU cannot run"
          std::vector<float> got = C0;
          variant.fn(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
          const std::vector<double> g(got.begin(), got.end());
          INFO("variant " << variant.name << " M=" << s.M << " N=" << s.N << " K=" << s.K << " transA=" << ta
                          << " transB=" << tb << " beta=" << beta);
          // rtol scaled with the reduction length (float accumulation order differs).
          CHECK_CLOSE(g, w, 1e-5 * s.K, 1e-6 * s.K);
        }
      }
    }
  }
}

TEST_CASE("every SGEMM variant gives the same bits for any thread count") {
  // blis_sgemm takes the row split or the 2-D block grid depending on the
  // thread count (M = 64: the grid on 2 and 3 threads, the row split on 1),
  // and deals rows out differently; every output must still be the same
  // sum in the same order. K = 1100 leaves a short last KC slice for every
  // blocked variant (KC 256-1024), the slicing both paths must share.
  struct Size {
    int64_t M, N, K;
  };
  for (const Size& s : {Size{64, 300, 1100}, Size{301, 130, 1100}, Size{1009, 70, 45}}) {
    const std::vector<float> A = random_floats(s.M * s.K, 4), B = random_floats(s.K * s.N, 5);
    for (const auto& variant : kernels::cpu::sgemm_variants()) {
      if (!variant.available()) continue;
      INFO("variant " << variant.name << " M=" << s.M << " N=" << s.N << " K=" << s.K);
      std::vector<float> one(s.M * s.N), three(s.M * s.N);
      const int saved = omp_get_max_threads();
      omp_set_num_threads(1);
      variant.fn(false, false, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.N, 0.0f, one.data(), s.N);
      omp_set_num_threads(3);
      variant.fn(false, false, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.N, 0.0f, three.data(), s.N);
      omp_set_num_threads(saved);
      CHECK(one == three);
    }
  }
}

TEST_CASE("blis_block: B read in place, and C streamed out, give the packed path's bits") {
  // M = 29: two full row panels of 12 and one of 5; N = 100: three full
  // 32-column panels read in place and a 4-wide last panel packed. K = 300
  // fits one depth slice of both configs (KC 320 and 1024), so C streams;
  // K = 1100 does not, and blis_block then stores plainly (a second slice
  // would read back what the first streamed out). ldc = 100 puts three
  // rows in four off a 64-byte line (those store plainly), ldc = 128 none.
  // C starts as NaN: beta = 0 must not read it.
  const int64_t M = 29, N = 100;
  for (const char* name : {"v4_ukernel_avx512_12x32", "v5_avx512_12x32_a_resident"}) {
    const auto& variant = kernels::cpu::sgemm_variant(name);
    if (!variant.available()) {
      MESSAGE(std::string(name) << " NOT TESTED here: " << variant.constraints);
      continue;
    }
    const kernels::cpu::BlisConfig& cfg = variant.blis();
    REQUIRE((cfg.ukernel_b_in_place != nullptr && cfg.ukernel_b_in_place_stream != nullptr));
    for (const int64_t K : {int64_t{300}, int64_t{1100}}) {
      const std::vector<float> A = random_floats(M * K, 6), B = random_floats(K * N, 7);
      const kernels::cpu::BlisWorkspace ws(cfg, K, N);
      const kernels::cpu::MatrixOperand b{B.data(), N, false};
      std::vector<float> want(M * N);
      kernels::ref::gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, want.data(), N);
      for (const int64_t ldc : {N, int64_t{128}}) {
        INFO(std::string(name) << ", K " << K << ", ldc " << ldc);
        const auto run = [&](bool in_place, bool stream) {
          const CpuArray<float> C = cpu_array<float>(M * ldc);
          REQUIRE(reinterpret_cast<uintptr_t>(C.get()) % 64 == 0);
          std::fill_n(C.get(), M * ldc, std::nanf(""));
          kernels::cpu::blis_block(cfg, M, N, K, kernels::cpu::AOperand{A.data(), K},
                                   kernels::cpu::matrix_packer(b, in_place), 0, 0.0f, C.get(), ldc, ws, stream);
          std::vector<float> out;
          for (int64_t i = 0; i < M; ++i) out.insert(out.end(), C.get() + i * ldc, C.get() + i * ldc + N);
          return out;
        };
        const std::vector<float> packed = run(false, false);
        CHECK(run(true, false) == packed);
        CHECK(run(true, true) == packed);
        CHECK_CLOSE(std::vector<double>(packed.begin(), packed.end()), std::vector<double>(want.begin(), want.end()),
                    1e-5 * K, 1e-6 * K);
      }
    }
  }
}

TEST_CASE("choose_block_grid covers the matrix and balances the blocks over the threads") {
  kernels::cpu::BlisConfig cfg{};
  cfg.mr = 12, cfg.nr = 32, cfg.mc = 576, cfg.kc = 320, cfg.nc = 1024;
  // The convolution weight gradients' shapes (M = K channels, N = C R S) and
  // awkward ones: with 2 threads, 9 blocks of 256 columns would leave one
  // thread 5 blocks and the other 4.
  for (const int64_t threads : {1, 2, 3, 4}) {
    for (const int64_t M : {1, 12, 64, 128, 256, 1000}) {
      for (const int64_t N : {1, 31, 33, 576, 1152, 2304, 4608, 4100}) {
        INFO("threads " << threads << ", M " << M << ", N " << N);
        const kernels::cpu::BlockGrid g = kernels::cpu::choose_block_grid(cfg, M, N, threads, 256, true);
        REQUIRE(g.nb % cfg.nr == 0);
        REQUIRE(g.mb % cfg.mr == 0);
        CHECK(g.nb <= std::max<int64_t>(256, cfg.nr));
        CHECK(g.row_blocks * g.mb >= M);
        CHECK((g.row_blocks - 1) * g.mb < M);  // no empty row block
        CHECK(g.col_blocks * g.nb >= N);
        CHECK((g.col_blocks - 1) * g.nb < N);  // no empty column block
        const int64_t blocks = g.row_blocks * g.col_blocks;
        // When one-panel-wide columns would balance (a whole number of
        // panels, divisible by the thread count), the grid is balanced.
        if (blocks > threads && N % cfg.nr == 0 && (N / cfg.nr) % threads == 0) CHECK(blocks % threads == 0);
      }
    }
  }
  const kernels::cpu::BlockGrid g = kernels::cpu::choose_block_grid(cfg, 256, 2304, 2, 256, true);
  CHECK(g.col_blocks == 12);
  CHECK(g.nb == 192);
}

TEST_CASE("variants this CPU cannot run") {
  for (const auto& variant : kernels::cpu::sgemm_variants()) {
    if (!variant.available()) MESSAGE("variant " << variant.name << " NOT TESTED here: " << variant.constraints);
  }
}

TEST_CASE("K == 0 or alpha == 0 only scales C by beta") {
  const std::vector<float> A(6, 1.0f), B(6, 1.0f);
  for (const auto& variant : kernels::cpu::sgemm_variants()) {
    if (!variant.available()) continue;
    std::vector<float> C(4, 2.0f);
    variant.fn(false, false, 2, 2, 0, 1.0f, A.data(), 1, B.data(), 2, 0.5f, C.data(), 2);
    CHECK_MESSAGE(C == std::vector<float>(4, 1.0f), variant.name);
    variant.fn(false, false, 2, 2, 3, 0.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2);
    CHECK_MESSAGE(C == std::vector<float>(4, 0.0f), variant.name);
  }
}

TEST_CASE("beta == 0 ignores NaN in C, as BLAS does") {
  const std::vector<float> A(6, 1.0f), B(6, 1.0f);
  for (const auto& variant : kernels::cpu::sgemm_variants()) {
    if (!variant.available()) continue;
    std::vector<float> C(4, std::nanf(""));
    variant.fn(false, false, 2, 2, 3, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2);
    CHECK_MESSAGE(C == std::vector<float>(4, 3.0f), variant.name);
  }
}

TEST_CASE("variant lookup") {
  CHECK(kernels::cpu::sgemm_variant("v0_naive").name == "v0_naive");
  check_throws_with<ValueError>([] { kernels::cpu::sgemm_variant("v99"); }, "unknown variant \"v99\"; known: v0_naive");
}

TEST_CASE("transpose_pack matches its plain loop, leaving other entries alone") {
  // The packers' transposing copy (AVX-512 where the CPU has it) against the
  // reference loop: every row count up to 16, depths around the 16-float
  // tile, strides of the packed panels (MR = 12, NR = 16 or 32), alpha.
  if (!kernels::cpu::has_avx512f()) MESSAGE("no AVX-512 on this CPU: transpose_pack runs its plain loop");
  const auto source = random_floats(16 * 41, 3);
  for (const int rows : {1, 2, 5, 11, 12, 15, 16})
    for (const int64_t kc : {1, 7, 15, 16, 17, 33, 41})
      for (const int64_t ld : {12, 16, 32})
        for (const float alpha : {1.0f, -0.5f}) {
          if (rows > ld) continue;
          const float* src[16];
          for (int r = 0; r < rows; ++r) src[r] = source.data() + r * 41 + (r % 3);  // unaligned starts
          std::vector<float> want(kc * ld + 5, 9.0f), got(want.size(), 9.0f);
          kernels::cpu::transpose_pack_ref(src, rows, kc, alpha, want.data(), ld);
          kernels::cpu::transpose_pack(src, rows, kc, alpha, got.data(), ld);
          CHECK_MESSAGE(got == want, "rows " << rows << " kc " << kc << " ld " << ld << " alpha " << alpha);
        }
}
