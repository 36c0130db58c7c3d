// The Hopper wgmma GEMM's layout rules (kernels/cuda/gemm/wgmma_rules.h),
// checked on the CPU: whole products go through an emulation of what the
// kernel asks the hardware to do with them, block by block and slice by
// slice (the TMA's boxes written into a stage with the 128-byte swizzle,
// zeros outside the matrix; wgmma reading both operands through the
// descriptors the kernel builds; the FP32 accumulators' owners; the
// epilogue through the rules' positions), and C must equal the plain
// product. Each instruction is emulated from its definition (PTX ISA:
// "Matrix Descriptor Format", the shared-memory layouts of K-major
// operands with 128-byte swizzling, wgmma's D fragment; CUDA programming
// guide: the TMA's swizzle modes), never from the rules under test. The
// values are small integers, exact in TF32, BF16 and every sum. The device
// runs the kernel itself in tests/cuda (v6/v7/v9/v10 against the CPU).
//
// A second check runs the kernel's pipeline (its producer, its consumers,
// the TMA's copies landing, wgmma groups finishing) as a model under many
// random interleavings, with mbarriers as the PTX ISA defines them: a
// wrong parity or arrival count shows as a deadlock, a stage read before
// its copies land, or a stage refilled while a wgmma still reads it. On the
// device each of those is a hang or wrong values.
#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <random>
#include <vector>

#include "kernels/cuda/gemm/wgmma_rules.h"
#include "tests/support/helpers.h"

namespace wg = crfseg::kernels::cuda::wgmma;

namespace {

// A K-major operand in global memory as raw bytes: rows x K elements of
// `elem` bytes (4: FP32 bits read as TF32; 2: BF16), row stride ld
// elements; the padding between K and ld holds a value that must never be
// read (the TMA's box stops at K).
struct Operand {
  int64_t rows, K, ld;
  int elem;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // rows x K, for the plain product
};

void put(uint8_t* p, float v, int elem) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if (elem == 4) {
    std::memcpy(p, &u, 4);
  } else {
    const uint16_t h = static_cast<uint16_t>(u >> 16);  // exact for the small integers used
    std::memcpy(p, &h, 2);
  }
}
float get(const uint8_t* p, int elem) {
  uint32_t u = 0;
  if (elem == 4) {
    std::memcpy(&u, p, 4);
    u &= ~uint32_t{0x1FFF};  // TF32 reads the top 19 bits
  } else {
    uint16_t h;
    std::memcpy(&h, p, 2);
    u = static_cast<uint32_t>(h) << 16;
  }
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

Operand make_operand(int64_t rows, int64_t K, int elem, uint32_t seed) {
  const int64_t per16 = 16 / elem, ld = (K + per16 - 1) / per16 * per16 + per16;  // rows padded past K
  Operand op{rows, K, ld, elem, std::vector<uint8_t>(static_cast<size_t>(rows * ld * elem)),
             std::vector<float>(static_cast<size_t>(rows * K))};
  uint32_t state = seed;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < ld; ++k) {
      state = state * 1664525u + 1013904223u;
      const float v = k < K ? static_cast<float>(static_cast<int>(state >> 28) - 8) : 1000.0f;  // -8 .. 7
      put(&op.bytes[static_cast<size_t>((r * ld + k) * elem)], v, elem);
      if (k < K) op.values[static_cast<size_t>(r * K + k)] = v;
    }
  }
  return op;
}

// One block's shared memory, addressed by shared-window addresses from
// `base` on.
struct Smem {
  uint32_t base;
  std::vector<uint8_t> bytes;
  uint8_t* at(uint32_t addr) {
    if (addr < base || addr - base >= bytes.size()) FAIL("shared address ", addr, " outside the block's memory");
    return &bytes[addr - base];
  }
};

// The 128-byte swizzle (Swizzle<3, 4, 3> in CuTe's terms): the 16-byte
// chunk of an address (bits 4-6) XOR its 128-byte row within the 1 KiB
// atom (bits 7-9). The TMA writes through it and wgmma reads through it.
uint32_t swizzle128(uint32_t addr) { return addr ^ (((addr >> 7) & 7u) << 4); }

