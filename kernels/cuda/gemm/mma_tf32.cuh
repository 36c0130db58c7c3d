// The TF32 tensor-core pieces that v3_tf32_mma and v5_tf32_async share:
// rounding to TF32, one mma.sync m16n8k8, and the store of a warp's
// accumulator tiles to C. Fragment ownership (PTX ISA, mma.m16n8k8 .tf32),
// lane = 4 g + t:
//   A (16x8, row):  a0 (g, t)   a1 (g+8, t)   a2 (g, t+4)   a3 (g+8, t+4)
//   B (8x8, col):   b0 (k=t, n=g)   b1 (k=t+4, n=g)
//   C (16x8):       c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
#pragma once

#include <cstdint>

namespace crfseg::kernels::cuda {

// x rounded to TF32 (10-bit mantissa, to nearest, ties away from zero).
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// c += a b for one 16 x 8 tile, 8 deep.
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// C = alpha acc + beta C over a warp's MI x NJ tiles of 16 x 8, tile (i, j)
// at rows m0 + 16 i, columns n0 + 8 j; elements outside M x N are skipped,
// and C is not read when beta == 0.
template <int MI, int NJ>
__device__ __forceinline__ void store_mma_tiles(const float (&acc)[MI][NJ][4], int64_t m0, int64_t n0, int g, int t,
                                                int64_t M, int64_t N, float alpha, float beta, float* C, int64_t ldc) {
#pragma unroll
  for (int i = 0; i < MI; ++i) {
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t m = m0 + i * 16 + g + 8 * (r / 2);
        const int64_t n = n0 + j * 8 + 2 * t + (r % 2);
        if (m >= M || n >= N) continue;
        float* c = C + m * ldc + n;
        *c = beta == 0.0f ? alpha * acc[i][j][r] : alpha * acc[i][j][r] + beta * *c;
      }
    }
  }
}

}  // namespace crfseg::kernels::cuda
