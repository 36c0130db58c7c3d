// The slot layout shared by the tile kernels' loaders (tiled.cuh,
// conv2d_implicit.cu) and the shared-memory stores of both kernels
// (tiled.cuh, tiled_bf16.cuh), in host-device code so that one definition
// serves them all and the CPU tests reach it.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels::cuda::tiled {

constexpr int kThreads = 256;  // a block of either tile kernel

// A (row, column) or (row, depth) in a tile.
struct TilePosition {
  int m, n;
};

// Where slot s of a loader's registers starts in a kTile x BK slice: four
// values from (row, depth) = (m, n) on, along the depth when kContig (the
// operand is stored with its depth contiguous), along the rows otherwise.
// Consecutive slots run along the contiguous direction, so consecutive
// threads read consecutive addresses.
template <bool kContig, int kTile, int BK>
CRFSEG_HD constexpr TilePosition slot_origin(int s) {
  return kContig ? TilePosition{s / (BK / 4), 4 * (s % (BK / 4))}
                 : TilePosition{4 * (s % (kTile / 4)), s / (kTile / 4)};
}

// `depth` rounded up to whole slices of `step` (at least one): a chunk of
// the tile kernels' depth, which no slice straddles.
CRFSEG_HD constexpr int64_t whole_slices(int64_t depth, int64_t step) {
  return depth > step ? (depth + step - 1) / step * step : step;
}

// Whether all of a thread's slots (t + i kThreads) start at the same
// position along the contiguous direction (the depth when kContig, else the
// rows): true when the slots of one stored row divide the block. The
// convolution's gathers then locate their pixels once for all slots.
template <bool kContig, int kTile, int BK>
constexpr bool slots_share_position() {
  return kThreads % (kContig ? BK / 4 : kTile / 4) == 0;
}

}  // namespace crfseg::kernels::cuda::tiled