// cp.async.bulk.tensor.2d with CU_TENSOR_MAP_SWIZZLE_128B, box {128 bytes
// of K, box_rows}, at (k0, row0): box row r is the operand's row row0 + r,
// elements k0 .. of it, stored at dst + 128 r through the swizzle; values
// past the operand's rows or K are zeros. The destination of a 128-byte
// swizzled box must lie on a 1 KiB boundary. Returns the bytes delivered
// (the barrier's transaction count: the whole box, fill included).
int tma_box(Smem& smem, uint32_t dst, const Operand& op, int64_t k0, int64_t row0, int box_rows) {
  CHECK(dst % 1024 == 0);
  const int per_row = wg::kRowBytes / op.elem;
  for (int r = 0; r < box_rows; ++r) {
    for (int e = 0; e < per_row; ++e) {
      const int64_t row = row0 + r, k = k0 + e;
      const uint32_t addr = dst + static_cast<uint32_t>(r * wg::kRowBytes + e * op.elem);
      uint8_t* p = smem.at(swizzle128(addr));
      if (row < op.rows && k < op.K) {
        std::memcpy(p, &op.bytes[static_cast<size_t>((row * op.ld + k) * op.elem)], static_cast<size_t>(op.elem));
      } else {
        std::memset(p, 0, static_cast<size_t>(op.elem));
      }
    }
  }
  return box_rows * wg::kRowBytes;
}

// Element (row, e) of the K-major operand a wgmma descriptor points at,
// for a 32-byte step of K: the fields decoded as the PTX ISA lays them
// out; in a 128-byte-swizzled K-major layout a row's 8-row group is
// `stride byte offset` apart, its row within the group 128 bytes, its
// element `elem` bytes, and the swizzle applies to the address. The
// leading byte offset would separate swizzle-width columns of K, which one
// 32-byte step never crosses.
struct Descriptor {
  uint32_t start, sbo;
};
Descriptor decode(uint64_t desc) {
  const uint32_t base_offset = static_cast<uint32_t>((desc >> 49) & 0x7), mode = static_cast<uint32_t>(desc >> 62);
  REQUIRE(mode == 1);  // 128-byte swizzle
  REQUIRE(base_offset == 0);
  return {static_cast<uint32_t>(desc & 0x3FFF) << 4, static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4};
}
float descriptor_element(Smem& smem, const Descriptor& d, int row, int e, int elem) {
  const uint32_t addr = d.start + static_cast<uint32_t>(row / 8) * d.sbo + static_cast<uint32_t>(row % 8) * 128 +
                        static_cast<uint32_t>(e * elem);
  return get(smem.at(swizzle128(addr)), elem);
}

// D fragment of wgmma m64nNk* with FP32 accumulators (PTX ISA figure
// "WGMMA .m64nNk* register fragment layout for accumulator matrix D"):
// warp w of the warpgroup covers rows 16 w .. 16 w + 15; in it, lane l has
// groupID l / 4 and threadID_in_group l % 4; register i lies in the
// 8-column block i / 4, at row groupID (+ 8 for i % 4 of 2 and 3) and
// column 2 threadID_in_group + i % 2 of the block.
struct Cell {
  int row, col;
};
Cell d_fragment(int lane, int i) {
  const int warp = lane / 32, group = (lane % 32) / 4, in_group = lane % 4;
  return {16 * warp + group + (i % 4 >= 2 ? 8 : 0), 8 * (i / 4) + 2 * in_group + i % 2};
}

// wgmma.mma_async m64n256k(32 / elem) with both operands K-major: D +=
// A (64 x k, desc_a) B^T (256 x k, desc_b), D held as the 128 threads' 128
// registers each (d[lane * 128 + i]).
void wgmma(float* d, Smem& smem, uint64_t desc_a, uint64_t desc_b, int elem) {
  const int depth = 32 / elem;
  const Descriptor da = decode(desc_a), db = decode(desc_b);
  for (int lane = 0; lane < 128; ++lane) {
    for (int i = 0; i < 128; ++i) {
      const Cell c = d_fragment(lane, i);
      float sum = 0.0f;
      for (int e = 0; e < depth; ++e) {
        sum += descriptor_element(smem, da, c.row, e, elem) * descriptor_element(smem, db, c.col, e, elem);
      }
      d[lane * 128 + i] += sum;
    }
  }
}

