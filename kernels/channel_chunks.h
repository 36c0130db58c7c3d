// How the CUDA batch norm spreads one channel's values over several blocks.
// Channel c of an [N, C, inner] tensor holds M = N * inner values, at flat
// positions (n C + c) inner + i. One block per channel (the first version)
// gave a 64-channel layer 64 blocks on a 132-SM GPU; instead each channel's
// [0, M) is cut into `splits` chunks of `chunk` values, one block each, and a
// second pass merges the splits' partial results in split order, so the
// sums do not depend on scheduling. The plan depends on the shape only (not
// on the device), so results are the same on every GPU.
//
// CRFSEG_HD: the CUDA kernels walk their chunks with this code, and
// tests/kernels/test_batchnorm.cpp checks on the CPU that the walks cover
// every value of every channel exactly once.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace crfseg::kernels {

struct ChannelChunks {
  int64_t splits;  // chunks (blocks) per channel, >= 1
  int64_t chunk;   // values per chunk (the last may hold fewer), >= 1

  // Chunk `split` of a channel's M values: in-channel indices [begin, end).
  CRFSEG_HD int64_t begin(int64_t split) const { return split * chunk; }
  CRFSEG_HD int64_t end(int64_t split, int64_t M) const { return begin(split) + chunk < M ? begin(split) + chunk : M; }
};

// At least kMinPerChunk values per chunk (32 per thread of a 256-thread
// block), and about kTargetBlocks blocks over all channels at most.
CRFSEG_HD inline ChannelChunks channel_chunks(int64_t N, int64_t C, int64_t inner) {
  constexpr int64_t kMinPerChunk = 8192, kTargetBlocks = 1024;
  const int64_t M = N * inner;
  const int64_t by_size = (M + kMinPerChunk - 1) / kMinPerChunk;
  const int64_t by_blocks = C > 0 && kTargetBlocks / C > 1 ? kTargetBlocks / C : 1;
  int64_t splits = by_size < by_blocks ? by_size : by_blocks;
  if (splits < 1) splits = 1;
  const int64_t chunk = M > 0 ? (M + splits - 1) / splits : 1;
  return {splits, chunk};
}

// Calls f(k) for the flat positions k of channel c whose in-channel index
// j = n inner + i lies in [j0, j1) and is congruent to tid modulo threads
// (thread tid's share of a chunk), in increasing j. For images of at least
// `threads` values, one division per image and none per value: the image n
// advances with j.
template <typename F>
CRFSEG_HD inline void walk_channel_chunk(int64_t c, int64_t C, int64_t inner, int64_t j0, int64_t j1, int64_t tid,
                                         int64_t threads, F f) {
  if (inner <= 0 || j0 >= j1) return;
  if (inner < threads) {
    // Images shorter than a block's stride: a thread has at most one value
    // per image, so visiting every image would mostly find none (8192
    // images for 32 values at inner = 1). One division per value instead.
    for (int64_t j = j0 + tid; j < j1; j += threads) {
      const int64_t n = j / inner;
      f((n * C + c) * inner + (j - n * inner));
    }
    return;
  }
  for (int64_t n = j0 / inner; n * inner < j1; ++n) {
    const int64_t lo = j0 - n * inner > 0 ? j0 - n * inner : 0;
    const int64_t hi = j1 - n * inner < inner ? j1 - n * inner : inner;
    // Thread tid takes in-channel indices j = j0 + tid + t threads; its
    // first one in this image is the first i >= lo with (n inner + i - j0 - tid) % threads == 0.
    const int64_t offset = n * inner + lo - j0 - tid;  // >= -tid
    const int64_t skip = offset <= 0 ? -offset : (threads - offset % threads) % threads;
    const int64_t base = (n * C + c) * inner;
    for (int64_t i = lo + skip; i < hi; i += threads) f(base + i);
  }
}

}  // namespace crfseg::kernels
