// Elementwise maps, casts, copies, reductions, random fills and one_hot on
// cuda:0 against the CPU (tests/cuda/support.h: check_op).

#include "tests/cuda/support.h"

TEST_CASE("cuda ops: binary ops broadcast like the CPU, f32 and f64" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor a = random_tensor({3, 1, 17, 5}, 1, dt), b = random_tensor({7, 1, 5}, 2, dt, 0.5, 2.0);
    for (auto op : {ops::BinaryOp::add, ops::BinaryOp::sub, ops::BinaryOp::mul, ops::BinaryOp::div,
                    ops::BinaryOp::maximum, ops::BinaryOp::minimum, ops::BinaryOp::add_relu}) {
      check_op("binary", {a, b}, [op](const std::vector<Tensor>& v) { return ops::binary(op, v[0], v[1]); },
               tol(dt), tol(dt));
    }
  }
}

TEST_CASE("cuda ops: unary, scalar, compare, where, on strided views" * doctest::skip(kNoDevice)) {
  auto strided = [](const Tensor& t) { return ops::slice(ops::transpose(t, 0, 1), 0, 1, 27, 2); };
  for (DType dt : {DType::f32, DType::f64}) {
    INFO(std::string(dtype_name(dt)));
    const Tensor xd = random_tensor({13, 29}, 3, dt, 0.1, 3.0), yd = random_tensor({13, 1}, 4, dt, 0.1, 3.0);
    for (auto op : {ops::UnaryOp::neg, ops::UnaryOp::exp, ops::UnaryOp::log, ops::UnaryOp::sqrt, ops::UnaryOp::abs,
                    ops::UnaryOp::relu, ops::UnaryOp::sigmoid, ops::UnaryOp::tanh, ops::UnaryOp::square,
                    ops::UnaryOp::reciprocal}) {
      check_op("unary", {xd}, [&](const std::vector<Tensor>& v) { return ops::unary(op, strided(v[0])); }, tol(dt),
               tol(dt));
    }
    for (auto op : {ops::ScalarOp::add, ops::ScalarOp::mul, ops::ScalarOp::pow, ops::ScalarOp::rsub,
                    ops::ScalarOp::rdiv}) {
      check_op("scalar", {xd}, [&](const std::vector<Tensor>& v) { return ops::scalar_op(op, strided(v[0]), 1.7); },
               tol(dt), tol(dt));
    }
    for (auto op : {ops::UnaryGradOp::exp, ops::UnaryGradOp::log, ops::UnaryGradOp::sqrt, ops::UnaryGradOp::abs,
                    ops::UnaryGradOp::relu, ops::UnaryGradOp::sigmoid, ops::UnaryGradOp::tanh,
                    ops::UnaryGradOp::square, ops::UnaryGradOp::reciprocal}) {
      check_op("unary_backward", {xd, yd}, [&](const std::vector<Tensor>& v) {
        const Tensor g = ops::mul(v[0], v[1]);
        return ops::unary_backward(op, g, v[0], ops::unary(ops::UnaryOp::sqrt, v[0]));
      }, tol(dt), tol(dt));
    }
    check_op("pow_backward", {xd}, [](const std::vector<Tensor>& v) {
      return ops::pow_scalar_backward(v[0], v[0], 2.5);
    }, tol(dt), tol(dt));
  }
  const Tensor x = random_tensor({13, 29}, 3, DType::f32, 0.1, 3.0);
  const Tensor y = random_tensor({13, 1}, 4, DType::f32, 0.1, 3.0);
  for (auto op : {ops::CompareOp::eq, ops::CompareOp::ne, ops::CompareOp::lt, ops::CompareOp::le,
                  ops::CompareOp::gt, ops::CompareOp::ge}) {
    check_op("compare", {x, y}, [&](const std::vector<Tensor>& v) { return ops::compare(op, v[0], v[1]); }, 0, 0);
  }
  check_op("where", {x, y}, [](const std::vector<Tensor>& v) {
    return ops::where(ops::compare(ops::CompareOp::gt, v[0], v[1]), v[0], v[1]);
  }, 0, 0);
  for (DType it : {DType::i32, DType::i64, DType::u8}) {
    check_op("where on integers", {x, y}, [&](const std::vector<Tensor>& v) {
      return ops::where(ops::compare(ops::CompareOp::gt, v[0], v[1]), v[0].to(it), v[1].to(it));
    }, 0, 0);
  }
}

