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

constexpr int kTile = 128, BK = 16, kThreads = 256, kLd = kTile + 4;
constexpr int kSlots = kTile * BK / 4 / kThreads;  // float4 slots per thread per operand slice: 2

struct Operand {
  const float* p;
  int64_t ld, rows, K;  // rows: M for A, N for B
  bool vec;             // 16-byte loads allowed
};

// Loads the 128 x 16 slice (r0.., k0..) of X into registers. kContig: X(r, k)
// = p[r * ld + k] (k contiguous), else p[k * ld + r].
template <bool kContig>
__device__ __forceinline__ void load_slice(const Operand& x, int64_t r0, int64_t k0, int t, float4 (&reg)[kSlots]) {
  const bool full = x.vec && r0 + kTile <= x.rows && k0 + BK <= x.K;
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int s = t + i * kThreads;
    // kContig: slot s covers r = s / 4, k = 4 (s % 4) .. + 3; else k = s / 32, r = 4 (s % 32) .. + 3.
    const int64_t r = r0 + (kContig ? s >> 2 : (s & 31) * 4), k = k0 + (kContig ? (s & 3) * 4 : s >> 5);
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

template <bool kContig>
__device__ __forceinline__ void store_slice(const float4 (&reg)[kSlots], float (*xs)[kLd], int t) {
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int s = t + i * kThreads;
    if (kContig) {
      const int r = s >> 2, k = (s & 3) * 4;
      xs[k][r] = reg[i].x;
      xs[k + 1][r] = reg[i].y;
      xs[k + 2][r] = reg[i].z;
      xs[k + 3][r] = reg[i].w;
    } else {
      *reinterpret_cast<float4*>(&xs[s >> 5][(s & 31) * 4]) = reg[i];
    }
  }
}

// kAContig = !ta (A(m, k) = A[m * lda + k]); kBContig = tb (B(n, k) = B[n * ldb + k]).
// 141 registers: one block per SM. Capping them at 128 for two blocks
// (__launch_bounds__(kThreads, 2)) spilled in two of the four cases and ran
// 8-10% slower on an H200; walking the tiles in groups of 8 block rows for
// L2 reuse changed nothing measurable (bench/NOTES.md, change 27).
template <bool kAContig, bool kBContig>
__global__ void __launch_bounds__(kThreads)
sgemm_float4_dbuf_kernel(Operand a, Operand b, float alpha, float beta, float* __restrict__ C, int64_t ldc) {
  __shared__ __align__(16) float As[2][BK][kLd];
  __shared__ __align__(16) float Bs[2][BK][kLd];
  const int t = threadIdx.x, tr = t / 16, tc = t % 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTile, n0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t K = a.K;

  float acc[8][8] = {};
  float4 ra[kSlots], rb[kSlots];
  load_slice<kAContig>(a, m0, 0, t, ra);
  load_slice<kBContig>(b, n0, 0, t, rb);
  store_slice<kAContig>(ra, As[0], t);
  store_slice<kBContig>(rb, Bs[0], t);
  __syncthreads();

  int cur = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) {  // in flight while this slice is multiplied
      load_slice<kAContig>(a, m0, k0 + BK, t, ra);
      load_slice<kBContig>(b, n0, k0 + BK, t, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][kk][tr * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][kk][64 + tr * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][kk][tc * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][kk][64 + tc * 4]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    if (more) {
      // The other buffer was last read in the previous slice, before the
      // barrier that ended it.
      store_slice<kAContig>(ra, As[cur ^ 1], t);
      store_slice<kBContig>(rb, Bs[cur ^ 1], t);
    }
    __syncthreads();
    cur ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? tr * 4 + i : 64 + tr * 4 + i - 4);
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

}  // namespace

void sgemm_v4_float4_dbuf(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                          Stream stream) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + kTile - 1) / kTile;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm v4_float4_dbuf: M = ", M,
               " needs more than 65535 block rows");
  auto aligned = [](const float* p, int64_t ld) { return ld % 4 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const Operand a{A, lda, M, K, aligned(A, lda)}, b{B, ldb, N, K, aligned(B, ldb)};
  const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>(gy));
  if (!ta && tb) {
    sgemm_float4_dbuf_kernel<true, true><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else if (!ta) {
    sgemm_float4_dbuf_kernel<true, false><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else if (tb) {
    sgemm_float4_dbuf_kernel<false, true><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  } else {
    sgemm_float4_dbuf_kernel<false, false><<<grid, kThreads, 0, stream>>>(a, b, alpha, beta, C, ldc);
  }
  launch_check("sgemm_v4_float4_dbuf");
}

}  // namespace crfseg::kernels::cuda
