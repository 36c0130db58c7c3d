// The BF16 tensor-core tile kernel's shared-memory layouts and lane
// addresses (kernels/cuda/gemm/tiled_bf16_rules.h), checked on the CPU: one
// block's slice goes through an emulation of what the kernel does with it
// (the loaders' slots stored as 8-byte runs, ldmatrix.x4 with or without
// .trans, mma.sync m16n8k16, the accumulators' positions), each
// instruction emulated from the PTX ISA's definition, not from the rules
// under test, and the block's tile must equal the plain product. The
// values are small integers, exact in BF16 and in every sum, so equality
// is exact. The device itself runs the kernel in tests/cuda (v11 and the
// implicit convolution at bf16 precision).
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cuda/gemm/tiled_bf16_rules.h"
#include "kernels/cuda/gemm/tiled_rules.h"
#include "tests/support/helpers.h"

namespace tl = crfseg::kernels::cuda::tiled;

namespace {

constexpr int kThreads = tl::kThreads, kTileN = 128, BK = tl::kBf16Depth;

uint16_t bf16_bits(float v) {  // exact for the small integers used here
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>(u >> 16);
}
float from_bits(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// X [rows][BK] stored as the kernel's store_slice_bf16 stores a loader's
// slots: four values from slot_origin along the depth (kContig) or the
// rows, one run at Tile::offset. Checks that the runs are 8-byte aligned
// and cover every value once.
template <int kRows, bool kContig>
std::vector<uint16_t> store_tile(const std::vector<float>& x) {
  using Tile = tl::Bf16Tile<kRows, kContig>;
  std::vector<uint16_t> smem(Tile::kElems, 0xffff);
  std::vector<int> hits(kRows * BK, 0);
  constexpr int kSlots = kRows * BK / 4 / kThreads;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kSlots; ++i) {
      const tl::TilePosition o = tl::slot_origin<kContig, kRows, BK>(t + i * kThreads);
      const int at = Tile::offset(o.m, o.n);
      CHECK(at % 4 == 0);
      REQUIRE(at >= 0);
      REQUIRE(at + 4 <= Tile::kElems);
      for (int j = 0; j < 4; ++j) {
        const int r = kContig ? o.m : o.m + j, k = kContig ? o.n + j : o.n;
        REQUIRE((r < kRows && k < BK));
        ++hits[r * BK + k];
        smem[at + j] = bf16_bits(x[r * BK + k]);
      }
    }
  }
  for (int h : hits) CHECK(h == 1);
  return smem;
}

// ldmatrix.sync.m8n8.x4(.trans).b16 as the PTX ISA defines it: lanes
// 8 i .. 8 i + 7 give matrix i's row addresses (element offsets here);
// register i of lane l holds two values of matrix i: row l / 4, elements
// 2 (l % 4) and + 1; with .trans (row 2 (l % 4), column l / 4) and (row
// 2 (l % 4) + 1, column l / 4). First value in the low half.
using Regs = std::array<std::array<uint32_t, 4>, 32>;
Regs ldmatrix_x4(const std::vector<uint16_t>& smem, const std::array<int, 32>& address, bool trans) {
  Regs out{};
  for (int l = 0; l < 32; ++l) {
    CHECK(address[l] % 8 == 0);  // 16-byte aligned rows
    REQUIRE((address[l] >= 0 && address[l] + 8 <= static_cast<int>(smem.size())));
  }
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < 4; ++i) {
      uint16_t lo, hi;
      if (!trans) {
        const int row = address[8 * i + l / 4];
        lo = smem[row + 2 * (l % 4)];
        hi = smem[row + 2 * (l % 4) + 1];
      } else {
        lo = smem[address[8 * i + 2 * (l % 4)] + l / 4];
        hi = smem[address[8 * i + 2 * (l % 4) + 1] + l / 4];
      }
      out[l][i] = lo | (static_cast<uint32_t>(hi) << 16);
    }
  }
  return out;
}