// The maps take four elements per thread where the innermost dim is a
// multiple of 4 and every operand is contiguous along it (at a 4-element
// aligned address) or broadcast along it (kernels/cuda/for_each.cuh). These
// shapes reach that path with row and column broadcasts, padded rows, a u8
// mask, casts to 1-, 2- and 8-byte types, fill and in-place updates; a view
// one element off alignment runs the one-element path beside it.
TEST_CASE("cuda ops: elementwise maps four elements at a time" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor a = random_tensor({3, 5, 16}, 61, dt, 0.5, 2.0);
    const Tensor row = random_tensor({5, 1}, 62, dt, 0.5, 2.0), col = random_tensor({16}, 63, dt, 0.5, 2.0);
    const Tensor padded = random_tensor({3, 5, 24}, 64, dt, 0.5, 2.0);  // rows of 24, 16 used: aligned, not merged
    for (auto op : {ops::BinaryOp::add, ops::BinaryOp::mul, ops::BinaryOp::div, ops::BinaryOp::add_relu}) {
      check_op("binary, one value per row", {a, row}, [op](const std::vector<Tensor>& v) {
        return ops::binary(op, v[0], v[1]);
      }, tol(dt), tol(dt));
      check_op("binary, a row for every row", {a, col}, [op](const std::vector<Tensor>& v) {
        return ops::binary(op, v[0], v[1]);
      }, tol(dt), tol(dt));
      check_op("binary, padded rows and one off alignment", {a, padded}, [op](const std::vector<Tensor>& v) {
        return ops::add(ops::binary(op, v[0], ops::slice(v[1], 2, 0, 16)), ops::binary(op, v[0], ops::slice(v[1], 2, 1, 17)));
      }, tol(dt), tol(dt));
    }
    check_op("unary and compare", {a, col}, [](const std::vector<Tensor>& v) {
      const Tensor mask = ops::compare(ops::CompareOp::gt, v[0], v[1]);  // u8, four a thread
      return ops::where(mask, ops::unary(ops::UnaryOp::exp, v[0]), v[1]);
    }, tol(dt), tol(dt));
    check_op("unary_backward and pow_backward", {a, padded}, [](const std::vector<Tensor>& v) {
      const Tensor g = ops::slice(v[1], 2, 4, 20);  // rows of 24 starting 4 in: aligned
      return ops::add(ops::unary_backward(ops::UnaryGradOp::log, g, v[0], ops::unary(ops::UnaryOp::log, v[0])),
                      ops::pow_scalar_backward(g, v[0], 2.5));
    }, tol(dt), tol(dt));
    check_op("casts", {a}, [](const std::vector<Tensor>& v) {
      const Tensor scaled = ops::scalar_op(ops::ScalarOp::mul, v[0], 50.0);
      return ops::concat({ops::to_dtype(ops::to_dtype(scaled, DType::u8), v[0].dtype()),
                          ops::to_dtype(ops::to_dtype(scaled, DType::bf16), v[0].dtype()),
                          ops::to_dtype(ops::to_dtype(scaled, DType::i64), v[0].dtype())}, 0);
    }, 0, 0);
    check_op("fill, add_ and mul_ in place", {a, row, col}, [](const std::vector<Tensor>& v) {
      Tensor out = ops::clone(v[0]);
      ops::add_(out, v[1], -0.5);                      // a broadcast source
      ops::add_(ops::slice(out, 2, 4, 12), ops::slice(v[0], 2, 0, 8), 2.0);  // aligned views of rows
      ops::add_(ops::slice(out, 2, 1, 9), ops::slice(v[2], 0, 0, 8), 1.0);  // one off: one at a time
      ops::mul_(out, 0.25);
      Tensor filled = empty({3, 5, 16}, v[0].options());
      ops::fill_(filled, 3.0);
      ops::fill_(ops::slice(filled, 2, 8, 16), -1.0);
      return ops::concat({out, filled}, 0);
    }, tol(dt), tol(dt));
  }
}

