// Elementwise ops (binary with broadcasting, unary, scalar, compare, where),
// their fused backward helpers, and the in-place ops.
//
// Each op validates once here and then calls the strided maps in
// kernels/cpu/elementwise.h with a small lambda for the math.
#include <cmath>

#include "kernels/cpu/elementwise.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace crfseg::ops {

namespace kc = kernels::cpu;

#ifdef CRFSEG_WITH_CUDA
using detail::geometry;
namespace kcu = kernels::cuda;
using detail::stream_of;
// The kernel enums list the ops in the same order as ours, so a cast maps them.
static_assert(int(BinaryOp::add_relu) == int(kcu::BinaryKind::add_relu) && int(BinaryOp::div) == int(kcu::BinaryKind::div));
static_assert(int(UnaryOp::reciprocal) == int(kcu::UnaryKind::reciprocal) &&
              int(UnaryOp::sigmoid) == int(kcu::UnaryKind::sigmoid));
static_assert(int(ScalarOp::rdiv) == int(kcu::ScalarKind::rdiv) && int(ScalarOp::pow) == int(kcu::ScalarKind::pow));
static_assert(int(CompareOp::ge) == int(kcu::CompareKind::ge) && int(CompareOp::lt) == int(kcu::CompareKind::lt));
static_assert(int(UnaryGradOp::reciprocal) == int(kcu::UnaryGradKind::reciprocal) &&
              int(UnaryGradOp::relu) == int(kcu::UnaryGradKind::relu));
#endif

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::add_relu: return "add_relu";
  }
  return "binary";
}

// Common checks for ops that combine two tensors.
void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "a");
  check_defined(op, b, "b");
  CRFSEG_CHECK(a.dtype() == b.dtype(), DTypeError, op, ": expected operands of the same dtype, got ",
               dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  check_same_device(op, a, b);
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_pair(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.options());
  const Strides sa = broadcast_strides(a.shape(), a.strides(), shape);
  const Strides sb = broadcast_strides(b.shape(), b.strides(), shape);
#ifdef CRFSEG_WITH_CUDA
  if (out.device().is_cuda()) {
    const kcu::Geometry g = geometry<3>(name, shape, {out.strides().data(), sa.data(), sb.data()});
    dispatch_float(a.dtype(), name, [&](auto tag) {
      using T = decltype(tag);
      kcu::binary<T>(kcu::BinaryKind(op), g, out.data<T>(), a.data<T>(), b.data<T>(), stream_of(out));
    });
    return out;
  }
#endif
  check_cpu(name, a);
  dispatch_float(a.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    const int64_t* so = out.strides().data();
    switch (op) {
      case BinaryOp::add: kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x + y; }); break;
      case BinaryOp::sub: kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x - y; }); break;
      case BinaryOp::mul: kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x * y; }); break;
      case BinaryOp::div: kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x / y; }); break;
      case BinaryOp::maximum:
        kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x >= y ? x : y; });
        break;
      case BinaryOp::minimum:
        kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) { return x <= y ? x : y; });
        break;
      case BinaryOp::add_relu:  // relu's own test (s > 0 ? s : 0), so NaN maps as relu(add) does
        kc::map2(shape, o, so, pa, sa.data(), pb, sb.data(), [](T x, T y) {
          const T s = x + y;
          return s > T(0) ? s : T(0);
        });
        break;
    }
  });
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor add_relu(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add_relu, a, b); }

Tensor unary(UnaryOp op, const Tensor& x) {
  check_defined("unary", x, "x");
  Tensor out = Tensor::empty(x.shape(), x.options());
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    const kcu::Geometry g = geometry<2>("unary", x.shape(), {out.strides().data(), x.strides().data()});
    dispatch_float(x.dtype(), "unary", [&](auto tag) {
      using T = decltype(tag);
      kcu::unary<T>(kcu::UnaryKind(op), g, out.data<T>(), x.data<T>(), stream_of(x));
    });
    return out;
  }
