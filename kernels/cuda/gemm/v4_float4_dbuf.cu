// v4_float4_dbuf: v2's 128x128 block tile with the three things v2 lacks.
// Changed from v2 (0.49x cuBLAS SGEMM at 4096^3 on an H200):
//  1. 16-byte shared reads. Thread (tr, tc) owns rows tr*4 + {0..3} and
//     64 + tr*4 + {0..3}, and the same two groups of 4 columns, so each k
//     step reads its 8 A values and 8 B values as 4 float4s instead of 16
//     scalars. A warp's B read is 16 consecutive float4s (no bank conflicts);
//     its A read is 2 addresses, broadcast.
//  2. Double buffering: slice k + 1 is loaded from global memory into
//     registers while slice k is multiplied out of shared memory, then
//     stored to the other shared buffer; one barrier per slice.
//  3. 16-byte global loads when a slice lies wholly inside the matrix and the
//     operand's rows are 16-byte aligned (ld % 4 == 0, aligned base);
//     guarded scalar loads otherwise, so any M, N, K, ld and transposes work.
//     The choice is per slice and uniform over the block.
// BK = 16 halves the barriers per FLOP against v2's 8.
//
// v8_float4_256x128: the same kernel on 256 x 128 tiles, 8 deep (the shape
// of the cuBLAS kernel that the session-42 H100 profile shows for the
// U-Net's largest SGEMMs, cutlass_80_simt_sgemm_256x128_8x4): each thread
// owns 16 x 8 accumulators, so a k step reads 6 float4s from shared memory
// for 128 FMAs, against v4's 4 for 64. v4 reached 0.84x cuBLAS at 4096^3
// on an H100; v8 is written without a GPU (session 43) to test whether the
// larger tile closes the rest.
//
// Both operands land in shared memory as Xs[k][r] (r: the row of C for A,
// the column for B). An operand stored with k contiguous (A not transposed,
// B transposed) is transposed on the way in; one stored with r contiguous is
// copied as float4s. Rows padded to 132 floats keep float4 alignment and
// make the transposing stores 2-way rather than 4-way bank conflicts.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTileN = 128;  // the block's columns of C; its rows, kTileM, are 128 (v4) or 256 (v8)

struct Operand {
  const float* p;
  int64_t ld, rows, K;  // rows: M for A, N for B
  bool vec;             // 16-byte loads allowed
};

// Loads the kTile x BK slice (r0.., k0..) of X into registers, kSlots =
// kTile BK / 4 / kThreads float4s per thread. kContig: X(r, k) = p[r * ld
// + k] (k contiguous), else p[k * ld + r].
template <bool kContig, int kTile, int BK, int kSlots>
__device__ __forceinline__ void load_slice(const Operand& x, int64_t r0, int64_t k0, int t, float4 (&reg)[kSlots]) {
  static_assert(kSlots * kThreads * 4 == kTile * BK, "every float4 of the slice has one slot");
  const bool full = x.vec && r0 + kTile <= x.rows && k0 + BK <= x.K;
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int s = t + i * kThreads;
    // kContig: slot s covers r = s / (BK / 4), k = 4 (s % (BK / 4)) .. + 3;
    // else k = s / (kTile / 4), r = 4 (s % (kTile / 4)) .. + 3.
    const int64_t r = r0 + (kContig ? s / (BK / 4) : (s % (kTile / 4)) * 4);
    const int64_t k = k0 + (kContig ? (s % (BK / 4)) * 4 : s / (kTile / 4));
    if (full) {
      reg[i] = *reinterpret_cast<const float4*>(kContig ? x.p + r * x.ld + k : x.p + k * x.ld + r);
    } else {
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t rr = kContig ? r : r + j, kk = kContig ? k + j : k;
        v[j] = (rr < x.rows && kk < x.K) ? x.p[kContig ? rr * x.ld + kk : kk * x.ld + rr] : 0.0f;
      }
      reg[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
  }
}

// Stores load_slice's registers as xs[k][r], rows of kTile + 4 floats.
template <bool kContig, int kTile, int BK, int kSlots>
__device__ __forceinline__ void store_slice(const float4 (&reg)[kSlots], float (*xs)[kTile + 4], int t) {
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int s = t + i * kThreads;
    if (kContig) {
      const int r = s / (BK / 4), k = (s % (BK / 4)) * 4;
      xs[k][r] = reg[i].x;
      xs[k + 1][r] = reg[i].y;
      xs[k + 2][r] = reg[i].z;
      xs[k + 3][r] = reg[i].w;
    } else {
      *reinterpret_cast<float4*>(&xs[s / (kTile / 4)][(s % (kTile / 4)) * 4]) = reg[i];
    }
  }
}

