// The Hopper wgmma GEMM's layout rules (wgmma.cuh): its tile sizes, where
// each operand's rows lie in a pipeline stage, the shared-memory matrix
// descriptors it hands to wgmma, which accumulator of which thread is which
// element of C, and which tile each block computes. Host-device code, so
// the kernel and the CPU test (tests/kernels/test_wgmma_rules.cpp, which
// runs one whole product through an emulation of the TMA copies, the
// descriptors' addressing and wgmma) share one definition.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels::cuda::wgmma {

constexpr int BM = 128, BN = 256, kRowBytes = 128, kStages = 4;
constexpr int kConsumers = 2;  // warpgroups of 64 rows each
constexpr int kConsumerRows = BM / kConsumers;
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kTileABytes = BM * kRowBytes, kTileBBytes = BN * kRowBytes;
constexpr int kStageBytes = kTileABytes + kTileBBytes;  // 48 KiB, a multiple of the 1 KiB swizzle atom
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + slack to align the first stage to 1 KiB
constexpr int kGroupM = 16;                               // tile rows per raster group (L2 reuse)
constexpr int kBarrierBytes = 2 * kStages * 8;            // the static `full` and `empty` barriers
constexpr int kStepBytes = 32;                            // K bytes one wgmma takes (k8 TF32, k16 BF16)
constexpr int kSwizzleAtom = 1024;                        // 8 rows of 128 bytes: the 128-byte swizzle's period

// A pipeline stage (which starts on a 1 KiB boundary) holds A's tile,
// then B^T's: one TMA box of A's BM rows at byte 0, and kCluster boxes of
// B's, cluster block `rank` loading rows rank BN / kCluster .. of the tile
// and the TMA multicasting them to the same offset in every block of the
// cluster. Consumer c reads its 64 rows of A from a_rows(c), and all of B
// from kTileABytes. Every offset is a whole number of swizzle atoms, so the
// swizzle the TMA writes (by row within the box) is the one wgmma reads
// (by address bits).
struct Box {
  int offset;         // bytes from the stage's start
  int64_t first_row;  // of the operand (A [M][K] or B^T [N][K]) in global memory
  int rows;           // of 128 bytes
};
CRFSEG_HD constexpr Box a_box(int tile_m) { return {0, static_cast<int64_t>(tile_m) * BM, BM}; }
CRFSEG_HD constexpr Box b_box(int tile_n, int rank, int cluster) {
  return {kTileABytes + rank * (BN / cluster) * kRowBytes, static_cast<int64_t>(tile_n) * BN + rank * (BN / cluster),
          BN / cluster};
}
CRFSEG_HD constexpr int a_rows(int consumer) { return consumer * kConsumerRows * kRowBytes; }

// The pipeline's barriers (one `full` and one `empty` per stage; an
// mbarrier completes a phase when its pending arrivals reach zero with no
// bytes outstanding, and try_wait.parity(P) returns once the phase of
// parity P has completed, a fresh barrier's phase "before 0" counting as
// completed with parity 1). Slice k uses stage k mod kStages in round
// k / kStages. The producer may refill the stage once round - 1's
// consumers have released it: it waits on `empty` with the parity of that
// earlier phase, which for round 0 is the fresh barrier's completed one.
// Consumers wait on `full` for the phase of this round's copies. Every
// consumer warp of the cluster arrives on every block's `empty`.
CRFSEG_HD constexpr int stage_of(int slice) { return slice % kStages; }
CRFSEG_HD constexpr uint32_t empty_parity(int slice) { return static_cast<uint32_t>((slice / kStages) & 1) ^ 1u; }
CRFSEG_HD constexpr uint32_t full_parity(int slice) { return static_cast<uint32_t>((slice / kStages) & 1); }
CRFSEG_HD constexpr int empty_arrivals(int cluster) { return cluster * kConsumers * 4; }

// Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format") of a
// K-major tile whose rows are 128 bytes, 128-byte swizzle: start address
// (bits 0-13), leading byte offset (bits 16-29; unused for swizzled
// K-major, 16 by convention), stride byte offset 1024 (bits 32-45: from one
// 8-row atom to the next), base offset 0 (bits 49-51: the tiles start on
// atoms) and swizzle mode 1 (128 B) in bits 62-63. Byte fields are in units
// of 16 bytes. The start address may move by kStepBytes inside an atom's
// row to reach the next step of K.
CRFSEG_HD constexpr uint64_t desc_sw128(uint32_t addr) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(16 >> 4) << 16) |
         (static_cast<uint64_t>(kSwizzleAtom >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// Accumulator i (of 128) of thread `lane` (0-127) of a consumer warpgroup
// (wgmma's D fragment for m64nNk*, FP32): warp w = lane / 32 holds rows
// 16 w .. 16 w + 15; lane 4 g + t of it holds, for each 8-column block j,
// d[4j] (row g, column 8j + 2t), d[4j+1] (g, 8j+2t+1), d[4j+2] (g+8, 8j+2t)
// and d[4j+3] (g+8, 8j+2t+1). Rows and columns of the consumer's 64 x 256.
struct AccPosition {
  int row, col;
};
// The lane's first accumulator, and where accumulator i lies from it (the
// same for every lane, so the kernel's unrolled stores use constants).
CRFSEG_HD constexpr AccPosition accumulator_origin(int lane) {
  return {16 * (lane / 32) + (lane % 32) / 4, 2 * (lane % 4)};
}
CRFSEG_HD constexpr AccPosition accumulator_step(int i) { return {8 * ((i % 4) / 2), 8 * (i / 4) + i % 2}; }
CRFSEG_HD constexpr AccPosition accumulator_position(int lane, int i) {
  const AccPosition o = accumulator_origin(lane), d = accumulator_step(i);
  return {o.row + d.row, o.col + d.col};
}

// The grid: tiles of C, tile rows rounded up to whole clusters (a block
// past M loads zeros, the TMA filling boxes outside the matrix, and stores
// nothing, but still delivers its share of B to its partner).
struct Grid {
  int64_t tiles_m, tiles_n;
};
CRFSEG_HD constexpr Grid grid_of(int64_t M, int64_t N, int cluster) {
  return {(M + BM * cluster - 1) / (BM * cluster) * cluster, (N + BN - 1) / BN};
}

// The first 1 KiB boundary at or after a shared-memory address: where the
// kernel's stages start (kSmemBytes leaves room for the shift).
CRFSEG_HD constexpr uint32_t atom_aligned(uint32_t addr) {
  return addr + ((kSwizzleAtom - (addr & (kSwizzleAtom - 1))) & (kSwizzleAtom - 1));
}

// Block id -> (tile row, tile column), kGroupM tile rows at a time, so the
// blocks resident together share their A rows and B columns in L2. With
// tiles_m a multiple of the cluster size, a cluster's consecutive blocks
// get consecutive tile rows of one tile column (the B tile they share).
struct TileIndex {
  int m, n;
};
CRFSEG_HD constexpr TileIndex tile_of(int id, int tiles_m, int tiles_n) {
  const int per_group = kGroupM * tiles_n, first = (id / per_group) * kGroupM;
  const int rows = tiles_m - first < kGroupM ? tiles_m - first : kGroupM, in_group = id % per_group;
  return {first + in_group % rows, in_group / rows};
}

}  // namespace crfseg::kernels::cuda::wgmma
