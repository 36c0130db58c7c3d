// The tiled FP32 GEMM kernel behind v4_float4_dbuf and v8_float4_256x128
// (kernels/cuda/gemm/v4_float4_dbuf.cu, which explains its design) and the
// implicit-GEMM convolution (kernels/cuda/conv2d_implicit.cu): C[M, N] =
// A[M, K] B[K, N], A and B given by loaders (stored matrices, Stored, or
// the convolution's operands gathered from its tensors on the fly), each
// result handed to an epilogue (StoreC: alpha acc + beta C).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled_loaders.h"
#include "kernels/cuda/gemm/tiled_rules.h"

namespace crfseg::kernels::cuda::tiled {

// Stores load_slice's registers as xs[k][r], rows of kTile + 4 floats.
template <bool kContig, int kTile, int BK, int kSlots>
__device__ __forceinline__ void store_slice(const float4 (&reg)[kSlots], float (*xs)[kTile + 4], int t) {
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const TilePosition o = slot_origin<kContig, kTile, BK>(t + i * kThreads);
    if (kContig) {
      xs[o.n][o.m] = reg[i].x;
      xs[o.n + 1][o.m] = reg[i].y;
      xs[o.n + 2][o.m] = reg[i].z;
      xs[o.n + 3][o.m] = reg[i].w;
    } else {
      *reinterpret_cast<float4*>(&xs[o.n][o.m]) = reg[i];
    }
  }
}

// The double-buffered slice loop of both tile kernels (this one and
// tiled_bf16.cuh's) over depths [k_begin, k_end): slice k0 + BK's loads are
// in flight in registers while slice k0 is multiplied out of shared buffer
// `cur`, then stored to the other buffer; one barrier per slice.
// store(buffer, ra, rb) writes a slice's registers to a shared buffer,
// multiply(buffer) adds that buffer's slice to the accumulators.
template <int kTileM, int BK, class LoadA, class LoadB, class Store, class Multiply>
__device__ __forceinline__ void slice_loop(const LoadA& a, const LoadB& b, int64_t m0, int64_t n0, int64_t k_begin,
                                           int64_t k_end, int t, Store store, Multiply multiply) {
  constexpr int kSlotsA = kTileM * BK / 4 / kThreads, kSlotsB = kTileN * BK / 4 / kThreads;
  float4 ra[kSlotsA], rb[kSlotsB];
  a.template load<kTileM, BK, kSlotsA>(m0, k_begin, t, ra);
  b.template load<kTileN, BK, kSlotsB>(n0, k_begin, t, rb);
  store(0, ra, rb);
  __syncthreads();
  int cur = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool more = k0 + BK < k_end;
    if (more) {  // in flight while this slice is multiplied
      a.template load<kTileM, BK, kSlotsA>(m0, k0 + BK, t, ra);
      b.template load<kTileN, BK, kSlotsB>(n0, k0 + BK, t, rb);
    }
    multiply(cur);
    // The other buffer was last read in the previous slice, before the
    // barrier that ended it.
    if (more) store(cur ^ 1, ra, rb);
    __syncthreads();
    cur ^= 1;
  }
}

