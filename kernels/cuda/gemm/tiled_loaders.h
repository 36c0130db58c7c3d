// The tile kernels' stored operands and their plain epilogue (tiled.cuh,
// tiled_bf16.cuh): loaders that fill a thread's slots of a slice
// (tiled_rules.h's slot_origin) from a matrix in memory, and C = alpha acc
// + beta C. Host-device code, so the CPU tests run the same loaders
// (tests/kernels/test_implicit_loaders.cpp emulates the kernels' data flow
// with them and the convolution's gathers).
#pragma once

#include <cuda_runtime.h>  // float4, make_float4 (host and device)

#include <cstdint>
#include <cstring>

#include "kernels/hd.h"
#include "kernels/cuda/gemm/tiled_rules.h"

namespace crfseg::kernels::cuda::tiled {

constexpr int kTileN = 128;  // the block's columns of C; its rows, kTileM, are 64, 128 (v4) or 256 (v8)

// *p through the read-only data cache on the device (__ldg); on the host a
// copy of the bytes (p may point at floats read as a float4).
template <typename T>
CRFSEG_HD_INLINE T load_ro(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#endif
}

struct Operand {
  const float* p;
  int64_t ld, rows, K;  // rows: M for A, N for B
  bool vec;             // 16-byte loads allowed
};

// Loads the kTile x BK slice (r0.., k0..) of X into registers, kSlots =
// kTile BK / 4 / kThreads float4s per thread, slot i at slot_origin(t + i
// kThreads) (tiled_rules.h). kContig: X(r, k) = p[r * ld
// + k] (k contiguous), else p[k * ld + r].
template <bool kContig, int kTile, int BK, int kSlots>
CRFSEG_HD_INLINE void load_slice(const Operand& x, int64_t r0, int64_t k0, int t, float4 (&reg)[kSlots]) {
  static_assert(kSlots * kThreads * 4 == kTile * BK, "every float4 of the slice has one slot");
  const bool full = x.vec && r0 + kTile <= x.rows && k0 + BK <= x.K;
CRFSEG_UNROLL
  for (int i = 0; i < kSlots; ++i) {
    const TilePosition o = slot_origin<kContig, kTile, BK>(t + i * kThreads);
    const int64_t r = r0 + o.m, k = k0 + o.n;
    if (full) {
      // The read-only path (__ldg). (With C a __restrict__ kernel argument
      // nvcc chose it by itself; the epilogue now holds C in a struct.)
      reg[i] = load_ro(reinterpret_cast<const float4*>(kContig ? x.p + r * x.ld + k : x.p + k * x.ld + r));
    } else {
      float v[4];
CRFSEG_UNROLL
      for (int j = 0; j < 4; ++j) {
        const int64_t rr = kContig ? r : r + j, kk = kContig ? k + j : k;
        v[j] = (rr < x.rows && kk < x.K) ? load_ro(x.p + (kContig ? rr * x.ld + kk : kk * x.ld + rr)) : 0.0f;
      }
      reg[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
  }
}

// A stored operand, as A (rows M) or as B (rows N): v4's operands.
// kContig: X(r, k) = p[r ld + k] (A not transposed, B transposed), else
// p[k ld + r]. rows() (as A) and cols() (as B) both give its rows.
template <bool kXContig>
struct Stored {
  static constexpr bool kContig = kXContig;
  Operand x;
  CRFSEG_HD int64_t rows() const { return x.rows; }
  CRFSEG_HD int64_t cols() const { return x.rows; }
  template <int kTile, int BK, int kSlots>
  CRFSEG_HD_INLINE void load(int64_t r0, int64_t k0, int t, float4 (&reg)[kSlots]) const {
    load_slice<kXContig, kTile, BK>(x, r0, k0, t, reg);
  }
};

// C[m, n] = alpha acc + beta C[m, n] (C not read when beta is 0).
struct StoreC {
  float alpha, beta;
  float* __restrict__ C;
  int64_t ldc;
  CRFSEG_HD_INLINE void operator()(int64_t m, int64_t n, float v) const {
    float* c = C + m * ldc + n;
    *c = beta == 0.0f ? alpha * v : alpha * v + beta * *c;
  }
};

}  // namespace crfseg::kernels::cuda::tiled