#endif
  check_cpu("unary", x);
  dispatch_float(x.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const T* px = x.data<T>();
    const int64_t* so = out.strides().data();
    const int64_t* sx = x.strides().data();
    const Shape& s = x.shape();
    switch (op) {
      case UnaryOp::neg: kc::map1(s, o, so, px, sx, [](T v) { return -v; }); break;
      case UnaryOp::exp: kc::map1(s, o, so, px, sx, [](T v) { return std::exp(v); }); break;
      case UnaryOp::log: kc::map1(s, o, so, px, sx, [](T v) { return std::log(v); }); break;
      case UnaryOp::sqrt: kc::map1(s, o, so, px, sx, [](T v) { return std::sqrt(v); }); break;
      case UnaryOp::abs: kc::map1(s, o, so, px, sx, [](T v) { return std::abs(v); }); break;
      case UnaryOp::relu: kc::map1(s, o, so, px, sx, [](T v) { return v > T(0) ? v : T(0); }); break;
      case UnaryOp::sigmoid:
        // Written so that exp never overflows: for v < 0 use e^v / (1 + e^v).
        kc::map1(s, o, so, px, sx, [](T v) {
          if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
          const T e = std::exp(v);
          return e / (T(1) + e);
        });
        break;
      case UnaryOp::tanh: kc::map1(s, o, so, px, sx, [](T v) { return std::tanh(v); }); break;
      case UnaryOp::square: kc::map1(s, o, so, px, sx, [](T v) { return v * v; }); break;
      case UnaryOp::reciprocal: kc::map1(s, o, so, px, sx, [](T v) { return T(1) / v; }); break;
    }
  });
  return out;
}

Tensor scalar_op(ScalarOp op, const Tensor& x, double scalar) {
  check_defined("scalar_op", x, "x");
  Tensor out = Tensor::empty(x.shape(), x.options());
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    const kcu::Geometry g = geometry<2>("scalar_op", x.shape(), {out.strides().data(), x.strides().data()});
    dispatch_float(x.dtype(), "scalar_op", [&](auto tag) {
      using T = decltype(tag);
      kcu::scalar<T>(kcu::ScalarKind(op), g, out.data<T>(), x.data<T>(), static_cast<T>(scalar), stream_of(x));
    });
    return out;
  }
#endif
  check_cpu("scalar_op", x);
  dispatch_float(x.dtype(), "scalar_op", [&](auto tag) {
    using T = decltype(tag);
    const T c = static_cast<T>(scalar);
    T* o = out.data<T>();
    const T* px = x.data<T>();
    const int64_t* so = out.strides().data();
    const int64_t* sx = x.strides().data();
    const Shape& s = x.shape();
    switch (op) {
      case ScalarOp::add: kc::map1(s, o, so, px, sx, [c](T v) { return v + c; }); break;
      case ScalarOp::mul: kc::map1(s, o, so, px, sx, [c](T v) { return v * c; }); break;
      case ScalarOp::pow: kc::map1(s, o, so, px, sx, [c](T v) { return std::pow(v, c); }); break;
      case ScalarOp::rsub: kc::map1(s, o, so, px, sx, [c](T v) { return c - v; }); break;
      case ScalarOp::rdiv: kc::map1(s, o, so, px, sx, [c](T v) { return c / v; }); break;
    }
  });
  return out;
}

