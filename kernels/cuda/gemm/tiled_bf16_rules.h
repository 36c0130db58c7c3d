// Where the BF16 tensor-core tile kernel (tiled_bf16.cuh) keeps its operand
// tiles in shared memory and which addresses each lane hands ldmatrix, in
// host-device code so that tests/kernels/test_tiled_bf16_rules.cpp checks
// them on the CPU: it emulates ldmatrix and mma.sync from the PTX ISA's
// definitions over these layouts and compares a block's products with a
// plain one, device or not.
//
// The instructions (PTX ISA; lane = 4 g + t):
//   mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32, two BF16 values per
//   32-bit register, the lower index in the low half:
//     A (16 x 16): {a0 a1} (g, 2t..2t+1)   {a2 a3} (g+8, 2t..)
//                  {a4 a5} (g, 2t+8..)     {a6 a7} (g+8, 2t+8..)
//     B (16 x 8):  {b0 b1} (k = 2t..2t+1, n = g)   {b2 b3} (k = 2t+8.., n = g)
//     C (16 x 8):  c0 c1 (g, 2t..2t+1)   c2 c3 (g+8, 2t..2t+1)
//   ldmatrix.sync.m8n8.x4.b16: lanes 8 i .. 8 i + 7 give the addresses of
//   the 8 rows (16 bytes each) of matrix i, and register i of lane l gets
//   that matrix's row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1; with
//   .trans, elements (row 2 (l % 4), column l / 4) and (row 2 (l % 4) + 1,
//   column l / 4) instead.
//
// An operand tile holds kRows rows of the product (M for A, N for B) by
// kDepth (32) of the depth. The loaders (tiled.cuh) give four consecutive
// values along the depth (kContig) or along the rows (else), so the tile is
// stored the way they come: [row][depth] rows of kDepth + 8 values for
// kContig, read by ldmatrix; [depth][row] rows of kRows + 8 values
// otherwise, read by ldmatrix.trans. Either way the four values are one
// 8-byte store, and the 8 padding values make a row 80 or 2 kRows + 16
// bytes long: 8 consecutive rows then start in 8 different 16-byte bank
// groups, so ldmatrix's phases run without bank conflicts.
#pragma once

#include "kernels/cuda/gemm/tiled_rules.h"
#include "kernels/hd.h"

namespace crfseg::kernels::cuda::tiled {

constexpr int kBf16Depth = 32;  // BK of the BF16 kernel: two m16n8k16 steps per slice

template <int kRows, bool kContig>
struct Bf16Tile {
  static constexpr int kStride = kContig ? kBf16Depth + 8 : kRows + 8;  // values per stored row
  static constexpr int kElems = kContig ? kRows * kStride : kBf16Depth * kStride;
  // The offset of (row r, depth k).
  CRFSEG_HD static constexpr int offset(int r, int k) { return kContig ? r * kStride + k : k * kStride + r; }
  // The offset lane `lane` hands ldmatrix for the 8 x 8 block whose first
  // value is (r, k): the block's row lane % 8 (a row of r for kContig, of
  // k otherwise; the transposed load then gives the lanes their (r, k)
  // pairs as the untransposed one does for kContig).
  CRFSEG_HD static constexpr int block_row(int r, int k, int lane) {
    return kContig ? offset(r + lane % 8, k) : offset(r, k + lane % 8);
  }
};

// The four 8 x 8 blocks one ldmatrix.x4 loads, as the mma wants them.
// A's 16 x 16 tile at (r0, k0): block i = lane / 8 is rows r0 + 8 (i % 2),
// depth k0 + 8 (i / 2) (registers a0a1, a2a3, a4a5, a6a7).
template <int kRows, bool kContig>
CRFSEG_HD constexpr int a_fragment_row(int r0, int k0, int lane) {
  const int i = lane / 8;
  return Bf16Tile<kRows, kContig>::block_row(r0 + 8 * (i % 2), k0 + 8 * (i / 2), lane);
}
// Two of B's 16 x 8 tiles, columns n0 .. n0 + 15 at depth k0: block i is
// columns n0 + 8 (i / 2), depth k0 + 8 (i % 2) (registers b0b1 and b2b3 of
// the first tile, then of the second).
template <int kRows, bool kContig>
CRFSEG_HD constexpr int b_fragment_row(int n0, int k0, int lane) {
  const int i = lane / 8;
  return Bf16Tile<kRows, kContig>::block_row(n0 + 8 * (i / 2), k0 + 8 * (i % 2), lane);
}

// Accumulator r of the 16 x 8 tile at (m0, n0): its (m, n).
CRFSEG_HD constexpr TilePosition accumulator_position(int m0, int n0, int lane, int r) {
  return {m0 + lane / 4 + 8 * (r / 2), n0 + 2 * (lane % 4) + r % 2};
}

// The warp grid of the kernel's 256 threads: 2 x 4 warps, each with a
// (kTileM / 2) x 32 part of the block's kTileM x 128 tile.
template <int kTileM>
struct Bf16WarpTile {
  static constexpr int kRows = kTileM / 2, kCols = 32;
  static constexpr int kTilesM = kRows / 16, kTilesN = kCols / 8;  // m16 and n8 tiles per warp
  CRFSEG_HD static constexpr int row0(int warp) { return (warp / 4) * kRows; }
  CRFSEG_HD static constexpr int col0(int warp) { return (warp % 4) * kCols; }
};

}  // namespace crfseg::kernels::cuda::tiled