// C = alpha A (B^T)^T + beta C as the kernel computes it with kCluster
// blocks a cluster, every block emulated in turn: its producer's boxes
// (its own A box, and every cluster block's share of B, multicast to the
// same offset), its two consumers' wgmmas over the stage, its epilogue.
void run_kernel(const Operand& a, const Operand& b, int cluster, float alpha, float beta, std::vector<float>& C,
                int64_t ldc, uint32_t smem_raw) {
  const int64_t M = a.rows, N = b.rows, K = a.K;
  const int BK = wg::kRowBytes / a.elem;
  const wg::Grid grid = wg::grid_of(M, N, cluster);
  CHECK(grid.tiles_m * wg::BM >= M);
  CHECK(grid.tiles_n * wg::BN >= N);
  CHECK(grid.tiles_m % cluster == 0);
  const int tiles = static_cast<int>(grid.tiles_m * grid.tiles_n);
  const uint32_t stages = wg::atom_aligned(smem_raw);
  CHECK(stages % 1024 == 0);
  CHECK(stages - smem_raw + static_cast<uint32_t>(wg::kStages * wg::kStageBytes) <=
        static_cast<uint32_t>(wg::kSmemBytes));
  const int slices = static_cast<int>((K + BK - 1) / BK);
  std::vector<int> seen(static_cast<size_t>(tiles), 0);
  for (int id = 0; id < tiles; ++id) {
    const wg::TileIndex tile = wg::tile_of(id, static_cast<int>(grid.tiles_m), static_cast<int>(grid.tiles_n));
    REQUIRE((tile.m >= 0 && tile.m < grid.tiles_m && tile.n >= 0 && tile.n < grid.tiles_n));
    ++seen[static_cast<size_t>(tile.m * grid.tiles_n + tile.n)];
    const int first = id - id % cluster;  // this block's cluster: blocks first .. first + cluster - 1
    Smem smem{smem_raw, std::vector<uint8_t>(static_cast<size_t>(wg::kSmemBytes), 0xAB)};
    std::vector<float> d(static_cast<size_t>(wg::kConsumers) * 128 * 128, 0.0f);
    for (int k = 0; k < slices; ++k) {
      const uint32_t stage = stages + static_cast<uint32_t>(wg::stage_of(k) * wg::kStageBytes);
      const wg::Box box_a = wg::a_box(tile.m);
      int delivered = tma_box(smem, stage + static_cast<uint32_t>(box_a.offset), a, int64_t{k} * BK, box_a.first_row,
                              box_a.rows);
      for (int rank = 0; rank < cluster; ++rank) {  // each cluster block's share of B, from its own tile
        const wg::TileIndex its = wg::tile_of(first + rank, static_cast<int>(grid.tiles_m), static_cast<int>(grid.tiles_n));
        const wg::Box box_b = wg::b_box(its.n, rank, cluster);
        delivered += tma_box(smem, stage + static_cast<uint32_t>(box_b.offset), b, int64_t{k} * BK, box_b.first_row,
                             box_b.rows);
      }
      CHECK(delivered == wg::kStageBytes);  // what the producer announces on the stage's `full` barrier
      for (int c = 0; c < wg::kConsumers; ++c) {
        const uint32_t sa = stage + static_cast<uint32_t>(wg::a_rows(c)), sb = stage + wg::kTileABytes;
        for (int kk = 0; kk < wg::kRowBytes / wg::kStepBytes; ++kk) {
          const uint32_t step = static_cast<uint32_t>(wg::kStepBytes * kk);
          wgmma(d.data() + c * 128 * 128, smem, wg::desc_sw128(sa + step), wg::desc_sw128(sb + step), a.elem);
        }
      }
    }
    for (int c = 0; c < wg::kConsumers; ++c) {  // the epilogue, through the rules' positions
      for (int lane = 0; lane < 128; ++lane) {
        const wg::AccPosition origin = wg::accumulator_origin(lane);
        for (int i = 0; i < 128; ++i) {
          const wg::AccPosition step = wg::accumulator_step(i);
          const int64_t m = int64_t{tile.m} * wg::BM + c * wg::kConsumerRows + origin.row + step.row;
          const int64_t n = int64_t{tile.n} * wg::BN + origin.col + step.col;
          if (m >= M || n >= N) continue;
          const float acc = d[static_cast<size_t>((c * 128 + lane) * 128 + i)];
          float& out = C[static_cast<size_t>(m * ldc + n)];
          out = beta == 0.0f ? alpha * acc : alpha * acc + beta * out;
        }
      }
    }
  }
  for (int s : seen) CHECK(s == 1);  // every tile computed once
}

