// Transposing copies for the packers; see transpose_pack.h.
#include "kernels/cpu/gemm/transpose_pack.h"

#include "kernels/cpu/cpu_features.h"

namespace crfseg::kernels::cpu {

void transpose_pack_ref(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst) {
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * ld_dst + r] = alpha * src[r][k];
}

#ifdef CRFSEG_TRANSPOSE16
namespace {

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
#ifdef CRFSEG_TRANSPOSE16
  static const bool avx512 = has_avx512f();
  if (avx512) return transpose_pack_avx512(src, rows, kc, alpha, dst, ld_dst);
#endif
  transpose_pack_ref(src, rows, kc, alpha, dst, ld_dst);
}

}  // namespace crfseg::kernels::cpu
