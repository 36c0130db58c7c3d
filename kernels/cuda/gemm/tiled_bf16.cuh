// The BF16 tensor-core form of tiled.cuh's kernel: the same loaders (stored
// matrices, or the convolution's operands gathered on the fly) and
// epilogues, the products on the tensor cores (mma.sync m16n8k16, BF16
// inputs, FP32 accumulation) instead of FFMAs. Behind v11_bf16_mma_tile
// (v11_bf16_mma_tile.cu) and the implicit-GEMM convolution at bf16
// precision (conv2d_implicit.cu).
//
// Why mma.sync and not v9's wgmma: the implicit convolution's operands are
// gathered by threads (an im2col row's four pixels at a time), not copied
// by the TMA, so they pass through registers anyway; the kernel rounds them
// to BF16 there and stores them in shared memory for ldmatrix, the
// Ampere-style pipeline that CUTLASS's implicit-GEMM convolutions use.
//
// Block: 256 threads, a kTileM x 128 tile of C (kTileM 64 or 128), the
// depth in 32-deep slices, double-buffered as tiled.cuh's (slice k + 1's
// loads in flight in registers while slice k is multiplied, one barrier
// per slice). Warps: 2 x 4, each a (kTileM / 2) x 32 part, i.e. kTileM / 32
// x 4 tiles of 16 x 8 and up to 64 accumulators a thread. Per 16-deep step
// a warp loads A with kTileM / 32 ldmatrix.x4 and B with two, and issues
// kTileM / 8 mma. The shared layouts and every lane's addresses are
// tiled_bf16_rules.h's, tested on the CPU.
// Written without a GPU (session 48): untested on a device.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/tiled.cuh"
#include "kernels/cuda/gemm/tiled_bf16_rules.h"

namespace crfseg::kernels::cuda::tiled {

// Two floats rounded to BF16 (to nearest even) in one register, x in the
// low half (the lower index, as the mma and ldmatrix read pairs).
__device__ __forceinline__ uint32_t pack_bf16(float x, float y) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Stores a loader's slots (slot_origin) as BF16 in Bf16Tile's layout: four
// values along the stored rows either way, one 8-byte store.
template <bool kContig, int kTile, int kSlots>
__device__ __forceinline__ void store_slice_bf16(const float4 (&reg)[kSlots], uint16_t* xs, int t) {
  using Tile = Bf16Tile<kTile, kContig>;
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const TilePosition o = slot_origin<kContig, kTile, kBf16Depth>(t + i * kThreads);
    *reinterpret_cast<uint2*>(xs + Tile::offset(o.m, o.n)) =
        make_uint2(pack_bf16(reg[i].x, reg[i].y), pack_bf16(reg[i].z, reg[i].w));
  }
}

template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* p) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  if constexpr (kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
  }
}

// c += a b for one 16 x 8 tile, 16 deep.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// As gemm_tile_kernel (the loaders, the epilogue, the depth in chunks of
// `chunk`, now a multiple of kBf16Depth, over blockIdx.z, and its slice
// loop), on the tensor cores at BF16 precision.
template <class LoadA, class LoadB, class Epilogue, int kTileM>
__global__ void __launch_bounds__(kThreads)
    gemm_tile_bf16_kernel(LoadA a, LoadB b, Epilogue out, int64_t depth, int64_t chunk) {
  constexpr int BK = kBf16Depth;
  using TileA = Bf16Tile<kTileM, LoadA::kContig>;
  using TileB = Bf16Tile<kTileN, LoadB::kContig>;
  using Warp = Bf16WarpTile<kTileM>;
  constexpr int kSlotsA = kTileM * BK / 4 / kThreads, kSlotsB = kTileN * BK / 4 / kThreads;
  static_assert(Warp::kTilesN % 2 == 0, "B's tiles are loaded in pairs");
  static_assert(kThreads == 256 && kTileN == 4 * Warp::kCols && kTileM % 32 == 0,
                "the 2 x 4 warp grid covers the tile");
  __shared__ __align__(16) uint16_t As[2][TileA::kElems];
  __shared__ __align__(16) uint16_t Bs[2][TileB::kElems];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int wm = Warp::row0(warp), wn = Warp::col0(warp);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM, n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * chunk;
  const int64_t k_end = depth < k_begin + chunk ? depth : k_begin + chunk;

  float acc[Warp::kTilesM][Warp::kTilesN][4] = {};
  const auto store = [&](int buffer, const float4(&ra)[kSlotsA], const float4(&rb)[kSlotsB]) {
    store_slice_bf16<LoadA::kContig, kTileM>(ra, As[buffer], t);
    store_slice_bf16<LoadB::kContig, kTileN>(rb, Bs[buffer], t);
  };
  const auto multiply = [&](int cur) {
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[Warp::kTilesM][4], bf[Warp::kTilesN / 2][4];
#pragma unroll
      for (int i = 0; i < Warp::kTilesM; ++i) {
        ldmatrix_x4<!LoadA::kContig>(af[i], As[cur] + a_fragment_row<kTileM, LoadA::kContig>(wm + 16 * i, kk, lane));
      }
#pragma unroll
      for (int j = 0; j < Warp::kTilesN / 2; ++j) {
        ldmatrix_x4<!LoadB::kContig>(bf[j], Bs[cur] + b_fragment_row<kTileN, LoadB::kContig>(wn + 16 * j, kk, lane));
      }
#pragma unroll
      for (int i = 0; i < Warp::kTilesM; ++i) {
#pragma unroll
        for (int j = 0; j < Warp::kTilesN; ++j) {
          mma_bf16(acc[i][j], af[i], bf[j / 2][2 * (j % 2)], bf[j / 2][2 * (j % 2) + 1]);
        }
      }
    }
  };
  slice_loop<kTileM, BK>(a, b, m0, n0, k_begin, k_end, t, store, multiply);

  const int64_t M = a.rows(), N = b.cols();
#pragma unroll
  for (int i = 0; i < Warp::kTilesM; ++i) {
#pragma unroll
    for (int j = 0; j < Warp::kTilesN; ++j) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const TilePosition p = accumulator_position(wm + 16 * i, wn + 8 * j, lane, r);
        const int64_t m = m0 + p.m, n = n0 + p.n;
        if (m < M && n < N) out(m, n, acc[i][j][r]);
      }
    }
  }
}

}  // namespace crfseg::kernels::cuda::tiled