void check_product(int64_t M, int64_t N, int64_t K, int elem, int cluster) {
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(elem);
  CAPTURE(cluster);
  const Operand a = make_operand(M, K, elem, 11u + static_cast<uint32_t>(M));
  const Operand b = make_operand(N, K, elem, 29u + static_cast<uint32_t>(N));
  const int64_t ldc = N + 3;
  std::vector<float> C(static_cast<size_t>(M * ldc)), want(C.size());
  for (size_t i = 0; i < C.size(); ++i) C[i] = static_cast<float>(static_cast<int>(i % 7) - 3);
  const float alpha = 2.0f, beta = -1.0f;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < ldc; ++n) {
      const size_t at = static_cast<size_t>(m * ldc + n);
      if (n >= N) {
        want[at] = C[at];  // past N: untouched
        continue;
      }
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        s += a.values[static_cast<size_t>(m * K + k)] * b.values[static_cast<size_t>(n * K + k)];
      }
      want[at] = alpha * s + beta * C[at];
    }
  }
  run_kernel(a, b, cluster, alpha, beta, C, ldc, 48u + 16u * static_cast<uint32_t>(M % 5));
  int wrong = 0;
  for (size_t i = 0; i < C.size(); ++i) wrong += C[i] != want[i];
  CHECK(wrong == 0);
}

// An mbarrier (PTX ISA, "Parallel Synchronization and Communication
// Instructions: mbarrier"): a phase completes when its pending arrivals
// reach zero and its transaction count is zero (which copies may drive
// below zero before the expected bytes are announced); then the next phase
// starts with the full arrival count. try_wait.parity(P) succeeds once the
// phase of parity P has completed, i.e. while the current phase's parity is
// not P.
struct Mbarrier {
  int expected = 0, pending = 0, completed = 0;
  int64_t tx = 0;
  void init(int count) { expected = pending = count; }
  void settle() {
    if (pending == 0 && tx == 0) {
      ++completed;
      pending = expected;
    }
  }
  void arrive() {
    if (pending <= 0) FAIL("an arrival on a barrier with none pending");
    --pending;
    settle();
  }
  void expect_tx_arrive(int64_t bytes) {
    tx += bytes;
    arrive();
  }
  void complete_tx(int64_t bytes) {
    tx -= bytes;
    settle();
  }
  bool passed(uint32_t parity) const { return static_cast<uint32_t>(completed & 1) != parity; }
};