TEST_CASE("cuda ops: copies cast, broadcast and write strided destinations" * doctest::skip(kNoDevice)) {
  const Tensor x = random_tensor({5, 7, 3}, 5, DType::f32, -300.0, 300.0);
  for (DType to : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8}) {
    check_op("to_dtype", {x}, [to](const std::vector<Tensor>& v) { return ops::to_dtype(v[0], to); }, 0, 0);
  }
  check_op("contiguous(permute)", {x}, [](const std::vector<Tensor>& v) {
    return ops::contiguous(ops::permute(v[0], {2, 0, 1}));
  }, 0, 0);
  check_op("copy_ into a strided slice", {x}, [](const std::vector<Tensor>& v) {
    Tensor out = zeros({5, 7, 8}, v[0].options());
    ops::copy_(ops::slice(out, 2, 1, 7, 2), v[0]);  // every other column
    ops::add_(ops::slice(out, 2, 0, 1), ops::slice(v[0], 2, 0, 1), -2.0);
    ops::mul_(out, 0.5);
    return out;
  }, 0, 0);
  check_op("concat", {x}, [](const std::vector<Tensor>& v) {
    return ops::concat({v[0], ops::scalar_op(ops::ScalarOp::mul, v[0], 2.0)}, 1);
  }, 0, 0);
  // NaN and out-of-range floats cast to integers saturate as on the CPU.
  const Tensor odd = from_vector<float>({NAN, 1e10f, -1e10f, 3.7f, -2.2f}, {5});
  check_op("saturating casts", {odd}, [](const std::vector<Tensor>& v) { return ops::to_dtype(v[0], DType::i32); },
           0, 0);
}

TEST_CASE("cuda ops: bf16 and f16 casts, fills, compares and selects give the CPU's bits" * doctest::skip(kNoDevice)) {
  // Every rounding case the CPU test probes, in miniature: random bit patterns
  // (NaNs, infinities, subnormals included) and values past f16's range.
  std::vector<float> v = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65519.0f, 65520.0f, 2.9802322e-08f, 1.00390625f,
                          1e-40f, 3e38f, -3e38f};
  uint32_t state = 12345;
  for (int i = 0; i < 4093; ++i) {
    state = state * 1664525u + 1013904223u;
    float f;
    std::memcpy(&f, &state, sizeof f);
    v.push_back(f);
  }
  const Tensor x = from_vector<float>(v, {static_cast<int64_t>(v.size())});
  // The same bits, except that a NaN need only be a NaN: the GPU's f32 <-> f64
  // conversions give the canonical NaN where the CPU keeps sign and payload.
  const auto same_bits = [](const Tensor& got, const Tensor& want) {
    REQUIRE(got.dtype() == want.dtype());
    const std::vector<double> g = values(cpu(got)), w = values(want);
    int64_t differ = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      if (std::isnan(w[i])) differ += !std::isnan(g[i]);
      else differ += !(g[i] == w[i] && std::signbit(g[i]) == std::signbit(w[i]));
    }
    CHECK(differ == 0);
  };
  for (DType half : {DType::bf16, DType::f16}) {
    CAPTURE(std::string(dtype_name(half)));
    const Tensor h = ops::to_dtype(x, half);
    same_bits(ops::to_dtype(gpu(x), half), h);
    same_bits(ops::to_dtype(ops::to_dtype(gpu(x), DType::f64), half), ops::to_dtype(ops::to_dtype(x, DType::f64), half));
    for (DType to : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::bf16, DType::f16}) {
      same_bits(ops::to_dtype(gpu(h), to), ops::to_dtype(h, to));
    }
    Tensor filled = zeros({5}, {half, Device::cuda(0)});
    ops::fill_(filled, 0.1);
    Tensor want = zeros({5}, {half});
    ops::fill_(want, 0.1);
    same_bits(filled, want);
    const Tensor a = ops::slice(h, 0, 0, 2048), b = ops::slice(h, 0, 2048, 4096);
    same_bits(ops::compare(ops::CompareOp::lt, gpu(a), gpu(b)), ops::compare(ops::CompareOp::lt, a, b));
    const Tensor mask = ops::compare(ops::CompareOp::ge, a, b);
    same_bits(ops::where(gpu(mask), gpu(a), gpu(b)), ops::where(mask, a, b));
  }
}