Tensor compare(CompareOp op, const Tensor& a, const Tensor& b) {
  check_pair("compare", a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "compare");
  Tensor out = Tensor::empty(shape, {DType::u8, a.device()});
  const Strides sa = broadcast_strides(a.shape(), a.strides(), shape);
  const Strides sb = broadcast_strides(b.shape(), b.strides(), shape);
#ifdef CRFSEG_WITH_CUDA
  if (out.device().is_cuda()) {
    const kcu::Geometry g = geometry<3>("compare", shape, {out.strides().data(), sa.data(), sb.data()});
    dispatch_all(a.dtype(), "compare", [&](auto tag) {
      using T = decltype(tag);
      kcu::compare<T>(kcu::CompareKind(op), g, out.data<uint8_t>(), a.data<T>(), b.data<T>(), stream_of(out));
    });
    return out;
  }
#endif
  check_cpu("compare", a);
  dispatch_all(a.dtype(), "compare", [&](auto tag) {
    using T = decltype(tag);
    uint8_t* o = out.data<uint8_t>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    auto run = [&](auto f) { kc::map2(shape, o, out.strides().data(), pa, sa.data(), pb, sb.data(), f); };
    switch (op) {
      case CompareOp::eq: run([](T x, T y) -> uint8_t { return x == y; }); break;
      case CompareOp::ne: run([](T x, T y) -> uint8_t { return x != y; }); break;
      case CompareOp::lt: run([](T x, T y) -> uint8_t { return x < y; }); break;
      case CompareOp::le: run([](T x, T y) -> uint8_t { return x <= y; }); break;
      case CompareOp::gt: run([](T x, T y) -> uint8_t { return x > y; }); break;
      case CompareOp::ge: run([](T x, T y) -> uint8_t { return x >= y; }); break;
    }
  });
  return out;
}

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  check_pair("where", a, b);
  check_defined("where", mask, "mask");
  check_dtype("where (mask)", mask, DType::u8);
  check_same_device("where", mask, a);
  const Shape shape =
      broadcast_shapes(mask.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  Tensor out = Tensor::empty(shape, a.options());
  const Strides sm = broadcast_strides(mask.shape(), mask.strides(), shape);
  const Strides sa = broadcast_strides(a.shape(), a.strides(), shape);
  const Strides sb = broadcast_strides(b.shape(), b.strides(), shape);
#ifdef CRFSEG_WITH_CUDA
  if (out.device().is_cuda()) {
    const kcu::Geometry g = geometry<4>("where", shape, {out.strides().data(), sm.data(), sa.data(), sb.data()});
    dispatch_all(a.dtype(), "where", [&](auto tag) {
      using T = decltype(tag);
      kcu::where<T>(g, out.data<T>(), mask.data<uint8_t>(), a.data<T>(), b.data<T>(), stream_of(out));
    });
    return out;
  }
#endif
  check_cpu("where", a);
  dispatch_all(a.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    kc::map3(shape, out.data<T>(), out.strides().data(), mask.data<uint8_t>(), sm.data(), a.data<T>(),
             sa.data(), b.data<T>(), sb.data(), [](uint8_t m, T x, T y) { return m ? x : y; });
  });
  return out;
}

// Derivatives, written in terms of the input x and the output y = f(x):
//   exp: y          log: 1/x           sqrt: 1/(2y)      abs: sign(x)
//   relu: [x > 0]   sigmoid: y(1-y)    tanh: 1 - y^2     square: 2x
//   reciprocal: -y^2
Tensor unary_backward(UnaryGradOp op, const Tensor& grad, const Tensor& x, const Tensor& y) {
  check_pair("unary_backward", grad, x);
  check_pair("unary_backward", grad, y);
  CRFSEG_CHECK(grad.shape() == x.shape() && x.shape() == y.shape(), ShapeError,
               "unary_backward: expected grad, x, y of one shape, got ", shape_str(grad.shape()), ", ",
               shape_str(x.shape()), ", ", shape_str(y.shape()));
  Tensor out = Tensor::empty(x.shape(), x.options());
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    const kcu::Geometry g = geometry<4>("unary_backward", x.shape(), {out.strides().data(), grad.strides().data(),
                                                                     x.strides().data(), y.strides().data()});
    dispatch_float(x.dtype(), "unary_backward", [&](auto tag) {
      using T = decltype(tag);
      kcu::unary_backward<T>(kcu::UnaryGradKind(op), g, out.data<T>(), grad.data<T>(), x.data<T>(), y.data<T>(),
                             stream_of(x));
    });
    return out;
  }