float low(uint32_t r) { return from_bits(static_cast<uint16_t>(r & 0xffff)); }
float high(uint32_t r) { return from_bits(static_cast<uint16_t>(r >> 16)); }

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 as the PTX ISA defines its
// fragments (lane = 4 g + t): A {a0 a1} (g, 2t..), {a2 a3} (g+8, 2t..),
// {a4 a5} (g, 2t+8..), {a6 a7} (g+8, 2t+8..); B {b0 b1} (k = 2t.., n = g),
// {b2 b3} (k = 2t+8.., n = g); C c0 c1 (g, 2t..), c2 c3 (g+8, 2t..).
void mma(std::array<std::array<float, 4>, 32>& c, const std::array<std::array<uint32_t, 4>, 32>& a,
         const std::array<std::array<uint32_t, 2>, 32>& b) {
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int q = 0; q < 4; ++q) {
      A[rows[q]][cols[q]] = low(a[l][q]);
      A[rows[q]][cols[q] + 1] = high(a[l][q]);
    }
    for (int q = 0; q < 2; ++q) {
      B[2 * t + 8 * q][g] = low(b[l][q]);
      B[2 * t + 8 * q + 1][g] = high(b[l][q]);
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int q = 0; q < 4; ++q) {
      const int m = g + 8 * (q / 2), n = 2 * t + q % 2;
      for (int k = 0; k < 16; ++k) c[l][q] += A[m][k] * B[k][n];
    }
  }
}

template <int kTileM, bool kContigA, bool kContigB>
void check_block(uint64_t seed) {
  using Warp = tl::Bf16WarpTile<kTileM>;
  // A [kTileM][BK] and B [kTileN][BK] (B's rows are C's columns), integers
  // in [-4, 4].
  std::vector<float> a(kTileM * BK), b(kTileN * BK);
  uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(static_cast<int>((s >> 33) % 9) - 4);
  };
  for (float& v : a) v = next();
  for (float& v : b) v = next();
  const std::vector<uint16_t> as = store_tile<kTileM, kContigA>(a), bs = store_tile<kTileN, kContigB>(b);

  std::vector<float> tile(kTileM * kTileN, 0.0f);
  std::vector<int> hits(kTileM * kTileN, 0);
  for (int warp = 0; warp < kThreads / 32; ++warp) {
    const int wm = Warp::row0(warp), wn = Warp::col0(warp);
    std::array<std::array<float, 4>, 32> acc[Warp::kTilesM][Warp::kTilesN] = {};
    for (int kk = 0; kk < BK; kk += 16) {
      Regs af[Warp::kTilesM], bf[Warp::kTilesN / 2];
      for (int i = 0; i < Warp::kTilesM; ++i) {
        std::array<int, 32> address;
        for (int l = 0; l < 32; ++l) address[l] = tl::a_fragment_row<kTileM, kContigA>(wm + 16 * i, kk, l);
        af[i] = ldmatrix_x4(as, address, !kContigA);
      }
      for (int j = 0; j < Warp::kTilesN / 2; ++j) {
        std::array<int, 32> address;
        for (int l = 0; l < 32; ++l) address[l] = tl::b_fragment_row<kTileN, kContigB>(wn + 16 * j, kk, l);
        bf[j] = ldmatrix_x4(bs, address, !kContigB);
      }
      for (int i = 0; i < Warp::kTilesM; ++i) {
        for (int j = 0; j < Warp::kTilesN; ++j) {
          // The kernel's pairing: registers 0, 1 of a B load are tile 2 j'
          // (b0b1, b2b3), registers 2, 3 tile 2 j' + 1.
          std::array<std::array<uint32_t, 2>, 32> bj;
          for (int l = 0; l < 32; ++l) bj[l] = {bf[j / 2][l][2 * (j % 2)], bf[j / 2][l][2 * (j % 2) + 1]};
          mma(acc[i][j], af[i], bj);
        }
      }
    }
    for (int i = 0; i < Warp::kTilesM; ++i) {
      for (int j = 0; j < Warp::kTilesN; ++j) {
        for (int l = 0; l < 32; ++l) {
          for (int r = 0; r < 4; ++r) {
            const tl::TilePosition p = tl::accumulator_position(wm + 16 * i, wn + 8 * j, l, r);
            REQUIRE((p.m >= 0 && p.m < kTileM && p.n >= 0 && p.n < kTileN));
            tile[p.m * kTileN + p.n] = acc[i][j][l][r];
            ++hits[p.m * kTileN + p.n];
          }
        }
      }
    }
  }
  int wrong = 0, missed = 0;
  for (int m = 0; m < kTileM; ++m) {
    for (int n = 0; n < kTileN; ++n) {
      float want = 0.0f;
      for (int k = 0; k < BK; ++k) want += a[m * BK + k] * b[n * BK + k];
      wrong += tile[m * kTileN + n] != want;
      missed += hits[m * kTileN + n] != 1;
    }
  }
  INFO("kTileM " << kTileM << ", A k-contiguous " << kContigA << ", B k-contiguous " << kContigB);
  CHECK(missed == 0);
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("tiled BF16 kernel: shared layouts, ldmatrix addresses and mma fragments give the plain product") {
  check_block<128, true, true>(1);
  check_block<128, true, false>(2);
  check_block<128, false, true>(3);
  check_block<128, false, false>(4);
  check_block<64, true, true>(5);
  check_block<64, true, false>(6);
  check_block<64, false, true>(7);
  check_block<64, false, false>(8);
}

