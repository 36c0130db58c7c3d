// bfloat16 and float16: the two 16-bit floating-point storage types, as bit
// patterns with conversions to and from float, for the host and CUDA
// devices alike (CRFSEG_HD).
//
// They are storage types: a tensor of dtype bf16 or f16 can be created,
// filled, copied and cast (copy_, to_dtype, to_device), compared, saved to
// and loaded from safetensors, and a model loads such weights into its f32
// parameters (load_state_dict casts). Arithmetic ops reject them
// (DTypeError naming the op), as the compute kernels are f32/f64.
//
// Conversions from float round to nearest, ties to even, the IEEE default
// (and what PyTorch, CUDA's __float2bfloat16_rn and F16C do); NaN stays NaN
// (quiet, sign kept), overflow goes to infinity. Wider values (double,
// integers) go through float first, as in PyTorch.
//
//   bfloat16: 1 sign, 8 exponent, 7 fraction bits: float's top half, so the
//             conversion rounds away the low 16 bits.
//   float16:  1 sign, 5 exponent (bias 15), 10 fraction bits; normals from
//             2^-14, subnormals down to 2^-24, largest finite 65504.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/hd.h"

namespace crfseg {

namespace half_detail {

CRFSEG_HD inline uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
CRFSEG_HD inline float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

CRFSEG_HD inline uint16_t bf16_from_float(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN, quieted
  // Round to nearest even on bit 16: add 0x7fff plus the bit that would be kept.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
CRFSEG_HD inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

CRFSEG_HD inline uint16_t f16_from_float(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
  if (x >= 0x7f800000u) {  // infinity, or NaN (quieted, its top fraction bits kept)
    return static_cast<uint16_t>(sign | 0x7c00u | (x > 0x7f800000u ? 0x0200u | ((x >> 13) & 0x03ffu) : 0u));
  }
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds past 65504: infinity
  if (x >= 0x38800000u) {
    // Normal: rebias the exponent (127 -> 15) and round away 13 fraction bits.
    const uint32_t r = x - 0x38000000u;
    return static_cast<uint16_t>(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
  }
  if (x <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: a tie at most, to even (zero)
  // Subnormal: the value in units of 2^-24 is m 2^(e - 126), rounded to nearest even
  // (a carry into 0x400 is the smallest normal's encoding, as it should be).
  const uint32_t m = (x & 0x7fffffu) | 0x800000u, shift = 126u - (x >> 23);
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}
CRFSEG_HD inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x03ffu;
  if (e == 0) {  // zero or subnormal: m 2^-24, exact in float
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
    return bits_float(float_bits(v) | sign);
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));  // infinity or NaN
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace half_detail

// A 16-bit float type: Tag picks the format's two conversions. Converts
// explicitly from any arithmetic type (through float) and implicitly to float.
template <typename Tag>
struct Half16 {
  uint16_t bits;

  Half16() = default;
  CRFSEG_HD explicit Half16(float f) : bits(Tag::from_float(f)) {}
  template <typename V, typename = std::enable_if_t<std::is_arithmetic_v<V> && !std::is_same_v<V, float>>>
  CRFSEG_HD explicit Half16(V v) : Half16(static_cast<float>(v)) {}
  CRFSEG_HD operator float() const { return Tag::to_float(bits); }

  static CRFSEG_HD Half16 from_bits(uint16_t b) {
    Half16 h;
    h.bits = b;
    return h;
  }
};

struct BFloat16Format {
  static CRFSEG_HD uint16_t from_float(float f) { return half_detail::bf16_from_float(f); }
  static CRFSEG_HD float to_float(uint16_t h) { return half_detail::bf16_to_float(h); }
};
struct Float16Format {
  static CRFSEG_HD uint16_t from_float(float f) { return half_detail::f16_from_float(f); }
  static CRFSEG_HD float to_float(uint16_t h) { return half_detail::f16_to_float(h); }
};

using bfloat16 = Half16<BFloat16Format>;
using float16 = Half16<Float16Format>;
static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2 && std::is_trivially_copyable_v<bfloat16>);

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>;

}  // namespace crfseg