#endif
  check_cpu("unary_backward", x);
  dispatch_float(x.dtype(), "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto f) {
      kc::map3(x.shape(), out.data<T>(), out.strides().data(), grad.data<T>(), grad.strides().data(),
               x.data<T>(), x.strides().data(), y.data<T>(), y.strides().data(), f);
    };
    switch (op) {
      case UnaryGradOp::exp: run([](T g, T, T yv) { return g * yv; }); break;
      case UnaryGradOp::log: run([](T g, T xv, T) { return g / xv; }); break;
      case UnaryGradOp::sqrt: run([](T g, T, T yv) { return g / (T(2) * yv); }); break;
      case UnaryGradOp::abs: run([](T g, T xv, T) { return xv > T(0) ? g : (xv < T(0) ? -g : T(0)); }); break;
      case UnaryGradOp::relu: run([](T g, T xv, T) { return xv > T(0) ? g : T(0); }); break;
      case UnaryGradOp::sigmoid: run([](T g, T, T yv) { return g * yv * (T(1) - yv); }); break;
      case UnaryGradOp::tanh: run([](T g, T, T yv) { return g * (T(1) - yv * yv); }); break;
      case UnaryGradOp::square: run([](T g, T xv, T) { return g * T(2) * xv; }); break;
      case UnaryGradOp::reciprocal: run([](T g, T, T yv) { return -g * yv * yv; }); break;
    }
  });
  return out;
}

Tensor pow_scalar_backward(const Tensor& grad, const Tensor& x, double s) {
  check_pair("pow_backward", grad, x);
  CRFSEG_CHECK(grad.shape() == x.shape(), ShapeError, "pow_backward: expected grad and x of one shape, got ",
               shape_str(grad.shape()), " and ", shape_str(x.shape()));
  Tensor out = Tensor::empty(x.shape(), x.options());
#ifdef CRFSEG_WITH_CUDA
  if (x.device().is_cuda()) {
    const kcu::Geometry g =
        geometry<3>("pow_backward", x.shape(), {out.strides().data(), grad.strides().data(), x.strides().data()});
    dispatch_float(x.dtype(), "pow_backward", [&](auto tag) {
      using T = decltype(tag);
      kcu::pow_backward<T>(g, out.data<T>(), grad.data<T>(), x.data<T>(), static_cast<T>(s), stream_of(x));
    });
    return out;
  }
#endif
  check_cpu("pow_backward", x);
  dispatch_float(x.dtype(), "pow_backward", [&](auto tag) {
    using T = decltype(tag);
    const T c = static_cast<T>(s);
    kc::map2(x.shape(), out.data<T>(), out.strides().data(), grad.data<T>(), grad.strides().data(),
             x.data<T>(), x.strides().data(), [c](T g, T xv) { return g * c * std::pow(xv, c - T(1)); });
  });
  return out;
}

// ---- in place ----

void fill_(const Tensor& t, double value) {
  check_defined("fill_", t, "t");
#ifdef CRFSEG_WITH_CUDA
  if (t.device().is_cuda()) {
    const kcu::Geometry g = geometry<1>("fill_", t.shape(), {t.strides().data()});
    dispatch_all(t.dtype(), "fill_", [&](auto tag) {
      using T = decltype(tag);
      kcu::fill<T>(g, t.data<T>(), static_cast<T>(value), stream_of(t));
    });
    t.bump_version();
    return;
  }
#endif
  check_cpu("fill_", t);
  dispatch_all(t.dtype(), "fill_", [&](auto tag) {
    using T = decltype(tag);
    const T v = static_cast<T>(value);
    T* p = t.data<T>();
    kc::map1(t.shape(), p, t.strides().data(), p, t.strides().data(), [v](T) { return v; });
  });
  t.bump_version();
}

void zero_(const Tensor& t) { fill_(t, 0.0); }