TEST_CASE("cuda ops: sum, mean, max over any dims; max's backward" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({3, 37, 11, 300}, 6, dt);  // rows long and short
    const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {1, 3}, {3}, {0, 2}, {0, 2, 3}};
    for (const auto& dims : dim_sets) {
      check_op("sum", {x}, [&](const std::vector<Tensor>& v) { return ops::sum(v[0], dims); }, 1e-4, tol(dt));
      check_op("mean", {x}, [&](const std::vector<Tensor>& v) { return ops::mean(v[0], dims, true); }, 1e-6, tol(dt));
      check_op("max", {x}, [&](const std::vector<Tensor>& v) { return ops::max(v[0], dims); }, 0, 0);
      check_op("max index", {x}, [&](const std::vector<Tensor>& v) { return ops::max_with_index(v[0], dims, false).second; },
               0, 0);
      check_op("max_backward", {x}, [&](const std::vector<Tensor>& v) {
        auto [m, idx] = ops::max_with_index(v[0], dims, true);
        return ops::max_backward(ops::scalar_op(ops::ScalarOp::add, m, 1.0), idx, v[0].shape(), dims, true);
      }, 0, 0);
    }
  }
  // Ties go to the first maximum, and NaN wins, as on the CPU.
  const Tensor ties = from_vector<float>({1, 3, 3, 2, NAN, 5, 0, 0}, {2, 4});
  check_op("ties and NaN", {ties}, [](const std::vector<Tensor>& v) { return ops::argmax(v[0], 1); }, 0, 0);
  // A sum over an empty dim is zeros, as on the CPU (a batch of no images'
  // bias gradient).
  const Tensor hollow = zeros({3, 0, 2});
  check_op("sum over an empty dim", {hollow}, [](const std::vector<Tensor>& v) { return ops::sum(v[0], {1}); }, 0, 0);
  // Rows of 256 and more take a block each (kernels/cuda/reduce.cu), in a
  // grid of at most 65535 blocks that strides over 70001 rows here; ties and
  // NaN in such rows too.
  const Tensor many = random_tensor({70001, 257}, 7);
  check_op("sum over 70001 long rows", {many}, [](const std::vector<Tensor>& v) { return ops::sum(v[0], {1}); }, 1e-4,
           tol(DType::f32));
  check_op("max over 70001 long rows", {many}, [](const std::vector<Tensor>& v) {
    const auto [m, idx] = ops::max_with_index(v[0], {1}, false);
    return ops::concat({m, ops::to_dtype(idx, DType::f32)}, 0);
  }, 0, 0);
  // Fewer than 1024 rows of more than 16384 elements are summed in 16384-
  // element chunks, then the chunks' sums: one row (a whole-tensor sum) of
  // a prime length past 64 chunks, three rows whose last chunk is partial,
  // exactly two chunks, and f64; the same bits on a second run.
  for (const Shape& shape : std::vector<Shape>{{1, 1048583}, {3, 100003}, {2, 32768}, {5, 16385}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      const Tensor x = random_tensor(shape, 9, dt);
      const std::string name = "chunked sum of " + shape_str(shape) + " " + dtype_name(dt);
      check_op(name.c_str(), {x}, [](const std::vector<Tensor>& v) { return ops::sum(v[0], {1}); }, 1e-4, tol(dt));
      check_op(("mean: " + name).c_str(), {x}, [](const std::vector<Tensor>& v) { return ops::mean(v[0], {1}); },
               1e-9, tol(dt));
      const Tensor on_device = gpu(x);
      CHECK(values(cpu(ops::sum(on_device, {1}))) == values(cpu(ops::sum(on_device, {1}))));
    }
  }
  const Tensor ones_long = ones({2, 40000}, {DType::f32});  // exact: each row's sum is 40000
  CHECK(values(cpu(ops::sum(gpu(ones_long), {1}))) == std::vector<double>{40000.0, 40000.0});
  std::vector<float> long_ties(3 * 300, 1.0f);
  long_ties[7] = long_ties[200] = 4.0f;  // row 0: the first of two maxima
  long_ties[300 + 250] = NAN;            // row 1: NaN wins
  long_ties[600 + 299] = 2.0f;           // row 2: the last element
  const Tensor lt = from_vector<float>(long_ties, {3, 300});
  check_op("ties and NaN in long rows", {lt}, [](const std::vector<Tensor>& v) {
    return ops::concat({ops::max(v[0], {1}), ops::to_dtype(ops::argmax(v[0], 1), DType::f32)}, 0);
  }, 0, 0);
}

