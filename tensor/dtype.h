// DType: the element types a Tensor can hold.
//
// f32 is the working type on every device; f64 exists on the CPU for gradient
// checks; i32/i64/u8 hold labels and masks; f16/bf16 are declared for the GPU
// backend. Ops that do not support a dtype reject it with a DTypeError that
// names the op; nothing is ever reinterpreted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

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

// Maps a C++ element type to its DType (used by typed accessors and kernels).
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };

}  // namespace crfseg