void copy_(const Tensor& dst, const Tensor& src) {
  check_defined("copy_", dst, "dst");
  check_defined("copy_", src, "src");
  CRFSEG_CHECK(broadcast_shapes(dst.shape(), src.shape(), "copy_") == dst.shape(), ShapeError,
               "copy_: source of shape ", shape_str(src.shape()), " does not broadcast to destination ",
               shape_str(dst.shape()));
  if (dst.device().is_cpu() && !src.device().is_cpu()) {
    // Bring the source over first, then take the strided, broadcasting,
    // casting CPU path below.
    copy_(dst, to_device(src, dst.device()));
    return;
  }
  if (dst.device().is_cuda()) {
#ifdef CRFSEG_WITH_CUDA
    // Bring the source over (contiguous, as to_device makes it), then one
    // strided, broadcasting, casting kernel.
    const Tensor moved = src.device() == dst.device() ? src : to_device(src, dst.device());
    const Strides ss = broadcast_strides(moved.shape(), moved.strides(), dst.shape());
    const kcu::Geometry g = geometry<2>("copy_", dst.shape(), {dst.strides().data(), ss.data()});
    dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
      using TD = decltype(dtag);
      dispatch_all(moved.dtype(), "copy_", [&](auto stag) {
        using TS = decltype(stag);
        kcu::copy<TD, TS>(g, dst.data<TD>(), moved.data<TS>(), stream_of(dst));
      });
    });
    dst.bump_version();
    return;
#endif
  }
  const Strides ss = broadcast_strides(src.shape(), src.strides(), dst.shape());
  dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
    using TD = decltype(dtag);
    dispatch_all(src.dtype(), "copy_", [&](auto stag) {
      using TS = decltype(stag);
      kc::map1(dst.shape(), dst.data<TD>(), dst.strides().data(), src.data<TS>(),
               ss.data(), [](TS v) { return convert_element<TD>(v); });
    });
  });
  dst.bump_version();
}

void add_(const Tensor& dst, const Tensor& src, double alpha) {
  check_pair("add_", dst, src);
  CRFSEG_CHECK(broadcast_shapes(dst.shape(), src.shape(), "add_") == dst.shape(), ShapeError,
               "add_: source of shape ", shape_str(src.shape()), " does not broadcast to destination ",
               shape_str(dst.shape()));
  const Strides ss = broadcast_strides(src.shape(), src.strides(), dst.shape());
#ifdef CRFSEG_WITH_CUDA
  if (dst.device().is_cuda()) {
    const kcu::Geometry g = geometry<2>("add_", dst.shape(), {dst.strides().data(), ss.data()});
    dispatch_float(dst.dtype(), "add_", [&](auto tag) {
      using T = decltype(tag);
      kcu::add_scaled<T>(g, dst.data<T>(), src.data<T>(), static_cast<T>(alpha), stream_of(dst));
    });
    dst.bump_version();
    return;
  }
#endif
  check_cpu("add_", dst);
  dispatch_float(dst.dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha);
    T* p = dst.data<T>();
    kc::map2(dst.shape(), p, dst.strides().data(), p, dst.strides().data(), src.data<T>(), ss.data(),
             [a](T d, T s) { return d + a * s; });
  });
  dst.bump_version();
}

void mul_(const Tensor& dst, double s) {
  check_defined("mul_", dst, "dst");
#ifdef CRFSEG_WITH_CUDA
  if (dst.device().is_cuda()) {
    const kcu::Geometry g = geometry<2>("mul_", dst.shape(), {dst.strides().data(), dst.strides().data()});
    dispatch_float(dst.dtype(), "mul_", [&](auto tag) {
      using T = decltype(tag);
      T* p = dst.data<T>();
      kcu::scalar<T>(kcu::ScalarKind::mul, g, p, p, static_cast<T>(s), stream_of(dst));
    });
    dst.bump_version();
    return;
  }
#endif
  check_cpu("mul_", dst);
  dispatch_float(dst.dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    const T c = static_cast<T>(s);
    T* p = dst.data<T>();
    kc::map1(dst.shape(), p, dst.strides().data(), p, dst.strides().data(), [c](T d) { return d * c; });
  });
  dst.bump_version();
}

}  // namespace crfseg::ops
