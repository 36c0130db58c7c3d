// CUDA elementwise kernels (see elementwise.h).
//
// Every op is one grid-stride loop, for_each(n, f), with a device lambda f(i)
// that finds its operands through the Geometry and does the math; the math
// in each lambda is the CPU op's (tensor/ops_elementwise.cpp), so the two
// agree to rounding. These kernels are memory-bound: each thread takes four
// elements with vector loads where the operands allow (for_each.cuh), and
// the index arithmetic is one 32-bit division per coalesced dim but the
// outermost (geometry.h): none for a contiguous operand, which coalesces to
// one dim.
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/for_each.cuh"
#include "tensor/dtype.h"

namespace crfseg::kernels::cuda {

template <typename T>
void binary(BinaryKind op, const Geometry& g, T* out, const T* a, const T* b, Stream stream) {
  const char* name = "binary";
  switch (op) {
    case BinaryKind::add: map2(g, out, a, b, [] __device__(T x, T y) { return x + y; }, stream, name); break;
    case BinaryKind::sub: map2(g, out, a, b, [] __device__(T x, T y) { return x - y; }, stream, name); break;
    case BinaryKind::mul: map2(g, out, a, b, [] __device__(T x, T y) { return x * y; }, stream, name); break;
    case BinaryKind::div: map2(g, out, a, b, [] __device__(T x, T y) { return x / y; }, stream, name); break;
    case BinaryKind::maximum:
      map2(g, out, a, b, [] __device__(T x, T y) { return x >= y ? x : y; }, stream, name);
      break;
    case BinaryKind::minimum:
      map2(g, out, a, b, [] __device__(T x, T y) { return x <= y ? x : y; }, stream, name);
      break;
    case BinaryKind::add_relu:
      map2(g, out, a, b, [] __device__(T x, T y) { const T s = x + y; return s > T(0) ? s : T(0); }, stream, name);
      break;
  }
}

template <typename T>
void unary(UnaryKind op, const Geometry& g, T* out, const T* x, Stream stream) {
  const char* name = "unary";
  switch (op) {
    case UnaryKind::neg: map1(g, out, x, [] __device__(T v) { return -v; }, stream, name); break;
    case UnaryKind::exp: map1(g, out, x, [] __device__(T v) { return std::exp(v); }, stream, name); break;
    case UnaryKind::log: map1(g, out, x, [] __device__(T v) { return std::log(v); }, stream, name); break;
    case UnaryKind::sqrt: map1(g, out, x, [] __device__(T v) { return std::sqrt(v); }, stream, name); break;
    case UnaryKind::abs: map1(g, out, x, [] __device__(T v) { return std::abs(v); }, stream, name); break;
    case UnaryKind::relu: map1(g, out, x, [] __device__(T v) { return v > T(0) ? v : T(0); }, stream, name); break;
    case UnaryKind::sigmoid: {
      // exp never overflows: for v < 0 use e^v / (1 + e^v).
      auto f = [] __device__(T v) {
        if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
        const T e = std::exp(v);
        return e / (T(1) + e);
      };
      map1(g, out, x, f, stream, name);
      break;
    }
    case UnaryKind::tanh: map1(g, out, x, [] __device__(T v) { return std::tanh(v); }, stream, name); break;
    case UnaryKind::square: map1(g, out, x, [] __device__(T v) { return v * v; }, stream, name); break;
    case UnaryKind::reciprocal: map1(g, out, x, [] __device__(T v) { return T(1) / v; }, stream, name); break;
  }
}

template <typename T>
void scalar(ScalarKind op, const Geometry& g, T* out, const T* x, T c, Stream stream) {
  const char* name = "scalar";
  switch (op) {
    case ScalarKind::add: map1(g, out, x, [c] __device__(T v) { return v + c; }, stream, name); break;
    case ScalarKind::mul: map1(g, out, x, [c] __device__(T v) { return v * c; }, stream, name); break;
    case ScalarKind::pow: map1(g, out, x, [c] __device__(T v) { return std::pow(v, c); }, stream, name); break;
    case ScalarKind::rsub: map1(g, out, x, [c] __device__(T v) { return c - v; }, stream, name); break;
    case ScalarKind::rdiv: map1(g, out, x, [c] __device__(T v) { return c / v; }, stream, name); break;
  }
}

template <typename T>
void compare(CompareKind op, const Geometry& g, uint8_t* out, const T* a, const T* b, Stream stream) {
  const char* name = "compare";
  using U = uint8_t;
  switch (op) {
    case CompareKind::eq: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x == y; }, stream, name); break;
    case CompareKind::ne: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x != y; }, stream, name); break;
    case CompareKind::lt: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x < y; }, stream, name); break;
    case CompareKind::le: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x <= y; }, stream, name); break;
    case CompareKind::gt: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x > y; }, stream, name); break;
    case CompareKind::ge: map2(g, out, a, b, [] __device__(T x, T y) -> U { return x >= y; }, stream, name); break;
  }
}

template <typename T>
void where(const Geometry& g, T* out, const uint8_t* mask, const T* a, const T* b, Stream stream) {
  map3(g, out, mask, a, b, [] __device__(uint8_t m, T x, T y) { return m ? x : y; }, stream, "where");
}

