// Transposing copies for the GEMM packers: the rows of a few source rows
// become the columns of the packed panel.
//
// Both packers of a weight-gradient GEMM (dW = dy . col(x)^T, whose depth
// is the pixels, the contiguous axis of both operands) and the packing of a
// row-major A operand write with stride MR or NR what they read with stride
// 1: one float per store. Scalar, that took 2-3 cycles per float on Zen 5
// and cost more than the micro-kernel did on the U-Net's 64-channel layers.
// The AVX-512 version moves 16 x 16 tiles through registers (64 shuffles per
// 256 floats) and stores whole packed rows.
// Test: tests/kernels/test_gemm.cpp ("transpose_pack ..."); the packers'
// callers are covered by the GEMM and convolution tests.
#pragma once

#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CRFSEG_TRANSPOSE16 1
#endif

namespace crfseg::kernels::cpu {

// dst[k * ld_dst + r] = alpha * src[r][k] for r < rows, k < kc; rows <= 16.
// Entries of dst rows with r >= rows are left as they are.
// transpose_pack_ref is the plain loop; transpose_pack runs the AVX-512 one
// where the CPU has it (cpu_features.h), else the plain loop.
void transpose_pack_ref(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst);
void transpose_pack(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst);

#ifdef CRFSEG_TRANSPOSE16
// The 16 x 16 register transpose of transpose_pack's AVX-512 form, for
// other kernels that move tiles across lanes (the Winograd filter taps).
// Usable from any function compiled for AVX-512F (target attribute or
// -march); the helpers are in a namespace of their own.
namespace transpose16 {
// GCC 12's unmasked _mm512_unpacklo/hi_ps and _mm512_shuffle_f32x4 pass an
// _mm512_undefined_ps() through their masked builtins, which trips
// -Wmaybe-uninitialized once inlined here. The zero-masking forms with an
// all-ones mask are the same instructions (GCC drops the mask) and name no
// undefined value.
inline constexpr __mmask16 kAll = 0xFFFF;
__attribute__((target("avx512f"), always_inline)) inline __m512 unpacklo(__m512 a, __m512 b) {
  return _mm512_maskz_unpacklo_ps(kAll, a, b);
}
__attribute__((target("avx512f"), always_inline)) inline __m512 unpackhi(__m512 a, __m512 b) {
  return _mm512_maskz_unpackhi_ps(kAll, a, b);
}
template <int kImm>
__attribute__((target("avx512f"), always_inline)) inline __m512 shuffle_lanes(__m512 a, __m512 b) {
  return _mm512_maskz_shuffle_f32x4(kAll, a, b, kImm);
}

// transpose16x16, in place: t[i] holds row i of a 16 x 16 tile; afterwards t[j] holds column j.
// Stage 1 interleaves pairs of rows within 128-bit lanes, stage 2 pairs of
// pairs, so lane L of u[4a + b] holds column 4L + b of rows 4a .. 4a+3;
// stages 3 and 4 gather the four lanes of a column from four registers.
__attribute__((target("avx512f"), always_inline)) inline void transpose16x16(__m512 t[16]) {
  __m512 u[16];
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    const __m512 a = unpacklo(t[i], t[i + 1]), b = unpackhi(t[i], t[i + 1]);
    const __m512 c = unpacklo(t[i + 2], t[i + 3]), d = unpackhi(t[i + 2], t[i + 3]);
    u[i + 0] = _mm512_shuffle_ps(a, c, 0x44);  // column 4L + 0 of rows i..i+3, in lane L
    u[i + 1] = _mm512_shuffle_ps(a, c, 0xEE);  // column 4L + 1
    u[i + 2] = _mm512_shuffle_ps(b, d, 0x44);  // column 4L + 2
    u[i + 3] = _mm512_shuffle_ps(b, d, 0xEE);  // column 4L + 3
  }
  __m512 v[16];
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    // lanes 0, 2 of rows 0-3 and 4-7 (columns b, 8 + b), then lanes 1, 3 (columns 4 + b, 12 + b)
    v[2 * b] = shuffle_lanes<0x88>(u[b], u[4 + b]);
    v[2 * b + 1] = shuffle_lanes<0xDD>(u[b], u[4 + b]);
    v[8 + 2 * b] = shuffle_lanes<0x88>(u[8 + b], u[12 + b]);
    v[8 + 2 * b + 1] = shuffle_lanes<0xDD>(u[8 + b], u[12 + b]);
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    t[b] = shuffle_lanes<0x88>(v[2 * b], v[8 + 2 * b]);
    t[8 + b] = shuffle_lanes<0xDD>(v[2 * b], v[8 + 2 * b]);
    t[4 + b] = shuffle_lanes<0x88>(v[2 * b + 1], v[8 + 2 * b + 1]);
    t[12 + b] = shuffle_lanes<0xDD>(v[2 * b + 1], v[8 + 2 * b + 1]);
  }
}
}  // namespace transpose16
using transpose16::transpose16x16;
#endif

}  // namespace crfseg::kernels::cpu
