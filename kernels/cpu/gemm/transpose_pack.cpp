// Transposing copies for the packers; see transpose_pack.h.
#include "kernels/cpu/gemm/transpose_pack.h"

#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CRFSEG_HAVE_X86 1
#endif

namespace crfseg::kernels::cpu {

void transpose_pack_ref(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst) {
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * ld_dst + r] = alpha * src[r][k];
}

#ifdef CRFSEG_HAVE_X86
namespace {

// GCC 12's unmasked _mm512_unpacklo/hi_ps and _mm512_shuffle_f32x4 pass an
// _mm512_undefined_ps() through their masked builtins, which trips
// -Wmaybe-uninitialized once inlined here. The zero-masking forms with an
// all-ones mask are the same instructions (GCC drops the mask) and name no
// undefined value.
constexpr __mmask16 kAll = 0xFFFF;
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

// In place: t[i] holds row i of a 16 x 16 tile; afterwards t[j] holds column j.
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

__attribute__((target("avx512f"))) void transpose_pack_avx512(const float* const* src, int rows, int64_t kc,
                                                               float alpha, float* dst, int64_t ld_dst) {
  const __mmask16 row_mask = static_cast<__mmask16>((1u << rows) - 1u);
  const __m512 valpha = _mm512_set1_ps(alpha);
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int64_t len = kc - k0 < 16 ? kc - k0 : 16;
    const __mmask16 k_mask = static_cast<__mmask16>((1u << len) - 1u);
    __m512 t[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {
      t[r] = r < rows ? _mm512_maskz_loadu_ps(k_mask, src[r] + k0) : _mm512_setzero_ps();
    }
    transpose16x16(t);
    if (alpha != 1.0f) {
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) t[k] = _mm512_mul_ps(valpha, t[k]);
    }
    float* d = dst + k0 * ld_dst;
    if (len == 16) {
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) _mm512_mask_storeu_ps(d + k * ld_dst, row_mask, t[k]);
    } else {
      for (int64_t k = 0; k < len; ++k) _mm512_mask_storeu_ps(d + k * ld_dst, row_mask, t[k]);
    }
  }
}

}  // namespace
#endif

void transpose_pack(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst) {
#ifdef CRFSEG_HAVE_X86
  static const bool avx512 = has_avx512f();
  if (avx512) return transpose_pack_avx512(src, rows, kc, alpha, dst, ld_dst);
#endif
  transpose_pack_ref(src, rows, kc, alpha, dst, ld_dst);
}

}  // namespace crfseg::kernels::cpu