TEST_CASE("tiled BF16 kernel: ldmatrix's eight row addresses per phase fall in eight different bank groups") {
  // A phase of ldmatrix reads one 8 x 8 matrix, 8 rows of 16 bytes; without
  // conflicts they lie in different 16-byte groups of the 128-byte bank
  // row. The padded strides (tiled_bf16_rules.h) are what ensure it.
  auto check = [](auto tile, const char* what) {
    using Tile = decltype(tile);
    for (int k0 = 0; k0 < BK; k0 += 8) {
      bool seen[8] = {};
      for (int l = 0; l < 8; ++l) {
        const int group = (Tile::block_row(0, k0, l) * 2 / 16) % 8;
        INFO(std::string(what) << ", depth " << k0 << ", lane " << l);
        CHECK_FALSE(seen[group]);
        seen[group] = true;
      }
    }
  };
  check(tl::Bf16Tile<128, true>{}, "128 rows, k-contiguous");
  check(tl::Bf16Tile<128, false>{}, "128 rows, row-contiguous");
  check(tl::Bf16Tile<64, true>{}, "64 rows, k-contiguous");
  check(tl::Bf16Tile<64, false>{}, "64 rows, row-contiguous");
}

TEST_CASE("tile kernels' slots: each value of a slice once, consecutive slots at consecutive addresses") {
  // slot_origin (tiled_rules.h) is the one definition the loaders and both
  // kernels' shared-memory stores use. Stored with its contiguous direction
  // of length L (the depth BK when kContig, else the tile's rows), slot s
  // must start 4 s values into the slice: a warp's 32 slots read 128
  // consecutive values (or whole rows of them).
  auto check = [](auto contig, auto tile, auto depth) {
    constexpr bool kContig = decltype(contig)::value;
    constexpr int kTile = decltype(tile)::value, kDepth = decltype(depth)::value;
    constexpr int L = kContig ? kDepth : kTile;
    std::vector<int> hits(kTile * kDepth, 0);
    for (int s = 0; s < kTile * kDepth / 4; ++s) {
      const tl::TilePosition o = tl::slot_origin<kContig, kTile, kDepth>(s);
      const int along = kContig ? o.n : o.m, across = kContig ? o.m : o.n;
      CHECK(across * L + along == 4 * s);
      for (int j = 0; j < 4; ++j) ++hits[(kContig ? o.m : o.m + j) * kDepth + (kContig ? o.n + j : o.n)];
    }
    for (int h : hits) CHECK(h == 1);
  };
  using std::integral_constant;
  check(std::true_type{}, integral_constant<int, 128>{}, integral_constant<int, 16>{});
  check(std::false_type{}, integral_constant<int, 128>{}, integral_constant<int, 16>{});
  check(std::true_type{}, integral_constant<int, 64>{}, integral_constant<int, 32>{});
  check(std::false_type{}, integral_constant<int, 64>{}, integral_constant<int, 32>{});
  check(std::true_type{}, integral_constant<int, 256>{}, integral_constant<int, 8>{});
  check(std::false_type{}, integral_constant<int, 256>{}, integral_constant<int, 8>{});
}