// LoadA / LoadB: loaders with load<kTile, BK, kSlots>(r0, k0, t, reg) in
// load_slice's slot layout and kContig saying which (for v4/v8,
// Stored<!ta> and Stored<tb>); LoadA::rows() and LoadB::cols() bound the
// results. Thread (tr, tc) of 16 x 16 owns rows 64 g + 4 tr + {0..3} for
// g < kTileM / 64, and columns 4 tc + {0..3} and 64 + 4 tc + {0..3}:
// kTileM / 8 x 8 accumulators. v4 (128 rows, BK 16): 141 registers, one block per SM;
// capping them at 128 for two blocks (__launch_bounds__(kThreads, 2))
// spilled in two of the four cases and ran 8-10% slower on an H200;
// walking the tiles in groups of 8 block rows for L2 reuse changed nothing
// measurable (bench/NOTES.md, change 27).
// The depth runs in chunks of `chunk` (a multiple of BK), one per
// blockIdx.z (split-K for products with few tiles and a long depth, as the
// convolution's weight gradient; the epilogue then writes blockIdx.z's
// partial sums); a plain GEMM has one chunk of the whole depth. A slice
// never straddles two chunks, so the loaders bound their reads by the
// depth alone.
template <class LoadA, class LoadB, class Epilogue, int kTileM, int BK>
__global__ void __launch_bounds__(kThreads)
    gemm_tile_kernel(LoadA a, LoadB b, Epilogue out, int64_t depth, int64_t chunk) {
  constexpr int kRows = kTileM / 16;  // accumulator rows per thread
  constexpr int kSlotsA = kTileM * BK / 4 / kThreads, kSlotsB = kTileN * BK / 4 / kThreads;
  __shared__ __align__(16) float As[2][BK][kTileM + 4];
  __shared__ __align__(16) float Bs[2][BK][kTileN + 4];
  const int t = threadIdx.x, tr = t / 16, tc = t % 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM, n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * chunk;
  const int64_t k_end = depth < k_begin + chunk ? depth : k_begin + chunk;

  float acc[kRows][8] = {};
  const auto store = [&](int buffer, const float4(&ra)[kSlotsA], const float4(&rb)[kSlotsB]) {
    store_slice<LoadA::kContig, kTileM, BK>(ra, As[buffer], t);
    store_slice<LoadB::kContig, kTileN, BK>(rb, Bs[buffer], t);
  };
  const auto multiply = [&](int cur) {
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[kRows];
#pragma unroll
      for (int g = 0; g < kRows / 4; ++g) {
        const float4 q = *reinterpret_cast<const float4*>(&As[cur][kk][64 * g + tr * 4]);
        av[4 * g] = q.x, av[4 * g + 1] = q.y, av[4 * g + 2] = q.z, av[4 * g + 3] = q.w;
      }
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][kk][tc * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][kk][64 + tc * 4]);
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
  };
  slice_loop<kTileM, BK>(a, b, m0, n0, k_begin, k_end, t, store, multiply);

  const int64_t M = a.rows(), N = b.cols();
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int64_t m = m0 + 64 * (i / 4) + tr * 4 + i % 4;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t n = n0 + (j < 4 ? tc * 4 + j : 64 + tc * 4 + j - 4);
      if (n < N) out(m, n, acc[i][j]);
    }
  }
}


// A stored product C = alpha op(A) op(B) + beta C (row-major; ta, tb:
// transposed) on a tile kernel with kTileM x kTileN tiles and BK-deep
// slices: checks the grid, makes the operands (16-byte loads where their
// rows allow) and calls launch(la, lb, out, grid, chunk) with the loaders
// for ta and tb, the epilogue, and one chunk of the whole depth. The
// launchers of v4, v8 and v11, written once for the four cases.
template <int kTileM, int BK, typename Launch>
void launch_stored(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Launch launch) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + kTileM - 1) / kTileM;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm ", name, ": M = ", M, " needs more than 65535 block rows");
  auto aligned = [](const float* p, int64_t ld) { return ld % 4 == 0 && aligned16(p); };
  const Operand a{A, lda, M, K, aligned(A, lda)}, b{B, ldb, N, K, aligned(B, ldb)};
  const dim3 grid(static_cast<unsigned>((N + kTileN - 1) / kTileN), static_cast<unsigned>(gy));
  const StoreC out{alpha, beta, C, ldc};
  const int64_t chunk = whole_slices(K, BK);
  if (!ta && tb) {
    launch(Stored<true>{a}, Stored<true>{b}, out, grid, chunk);
  } else if (!ta) {
    launch(Stored<true>{a}, Stored<false>{b}, out, grid, chunk);
  } else if (tb) {
    launch(Stored<false>{a}, Stored<true>{b}, out, grid, chunk);
  } else {
    launch(Stored<false>{a}, Stored<false>{b}, out, grid, chunk);
  }
  launch_check(name);
}

}  // namespace crfseg::kernels::cuda::tiled
