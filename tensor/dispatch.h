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
    default: break;
  }
  throw DTypeError(detail::concat_message(op, ": expected dtype f32, f64, i32, i64 or u8, got ",
                                          dtype_name(t), " (f16/bf16 are GPU-only)"));
}

}  // namespace crfseg
