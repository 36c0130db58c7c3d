// DType: the element types a Tensor can hold.
//
// f32 is the working type on every device; f64 exists for gradient checks;
// i32/i64/u8 hold labels and masks; f16/bf16 are storage types (tensor/
// half.h): created, filled, copied, cast, compared, saved and loaded, but
// not computed with. Ops that do not support a dtype reject it with a
// DTypeError that names the op; nothing is ever reinterpreted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>

#include "tensor/half.h"

namespace crfseg {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8 };

// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// Element conversion for casts and copies between dtypes. Floating to
// integer truncates toward zero and saturates at the integer type's range,
// NaN becoming 0 (a plain static_cast of an out-of-range value is undefined
// behaviour); a 16-bit float goes through float both ways (tensor/half.h);
// every other conversion is static_cast. Host and device (CRFSEG_HD): the
// CUDA copy kernel casts with it too.
template <typename To, typename From>
CRFSEG_HD constexpr To convert_element(From v) {
  if constexpr (is_half_v<From> && !std::is_same_v<To, From>) {
    return convert_element<To>(static_cast<float>(v));
  } else if constexpr (is_half_v<To> && !std::is_same_v<To, From>) {
    return To(v);
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    if (!(v == v)) return To(0);  // NaN
    if (v <= static_cast<From>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    // max() as From may round up (2^63 - 1 -> 2^63): compare with >= there.
    if (v >= static_cast<From>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

// Maps a C++ element type to its DType (used by typed accessors and kernels).
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::bf16; };

}  // namespace crfseg