// Derivatives in terms of the input x and the output y = f(x), as on the CPU.
template <typename T>
void unary_backward(UnaryGradKind op, const Geometry& g, T* out, const T* grad, const T* x, const T* y,
                    Stream stream) {
  auto run = [&](auto f) { map3(g, out, grad, x, y, f, stream, "unary_backward"); };
  switch (op) {
    case UnaryGradKind::exp: run([] __device__(T gv, T, T yv) { return gv * yv; }); break;
    case UnaryGradKind::log: run([] __device__(T gv, T xv, T) { return gv / xv; }); break;
    case UnaryGradKind::sqrt: run([] __device__(T gv, T, T yv) { return gv / (T(2) * yv); }); break;
    case UnaryGradKind::abs:
      run([] __device__(T gv, T xv, T) { return xv > T(0) ? gv : (xv < T(0) ? -gv : T(0)); });
      break;
    case UnaryGradKind::relu: run([] __device__(T gv, T xv, T) { return xv > T(0) ? gv : T(0); }); break;
    case UnaryGradKind::sigmoid: run([] __device__(T gv, T, T yv) { return gv * yv * (T(1) - yv); }); break;
    case UnaryGradKind::tanh: run([] __device__(T gv, T, T yv) { return gv * (T(1) - yv * yv); }); break;
    case UnaryGradKind::square: run([] __device__(T gv, T xv, T) { return gv * T(2) * xv; }); break;
    case UnaryGradKind::reciprocal: run([] __device__(T gv, T, T yv) { return -gv * yv * yv; }); break;
  }
}

template <typename T>
void pow_backward(const Geometry& g, T* out, const T* grad, const T* x, T c, Stream stream) {
  map2(g, out, grad, x, [c] __device__(T gv, T xv) { return gv * c * std::pow(xv, c - T(1)); }, stream,
       "pow_backward");
}


template <typename TD, typename TS>
void copy(const Geometry& g, TD* out, const TS* src, Stream stream) {
  map1(g, out, src, [] __device__(TS v) { return convert_element<TD>(v); }, stream, "copy");
}

template <typename T>
void fill(const Geometry& g, T* out, T value, Stream stream) {
  if (quad_shape(g) && quad_operand(g, 0, out, sizeof(T))) {
    Quad<T> q;
    for (T& v : q.v) v = value;
    for_each(g.numel / 4, [=] __device__(int64_t i) { *reinterpret_cast<Quad<T>*>(out + g.offset(0, 4 * i)) = q; },
             stream, "fill");
    return;
  }
  for_each(g.numel, [=] __device__(int64_t i) { out[g.offset(0, i)] = value; }, stream, "fill");
}

template <typename T>
void add_scaled(const Geometry& g, T* dst, const T* src, T alpha, Stream stream) {
  if (quad_shape(g) && quad_operand(g, 0, dst, sizeof(T)) && quad_operand(g, 1, src, sizeof(T))) {
    const int64_t ss = inner_step(g, 1);
    for_each(g.numel / 4, [=] __device__(int64_t q) {
      Quad<T>* d = reinterpret_cast<Quad<T>*>(dst + g.offset(0, 4 * q));
      const Quad<T> x = load_quad(src + g.offset(1, 4 * q), ss);
      Quad<T> r = *d;
#pragma unroll
      for (int j = 0; j < 4; ++j) r.v[j] += alpha * x.v[j];
      *d = r;
    }, stream, "add_scaled");
    return;
  }
  for_each(g.numel, [=] __device__(int64_t i) { dst[g.offset(0, i)] += alpha * src[g.offset(1, i)]; }, stream,
           "add_scaled");
}

// ---- explicit instantiations ----
#define CRFSEG_FLOAT_OPS(T)                                                                          \
  template void binary<T>(BinaryKind, const Geometry&, T*, const T*, const T*, Stream);              \
  template void unary<T>(UnaryKind, const Geometry&, T*, const T*, Stream);                         \
  template void scalar<T>(ScalarKind, const Geometry&, T*, const T*, T, Stream);                    \
  template void unary_backward<T>(UnaryGradKind, const Geometry&, T*, const T*, const T*, const T*, \
                                  Stream);                                                          \
  template void pow_backward<T>(const Geometry&, T*, const T*, const T*, T, Stream);                 \
  template void add_scaled<T>(const Geometry&, T*, const T*, T, Stream);
CRFSEG_FLOAT_OPS(float)
CRFSEG_FLOAT_OPS(double)
#undef CRFSEG_FLOAT_OPS

#define CRFSEG_COPY_FROM(TD)                                               \
  template void copy<TD, float>(const Geometry&, TD*, const float*, Stream);     \
  template void copy<TD, double>(const Geometry&, TD*, const double*, Stream);   \
  template void copy<TD, int32_t>(const Geometry&, TD*, const int32_t*, Stream); \
  template void copy<TD, int64_t>(const Geometry&, TD*, const int64_t*, Stream); \
  template void copy<TD, uint8_t>(const Geometry&, TD*, const uint8_t*, Stream);   \
  template void copy<TD, float16>(const Geometry&, TD*, const float16*, Stream);   \
  template void copy<TD, bfloat16>(const Geometry&, TD*, const bfloat16*, Stream);
#define CRFSEG_ALL_TYPE_OPS(T)                                                            \
  CRFSEG_COPY_FROM(T)                                                                     \
  template void compare<T>(CompareKind, const Geometry&, uint8_t*, const T*, const T*, Stream); \
  template void where<T>(const Geometry&, T*, const uint8_t*, const T*, const T*, Stream);       \
  template void fill<T>(const Geometry&, T*, T, Stream);
CRFSEG_ALL_TYPE_OPS(float)
CRFSEG_ALL_TYPE_OPS(double)
CRFSEG_ALL_TYPE_OPS(int32_t)
CRFSEG_ALL_TYPE_OPS(int64_t)
CRFSEG_ALL_TYPE_OPS(uint8_t)
CRFSEG_ALL_TYPE_OPS(float16)
CRFSEG_ALL_TYPE_OPS(bfloat16)
#undef CRFSEG_ALL_TYPE_OPS
#undef CRFSEG_COPY_FROM

}  // namespace crfseg::kernels::cuda