// kAContig = !ta (A(m, k) = A[m * lda + k]); kBContig = tb (B(n, k) = B[n * ldb + k]).
// Thread (tr, tc) of 16 x 16 owns rows 64 g + 4 tr + {0..3} for g < kTileM
// / 64, and columns 4 tc + {0..3} and 64 + 4 tc + {0..3}: kTileM / 8 x 8
// accumulators. v4 (128 rows, BK 16): 141 registers, one block per SM;
// capping them at 128 for two blocks (__launch_bounds__(kThreads, 2))
// spilled in two of the four cases and ran 8-10% slower on an H200;
// walking the tiles in groups of 8 block rows for L2 reuse changed nothing
// measurable (bench/NOTES.md, change 27).
template <bool kAContig, bool kBContig, int kTileM, int BK>
__global__ void __launch_bounds__(kThreads)
sgemm_float4_dbuf_kernel(Operand a, Operand b, float alpha, float beta, float* __restrict__ C, int64_t ldc) {
  constexpr int kRows = kTileM / 16;  // accumulator rows per thread
  constexpr int kSlotsA = kTileM * BK / 4 / kThreads, kSlotsB = kTileN * BK / 4 / kThreads;
  __shared__ __align__(16) float As[2][BK][kTileM + 4];
  __shared__ __align__(16) float Bs[2][BK][kTileN + 4];
  const int t = threadIdx.x, tr = t / 16, tc = t % 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM, n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t K = a.K;

  float acc[kRows][8] = {};
  float4 ra[kSlotsA], rb[kSlotsB];
  load_slice<kAContig, kTileM, BK>(a, m0, 0, t, ra);
  load_slice<kBContig, kTileN, BK>(b, n0, 0, t, rb);
  store_slice<kAContig, kTileM, BK>(ra, As[0], t);
  store_slice<kBContig, kTileN, BK>(rb, Bs[0], t);
  __syncthreads();

  int cur = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) {  // in flight while this slice is multiplied
      load_slice<kAContig, kTileM, BK>(a, m0, k0 + BK, t, ra);
      load_slice<kBContig, kTileN, BK>(b, n0, k0 + BK, t, rb);
    }
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
    if (more) {
      // The other buffer was last read in the previous slice, before the
      // barrier that ended it.
      store_slice<kAContig, kTileM, BK>(ra, As[cur ^ 1], t);
      store_slice<kBContig, kTileN, BK>(rb, Bs[cur ^ 1], t);
    }
    __syncthreads();
    cur ^= 1;
  }

#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int64_t m = m0 + 64 * (i / 4) + tr * 4 + i % 4;
    if (m >= a.rows) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t n = n0 + (j < 4 ? tc * 4 + j : 64 + tc * 4 + j - 4);
      if (n >= b.rows) continue;
      float* c = C + m * ldc + n;
      *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
    }
  }
}

template <int kTileM, int BK>
void sgemm_float4_dbuf(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                       Stream stream) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + kTileM - 1) / kTileM;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm ", name, ": M = ", M, " needs more than 65535 block rows");
  auto aligned = [](const float* p, int64_t ld) { return ld % 4 == 0 && aligned16(p); };
  const Operand a{A, lda, M, K, aligned(A, lda)}, b{B, ldb, N, K, aligned(B, ldb)};
  const dim3 grid(static_cast<unsigned>((N + kTileN - 1) / kTileN), static_cast<unsigned>(gy));
  if (!ta && tb) {
    sgemm_float4_dbuf_kernel<true, true, kTileM, BK><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else if (!ta) {
    sgemm_float4_dbuf_kernel<true, false, kTileM, BK><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else if (tb) {
    sgemm_float4_dbuf_kernel<false, true, kTileM, BK><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else {
    sgemm_float4_dbuf_kernel<false, false, kTileM, BK><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  }
  launch_check(name);
}

}  // namespace

void sgemm_v4_float4_dbuf(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                          Stream stream) {
  sgemm_float4_dbuf<128, 16>("sgemm_v4_float4_dbuf", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void sgemm_v8_float4_256x128(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                             Stream stream) {
  sgemm_float4_dbuf<256, 8>("sgemm_v8_float4_256x128", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

}  // namespace crfseg::kernels::cuda