// The pipeline of one cluster over `slices` slices of K, every thread kind
// of the kernel as a step function, run in a random order of whatever can
// step. Returns false on a deadlock or a hazard (and says which).
bool run_pipeline(int cluster, int slices, uint32_t seed) {
  constexpr int S = wg::kStages, kParts = 1 + 2;  // a stage's parts: A, and up to two shares of B
  struct Copy {
    int target, stage, part, slice, bytes;
  };
  struct Consumer {
    int k = 0;
    bool waiting_full = true, done = false;
    std::deque<int> groups;  // slices whose wgmma group is still reading its stage
  };
  std::vector<std::array<Mbarrier, S>> full(cluster), empty(cluster);
  std::vector<std::array<std::array<int, kParts>, S>> content(cluster);  // slice held by each part, -1 none
  std::vector<int> produced(cluster, 0);
  std::vector<std::vector<Consumer>> consumers(cluster, std::vector<Consumer>(wg::kConsumers));
  std::vector<Copy> in_flight;
  for (int b = 0; b < cluster; ++b) {
    for (int s = 0; s < S; ++s) {
      full[b][s].init(1);
      empty[b][s].init(wg::empty_arrivals(cluster));
      content[b][s].fill(-1);
    }
  }
  const int parts = 1 + cluster;
  const int a_bytes = wg::a_box(0).rows * wg::kRowBytes, b_bytes = wg::b_box(0, 0, cluster).rows * wg::kRowBytes;
  std::mt19937 rng(seed);
  auto release = [&](int stage) {  // one consumer warpgroup: its 4 warps on every block's barrier
    for (int r = 0; r < cluster; ++r) {
      for (int w = 0; w < 4; ++w) empty[r][stage].arrive();
    }
  };
  for (;;) {
    // Everything that can step now: producers, landing copies, consumers,
    // each consumer's oldest wgmma group finishing.
    std::vector<std::array<int, 3>> ready;  // {kind, block, index}
    for (int b = 0; b < cluster; ++b) {
      const int k = produced[b];
      if (k < slices && empty[b][wg::stage_of(k)].passed(wg::empty_parity(k))) ready.push_back({0, b, 0});
      for (int c = 0; c < wg::kConsumers; ++c) {
        const Consumer& q = consumers[b][c];
        if (!q.groups.empty()) ready.push_back({3, b, c});
        if (q.done) continue;
        const bool can = q.k == slices ? q.groups.empty()
                         : q.waiting_full ? full[b][wg::stage_of(q.k)].passed(wg::full_parity(q.k))
                                          : q.groups.size() <= 1;
        if (can) ready.push_back({2, b, c});
      }
    }
    for (int i = 0; i < static_cast<int>(in_flight.size()); ++i) ready.push_back({1, 0, i});
    if (ready.empty()) break;
    const std::array<int, 3> step = ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng)];
    const int b = step[1];
    if (step[0] == 0) {  // producer: announce the stage's bytes, issue A's copy and this block's share of B
      const int k = produced[b]++, s = wg::stage_of(k);
      // Once issued, a copy may write at any moment: no wgmma group of a
      // block it writes to may still read the stage.
      for (int r = 0; r < cluster; ++r) {
        for (const Consumer& q : consumers[r]) {
          for (int g : q.groups) {
            if (wg::stage_of(g) == s) {
              MESSAGE("slice ", k, "'s copies were issued into stage ", s, " while slice ", g, "'s wgmma read it");
              return false;
            }
          }
        }
      }
      full[b][s].expect_tx_arrive(wg::kStageBytes);
      in_flight.push_back({b, s, 0, k, a_bytes});
      for (int r = 0; r < cluster; ++r) in_flight.push_back({r, s, 1 + b, k, b_bytes});  // multicast
    } else if (step[0] == 1) {  // a copy lands
      const Copy cp = in_flight[static_cast<size_t>(step[2])];
      in_flight.erase(in_flight.begin() + step[2]);
      for (const Consumer& q : consumers[cp.target]) {
        for (int g : q.groups) {
          if (wg::stage_of(g) == cp.stage) {
            MESSAGE("slice ", cp.slice, " overwrote stage ", cp.stage, " while slice ", g, "'s wgmma read it");
            return false;
          }
        }
      }
      content[cp.target][cp.stage][cp.part] = cp.slice;
      full[cp.target][cp.stage].complete_tx(cp.bytes);
    } else if (step[0] == 3) {  // the oldest wgmma group finishes
      consumers[b][step[2]].groups.pop_front();
    } else {
      Consumer& q = consumers[b][step[2]];
      if (q.k == slices) {  // wgmma_wait<0>, the last release
        if (slices > 0) release(wg::stage_of(slices - 1));
        q.done = true;
      } else if (q.waiting_full) {  // `full` passed: issue this slice's wgmmas
        const int s = wg::stage_of(q.k);
        for (int part = 0; part < parts; ++part) {
          if (content[b][s][part] != q.k) {
            MESSAGE("slice ", q.k, " read stage ", s, " part ", part, " holding slice ", content[b][s][part]);
            return false;
          }
        }
        q.groups.push_back(q.k);
        q.waiting_full = false;
      } else {  // wgmma_wait<1>: the previous slice's stage goes back
        if (q.k > 0) release(wg::stage_of(q.k - 1));
        ++q.k;
        q.waiting_full = true;
      }
    }
  }
  bool finished = in_flight.empty();
  for (int b = 0; b < cluster; ++b) {
    finished = finished && produced[b] == slices;
    for (const Consumer& q : consumers[b]) finished = finished && q.done && q.groups.empty();
  }
  if (!finished) MESSAGE("deadlock");
  return finished;
}

}  // namespace