TEST_CASE("cuda ops: dropout masks, random fills and one_hot equal the CPU's" * doctest::skip(kNoDevice)) {
  Generator g1(5), g2(5);
  const Tensor like = zeros({3, 17}, {DType::f32});
  CHECK(values(ops::dropout_mask(like, 0.3, g1)) == values(cpu(ops::dropout_mask(gpu(like), 0.3, g2))));
  Tensor a = empty({1000}), b = empty({1000}, {DType::f32, Device::cuda(0)});
  Generator g3(9), g4(9);
  normal_(a, 0.0, 1.0, g3);
  normal_(b, 0.0, 1.0, g4);
  CHECK(values(a) == values(cpu(b)));
  const Tensor t = from_vector<int64_t>({0, 2, -100, 1, 2, 0}, {2, 3});
  check_op("one_hot", {t}, [](const std::vector<Tensor>& v) { return ops::one_hot(v[0], 3, DType::f32, -100); }, 0, 0);
  const Tensor t2 = from_vector<int64_t>({0, 2, 1, 1, 2, 0}, {2, 3});
  check_op("one_hot, ignore_index a class", {t2}, [](const std::vector<Tensor>& v) {
    return ops::one_hot(v[0], 3, DType::f64, 2);  // class 2's positions: all-zero columns
  }, 0, 0);
  // A bad target is a deferred check: raised at the next read (here the
  // result's; at the op itself under CRFSEG_CUDA_SYNC=1).
  check_throws_with<ValueError>([&] { cpu(ops::one_hot(gpu(from_vector<int64_t>({0, 5}, {2})), 3, DType::f32)); },
                                "one_hot: target 5 at flat index 1 is outside [0, 3)");
  CHECK(cuda::deferred_checks_pending() == 0);
  check_throws_with<DTypeError>([&] { ops::one_hot(gpu(t), 3, DType::i64); }, "expected dtype f32 or f64, got i64");
  // A transposed view gets the numbers it gets on the CPU.
  const Tensor host_view = ops::transpose(zeros({3, 5}, {DType::f32}), 0, 1);
  const Tensor device_view = ops::transpose(zeros({3, 5}, {DType::f32, Device::cuda(0)}), 0, 1);
  Generator g5(11), g6(11);
  uniform_(host_view, -2.0, 2.0, g5);
  uniform_(device_view, -2.0, 2.0, g6);
  CHECK(values(host_view) == values(cpu(device_view)));
}
