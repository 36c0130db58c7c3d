// dtype dispatch: turns a runtime DType into a C++ element type.
//
//   dispatch_float(t.dtype(), "exp", [&](auto tag) { using T = decltype(tag); ... });
//
// Unsupported dtypes throw DTypeError naming the op and what it accepts.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"
#include "tensor/error.h"

namespace crfseg {

template <typename F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: break;
  }
  throw DTypeError(detail::concat_message(op, ": expected dtype f32 or f64, got ", dtype_name(t)));
}

template <typename F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::f16: return f(float16{});
    case DType::bf16: return f(bfloat16{});
  }
  throw DTypeError(detail::concat_message(op, ": unknown dtype code ", static_cast<int>(t)));
}

}  // namespace crfseg