TEST_CASE("wgmma rules: descriptor fields") {
  const uint64_t d = wg::desc_sw128(0x12345u & ~0xFu);
  CHECK((d & 0x3FFF) == (0x12340u >> 4));
  CHECK(((d >> 16) & 0x3FFF) == 1);          // leading byte offset 16 (unused)
  CHECK(((d >> 32) & 0x3FFF) == 1024 >> 4);  // stride byte offset: one 8-row atom
  CHECK(((d >> 49) & 0x7) == 0);
  CHECK((d >> 62) == 1);  // 128-byte swizzle
  CHECK(((d >> 14) & 0x3) == 0);  // reserved bits stay clear
  CHECK(((d >> 46) & 0x7) == 0);
  CHECK(((d >> 52) & 0x3FF) == 0);
}

TEST_CASE("wgmma rules: the accumulator positions cover a consumer's 64 x 256 once") {
  std::vector<int> hits(64 * 256, 0);
  for (int lane = 0; lane < 128; ++lane) {
    for (int i = 0; i < 128; ++i) {
      const wg::AccPosition p = wg::accumulator_position(lane, i);
      REQUIRE((p.row >= 0 && p.row < 64 && p.col >= 0 && p.col < 256));
      ++hits[static_cast<size_t>(p.row * 256 + p.col)];
    }
  }
  for (int h : hits) CHECK(h == 1);
}

TEST_CASE("wgmma rules: tile_of numbers every tile once, cluster blocks share a tile column") {
  for (int cluster : {1, 2}) {
    for (int64_t M : {1, 128, 129, 2100, 4096}) {
      for (int64_t N : {1, 256, 257, 3000}) {
        const wg::Grid g = wg::grid_of(M, N, cluster);
        std::vector<int> seen(static_cast<size_t>(g.tiles_m * g.tiles_n), 0);
        for (int id = 0; id < g.tiles_m * g.tiles_n; ++id) {
          const wg::TileIndex t = wg::tile_of(id, static_cast<int>(g.tiles_m), static_cast<int>(g.tiles_n));
          REQUIRE((t.m >= 0 && t.m < g.tiles_m && t.n >= 0 && t.n < g.tiles_n));
          ++seen[static_cast<size_t>(t.m * g.tiles_n + t.n)];
          if (id % cluster != 0) {
            const wg::TileIndex lead =
                wg::tile_of(id - id % cluster, static_cast<int>(g.tiles_m), static_cast<int>(g.tiles_n));
            CHECK(t.n == lead.n);  // the B tile the cluster shares
            CHECK(t.m == lead.m + id % cluster);
          }
        }
        for (int s : seen) CHECK(s == 1);
      }
    }
  }
}

TEST_CASE("wgmma rules: whole products through the emulated TMA, descriptors and wgmma") {
  // TF32 (4-byte elements, 32 of K a slice) and BF16 (2 bytes, 64): one
  // exact tile, tails in every dimension, a K shorter than one wgmma step,
  // and more tile rows than a cluster fills.
  for (int elem : {4, 2}) {
    for (int cluster : {1, 2}) {
      check_product(128, 256, 128 / elem * 2, elem, cluster);
      check_product(1, 1, 1, elem, cluster);
      check_product(200, 300, 70, elem, cluster);
      check_product(131, 5, 97, elem, cluster);
    }
  }
  check_product(389, 257, 37, 4, 2);  // four tile rows (3 needed) and a partial B share
  check_product(389, 257, 131, 2, 2);
  for (int elem : {4, 2}) {  // more slices than stages: every stage refilled
    check_product(130, 260, 300, elem, 1);
    check_product(130, 260, 300, elem, 2);
  }
}

TEST_CASE("wgmma rules: the pipeline neither hangs nor races in any order") {
  for (int cluster : {1, 2}) {
    for (int slices : {1, 2, 3, 4, 5, 8, 9, 13}) {
      for (uint32_t seed = 0; seed < 150; ++seed) {
        CAPTURE(cluster);
        CAPTURE(slices);
        CAPTURE(seed);
        REQUIRE(run_pipeline(cluster, slices, seed));
      }
    }
  }
}
