// Every op that has a CUDA kernel, run on cuda:0 and compared with the same
// op on the CPU (ggml's test-backend-ops pattern). Inputs are random, with
// awkward sizes (primes, 1, non-multiples of the tile sizes), broadcast and
// strided views. Each case needs a CUDA device: without one doctest reports
// it as skipped, not passed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <utility>

#include "autograd/functions.h"
#include "crf/bilateral_prefetch.h"
#include "crf/crf_rnn.h"
#include "crf/mean_field_composed.h"
#include "layers/linear.h"
#include "layers/optim/adam.h"
#include "layers/optim/clip_grad.h"
#include "layers/optim/sgd.h"
#include "models/segmenter.h"
#include "kernels/conv_autotune.h"
#include "kernels/cuda/conv2d.h"
#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/cuda_check.h"
#endif
#include "kernels/cuda/gemm/gemm.h"
#include "tensor/cuda_memory.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

const bool kNoDevice = cuda::device_count() == 0;

Tensor gpu(const Tensor& t) { return t.to(Device::cuda(0)); }
Tensor cpu(const Tensor& t) { return t.to(Device::cpu()); }

// A float tensor's values rounded to BF16 (to nearest even, as
// __float2bfloat16_rn), as f64: the operands a bf16-precision product
// must have multiplied.
Tensor bf16_rounded(const Tensor& t) {
  std::vector<float> v = ops::contiguous(t).to_vector<float>();
  for (float& f : v) {
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, sizeof u);
  }
  return from_vector(v, t.shape()).to(DType::f64);
}

// f32 kernels on the two devices round differently; f64 must agree closely.
double tol(DType d) { return d == DType::f64 ? 1e-12 : 2e-5; }

// ||got - want|| / ||want|| over all elements (infinite if any is NaN).
double relative_error(const Tensor& got, const Tensor& want) {
  const std::vector<double> g = values(got), w = values(want);
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = g[i] - w[i];
    num += std::isnan(d) ? INFINITY : d * d;
    den += w[i] * w[i];
  }
  return std::sqrt(num / den);
}

// Runs f on CPU inputs and on their CUDA copies; the results must agree.
template <typename F>
void check_op(const char* what, const std::vector<Tensor>& inputs, F f, double atol, double rtol) {
  std::vector<Tensor> on_gpu;
  for (const Tensor& t : inputs) on_gpu.push_back(gpu(t));
  const Tensor want = f(inputs);
  const Tensor got = f(on_gpu);
  INFO(std::string(what));
  REQUIRE(got.device() == Device::cuda(0));
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  CHECK_CLOSE(cpu(got), values(want), atol, rtol);
}

// `out` and the gradient of each of `leaves` (each must have one), flattened
// into one tensor on the CPU: what a forward and backward on each device
// are compared by.
Tensor with_grads(const Tensor& out, const std::vector<Tensor>& leaves) {
  std::vector<Tensor> parts = {ops::flatten(detach(out))};
  for (const Tensor& t : leaves) {
    REQUIRE(grad(t).defined());
    parts.push_back(ops::flatten(grad(t)));
  }
  return cpu(ops::concat(parts, 0));
}

// Every tensor of m's state, in state_dict order, as f64 values.
std::vector<double> state_values(const nn::Module& m) {
  std::vector<double> w;
  for (const auto& named : m.state_dict()) {
    const std::vector<double> v = values(cpu(named.second).to(DType::f64));
    w.insert(w.end(), v.begin(), v.end());
  }
  return w;
}

// The depth-2, base-4 U-Net of the training tests.
std::shared_ptr<models::Segmenter> tiny_unet(Generator& gen) {
  return std::make_shared<models::Segmenter>(
      models::SegmenterConfig{.encoder = "unet", .in_channels = 3, .num_classes = 3, .base_width = 4, .depth = 2},
      gen);
}

// Sets where the CRF builds its CUDA lattices for a scope.
struct LatticeBuildGuard {
  explicit LatticeBuildGuard(crf::LatticeBuild build) : previous(crf::set_cuda_lattice_build(build)) {}
  ~LatticeBuildGuard() { crf::set_cuda_lattice_build(previous); }
  crf::LatticeBuild previous;
};

}  // namespace

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
  std::vector<float> long_ties(3 * 300, 1.0f);
  long_ties[7] = long_ties[200] = 4.0f;  // row 0: the first of two maxima
  long_ties[300 + 250] = NAN;            // row 1: NaN wins
  long_ties[600 + 299] = 2.0f;           // row 2: the last element
  const Tensor lt = from_vector<float>(long_ties, {3, 300});
  check_op("ties and NaN in long rows", {lt}, [](const std::vector<Tensor>& v) {
    return ops::concat({ops::max(v[0], {1}), ops::to_dtype(ops::argmax(v[0], 1), DType::f32)}, 0);
  }, 0, 0);
}

#ifdef CRFSEG_WITH_CUDA  // the registry exists only in CUDA builds
// A GEMM's result against the double reference at the tolerance of the
// precision its inputs were multiplied at. TF32 rounds each input to 11
// significant bits and BF16 to 8: those are judged by the relative
// Frobenius error (about 3e-4 and 3e-3 expected), which NaN never passes.
void check_product(kernels::cuda::GemmPrecision precision, const Tensor& got, const Tensor& want) {
  switch (precision) {
    case kernels::cuda::GemmPrecision::fp32: CHECK_CLOSE(got, values(want), 1e-4, 1e-4); break;
    case kernels::cuda::GemmPrecision::tf32: CHECK(relative_error(got, want) < 3e-3); break;
    case kernels::cuda::GemmPrecision::bf16: CHECK(relative_error(got, want) < 2e-2); break;
  }
}

// Routes every production SGEMM through a variant for a scope.
struct SgemmProductionGuard {
  explicit SgemmProductionGuard(const std::string& name) : previous(kernels::cuda::set_sgemm_production(name)) {}
  ~SgemmProductionGuard() { kernels::cuda::set_sgemm_production(previous); }
  std::string previous;
};

TEST_CASE("cuda: the production SGEMM can be switched by name, and an unknown name changes nothing") {
  // (No device needed: this is the registry and the setting.)
  const std::string before = kernels::cuda::sgemm_production_name();
  {
    const SgemmProductionGuard guard("v4_float4_dbuf");
    CHECK(guard.previous == before);
    CHECK(kernels::cuda::sgemm_production_name() == "v4_float4_dbuf");
    CHECK(kernels::cuda::sgemm_variants()[kernels::cuda::sgemm_production_index()].name == "v4_float4_dbuf");
    check_throws_with<ValueError>([] { kernels::cuda::set_sgemm_production("v99"); },
                                  "no variant named 'v99'; the variants are cublas, v1_naive");
    CHECK(kernels::cuda::sgemm_production_name() == "v4_float4_dbuf");
  }
  CHECK(kernels::cuda::sgemm_production_name() == before);
}

TEST_CASE("cuda: matmul and a U-Net step through each hand-written FP32 production SGEMM match the CPU" *
          doctest::skip(kNoDevice)) {
  // What CRFSEG_CUDA_SGEMM=<name> does to a whole step: ops::matmul, the
  // im2col convolutions (one GEMM per image where cuBLAS would batch) and
  // the weight gradients all run the variant.
  const Tensor a = random_tensor({97, 131}, 140), b = random_tensor({131, 65}, 141);
  const Tensor x = random_tensor({2, 3, 17, 23}, 142);
  const Tensor y = random_tensor({2, 17, 23}, 143, DType::f64, 0, 3).to(DType::i64);
  auto step = [&](Device d) {
    Generator gen(6);
    const auto net = tiny_unet(gen);
    net->to(d);
    const Tensor logits = (*net)(x.to(d));
    backward(cross_entropy(logits, y.to(d)));
    return with_grads(logits, net->parameters());
  };
  const Tensor want = step(Device::cpu());
  for (const char* name : {"v2_smem_tile", "v4_float4_dbuf", "v8_float4_256x128"}) {
    const SgemmProductionGuard guard(name);
    INFO(std::string(name));
    check_op("matmul", {a, b}, [](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); }, 1e-4, 1e-4);
    CHECK_CLOSE(step(Device::cuda(0)), values(want), 1e-3, 1e-3);
  }
}

TEST_CASE("cuda ops: every CUDA SGEMM variant matches the CPU on awkward shapes" * doctest::skip(kNoDevice)) {
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{1, 1, 1}, Case{7, 13, 3}, Case{129, 131, 17}, Case{256, 128, 64}, Case{5, 300, 257},
                       Case{97, 1, 200}, Case{256, 260, 130},
                       // K and N multiples of 4 (v5's cp.async path) with a
                       // tail in every dimension: 3 rows, 4 columns, 4 deep;
                       // then 5 slices of 32, so each of v5's 3 stages is
                       // refilled while the others are read.
                       Case{131, 260, 36}, Case{131, 260, 132},
                       // v6/v7 (128 x 256 tiles, 4 stages of 32): 10 slices
                       // wrap the stages twice, 3 tile rows leave v7's
                       // second pair half outside M, and 17 tile rows pass
                       // the 16-row raster group.
                       Case{300, 520, 300}, Case{2100, 300, 40},
                       // v9/v10 (BF16, slices of 64): 10 slices, the last
                       // 24 deep, wrap the 4 stages twice.
                       Case{130, 260, 600}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const Tensor A = random_tensor(ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, 7);
        const Tensor B = random_tensor(tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, 8);
        const Tensor C0 = random_tensor({c.M, c.N}, 9);
        // The CPU reference: alpha op(A) op(B) + beta C0 in double.
        const Tensor a64 = A.to(DType::f64), b64 = B.to(DType::f64);
        const Tensor prod = ops::matmul(ta ? ops::transpose(a64, 0, 1) : a64, tb ? ops::transpose(b64, 0, 1) : b64);
        const Tensor want = ops::add(ops::scalar_op(ops::ScalarOp::mul, prod, 1.5),
                                     ops::scalar_op(ops::ScalarOp::mul, C0.to(DType::f64), -0.5));
        const Tensor dA = gpu(A), dB = gpu(B);
        for (const auto& v : kernels::cuda::sgemm_variants()) {
          INFO(v.name, " M=", c.M, " N=", c.N, " K=", c.K, " ta=", ta, " tb=", tb);
          const Tensor dC = gpu(C0);
          v.fn(ta, tb, c.M, c.N, c.K, 1.5f, dA.data<float>(), ta ? c.M : c.K, dB.data<float>(), tb ? c.K : c.N, -0.5f,
               dC.data<float>(), c.N, cuda::current_stream(0));
          // beta = 0 must not read C: poison it with NaN first.
          const Tensor dP = full({c.M, c.N}, NAN, {DType::f32, Device::cuda(0)});
          v.fn(ta, tb, c.M, c.N, c.K, 1.0f, dA.data<float>(), ta ? c.M : c.K, dB.data<float>(), tb ? c.K : c.N, 0.0f,
               dP.data<float>(), c.N, cuda::current_stream(0));
          check_product(v.precision, cpu(dC), want);
          check_product(v.precision, cpu(dP), prod);
        }
      }
    }
  }
  // Padded leading dimensions, operands off a 16-byte boundary, and a padded
  // C. Variants with 16-byte loads (v4) may take them only where both the
  // pointer and ld allow: ld a multiple of 4 (and past the columns) at
  // offset 0 runs the vector path over padded rows; an odd ld at offset 0
  // leaves only the ld check, at offset 1 only the pointer check, between
  // the kernel and a misaligned float4 load. C's padding columns must stay
  // untouched (NaN). cuBLAS also runs in TF32 and BF16: BF16 rounds the
  // operands into scratch, where A's 130 x 70 elements (not a multiple of
  // 128) put B's copy past a rounded offset.
  const int64_t M = 130, N = 140, K = 70, ldc = N + 5;
  const std::pair<bool, int64_t> layouts[] = {{false, 1}, {false, 0}, {true, 0}, {true, 1}};  // (ld % 4 == 0, offset)
  for (const auto& [ld4, offset] : layouts) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
        // Past the columns by 4 to 7 (a multiple of 4), or by 3 (odd: the columns are even).
        const auto padded = [ld4 = ld4](int64_t cols) { return ld4 ? (cols + 7) / 4 * 4 : cols + 3; };
        const int64_t lda = padded(a_cols), ldb = padded(b_cols);
        // Storage of offset + rows * ld floats; the matrix starts at element `offset`.
        const Tensor a_store = random_tensor({offset + a_rows * lda}, 21);
        const Tensor b_store = random_tensor({offset + b_rows * ldb}, 22);
        auto logical = [offset = offset](const Tensor& store, int64_t rows, int64_t ld, int64_t cols) {
          return ops::slice(reshape(ops::slice(store, 0, offset, offset + rows * ld), {rows, ld}), 1, 0, cols)
              .to(DType::f64);
        };
        const Tensor a64 = logical(a_store, a_rows, lda, a_cols), b64 = logical(b_store, b_rows, ldb, b_cols);
        const Tensor want = ops::matmul(ta ? ops::transpose(a64, 0, 1) : a64, tb ? ops::transpose(b64, 0, 1) : b64);
        const Tensor dA = gpu(a_store), dB = gpu(b_store);
        for (const auto& v : kernels::cuda::sgemm_variants()) {
          const bool is_cublas = v.name == "cublas";
          for (const cuda::MatmulPrecision precision :
               {cuda::MatmulPrecision::fp32, cuda::MatmulPrecision::tf32, cuda::MatmulPrecision::bf16}) {
            if (precision != cuda::MatmulPrecision::fp32 && !is_cublas) continue;
            INFO(v.name, " lda ", lda, " ldb ", ldb, " offset ", offset, " ta=", ta, " tb=", tb, " precision ",
                 static_cast<int>(precision));
            const cuda::MatmulPrecisionGuard guard(precision);
            const Tensor dC = full({M, ldc}, NAN, {DType::f32, Device::cuda(0)});
            v.fn(ta, tb, M, N, K, 1.0f, dA.data<float>() + offset, lda, dB.data<float>() + offset, ldb, 0.0f,
                 dC.data<float>(), ldc, cuda::current_stream(0));
            const Tensor c = cpu(dC), used = ops::slice(c, 1, 0, N);
            // cuBLAS at a reduced precision, or a variant of its own.
            check_product(is_cublas ? kernels::cuda::gemm_precision() : v.precision, used, want);
            const std::vector<double> padding = values(ops::slice(c, 1, N, ldc));
            CHECK(std::all_of(padding.begin(), padding.end(), [](double x) { return std::isnan(x); }));
          }
        }
      }
    }
  }
}

// v11 (the tensor-core tile kernel the implicit convolution runs at bf16)
// judged exactly: on operands already rounded to BF16 its only error is
// FP32 accumulation's, so one wrong fragment element anywhere, which BF16's
// tolerance above could hide, fails here. Every transposition, edges in
// each dimension, depths of one, two and several 32-deep slices.
TEST_CASE("cuda ops: v11_bf16_mma_tile multiplies BF16-rounded operands with FP32 accumulation" *
          doctest::skip(kNoDevice)) {
  const auto& v11 = kernels::cuda::sgemm_variant("v11_bf16_mma_tile");
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{1, 1, 1}, Case{129, 131, 17}, Case{64, 128, 32}, Case{200, 260, 70}, Case{97, 5, 300}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        INFO("M ", c.M, " N ", c.N, " K ", c.K, " ta=", ta, " tb=", tb);
        const Shape a_shape = ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, b_shape = tb ? Shape{c.N, c.K} : Shape{c.K, c.N};
        const Tensor a64 = bf16_rounded(random_tensor(a_shape, 41)), b64 = bf16_rounded(random_tensor(b_shape, 42));
        const Tensor want = ops::matmul(ta ? ops::transpose(a64, 0, 1) : a64, tb ? ops::transpose(b64, 0, 1) : b64);
        const Tensor dA = gpu(a64.to(DType::f32)), dB = gpu(b64.to(DType::f32));
        const Tensor dC = full({c.M, c.N}, NAN, {DType::f32, Device::cuda(0)});
        v11.fn(ta, tb, c.M, c.N, c.K, 1.0f, dA.data<float>(), a_shape[1], dB.data<float>(), b_shape[1], 0.0f,
               dC.data<float>(), c.N, cuda::current_stream(0));
        CHECK(relative_error(cpu(dC), want) < 1e-5);
      }
    }
  }
}

// A variant that silently handed every call to another would pass the
// tests above on the other's merits: on a compute capability 9.0 device,
// an sm_90a build must run v6, v7, v9 and v10's own wgmma kernels.
TEST_CASE("cuda ops: the wgmma SGEMM variants run their own kernels on compute capability 9.0, and pack wide B" *
          doctest::skip(kNoDevice)) {
  int major = 0, minor = 0;
  CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
#if defined(CRFSEG_CUDA_SM90A)
  const bool expected = major == 9 && minor == 0;
#else
  const bool expected = false;
#endif
  MESSAGE("compute capability ", major, ".", minor, ", wgmma kernels active: TF32 ", kernels::cuda::sgemm_wgmma_active(),
          ", BF16 ", kernels::cuda::sgemm_bf16_wgmma_active());
  CHECK(kernels::cuda::sgemm_wgmma_active() == expected);
  CHECK(kernels::cuda::sgemm_bf16_wgmma_active() == expected);
  // B not transposed is packed as B^T [N][K]: N = 2^21 + 40 rows are more
  // than 65535 row tiles of 32, which the packing grid strides over.
  const int64_t M = 3, N = (int64_t{1} << 21) + 40, K = 5;
  const Tensor A = random_tensor({M, K}, 36), B = random_tensor({K, N}, 37);
  const Tensor want = ops::matmul(A.to(DType::f64), B.to(DType::f64));
  const Tensor dA = gpu(A), dB = gpu(B);
  for (const char* name : {"v6_tf32_wgmma", "v7_tf32_wgmma_pair", "v9_bf16_wgmma", "v10_bf16_wgmma_pair"}) {
    INFO(std::string(name));
    const auto& v = kernels::cuda::sgemm_variant(name);
    const Tensor dC = full({M, N}, NAN, {DType::f32, Device::cuda(0)});
    v.fn(false, false, M, N, K, 1.0f, dA.data<float>(), K, dB.data<float>(), N, 0.0f, dC.data<float>(), N,
         cuda::current_stream(0));
    check_product(v.precision, cpu(dC), want);
  }
}

// The BF16 products alone (the benchmark's kernel-to-kernel table): v9's
// and v10's kernels on BF16 operands already K-major, against cuBLAS's on
// the same operands and the CPU in double on the same rounded values. The
// rows' padding past K holds NaN, which a kernel reading past K would
// carry into C. K = 37 is one partial slice; 600 wraps the 4 stages twice.
TEST_CASE("cuda ops: the BF16 wgmma SGEMM kernels on K-major BF16 operands match cuBLAS and the CPU" *
          doctest::skip(kNoDevice)) {
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{130, 260, 600}, Case{3, 300, 37}}) {
    const int64_t M = c.M, N = c.N, K = c.K;
    const int64_t ld = (K + 7) / 8 * 8 + 8;  // a multiple of 8, past K by 8 to 15
    auto padded = [&](int64_t rows, uint64_t seed) {
      const Tensor values_part = random_tensor({rows, K}, seed);
      return ops::concat({values_part, full({rows, ld - K}, NAN, {DType::f32, Device::cpu()})}, 1);
    };
    const Tensor a32 = padded(M, 41), b32 = padded(N, 42);
    const Tensor dA = gpu(a32).to(DType::bf16), dB = gpu(b32).to(DType::bf16);
    // The reference on the rounded values: bf16 -> f64 on the CPU.
    const Tensor a64 = ops::slice(cpu(dA).to(DType::f64), 1, 0, K), b64 = ops::slice(cpu(dB).to(DType::f64), 1, 0, K);
    const Tensor want = ops::matmul(a64, ops::transpose(b64, 0, 1));
    const auto* a = static_cast<const uint16_t*>(dA.raw_data());
    const auto* b = static_cast<const uint16_t*>(dB.raw_data());
    const Tensor by_cublas = full({M, N}, NAN, {DType::f32, Device::cuda(0)});
    kernels::cuda::gemm_bf16_cublas_kmajor(M, N, K, 1.0f, a, ld, b, ld, 0.0f, by_cublas.data<float>(), N,
                                           cuda::current_stream(0));
    INFO("M ", M, " N ", N, " K ", K);
    CHECK(relative_error(cpu(by_cublas), want) < 1e-5);  // FP32 sums of exact products
    if (!kernels::cuda::sgemm_bf16_wgmma_active()) {
      MESSAGE("the BF16 wgmma kernels are not checked: they need an sm_90a build on compute capability 9.0");
      continue;
    }
    for (const bool pair : {false, true}) {
      INFO("pair ", pair);
      const Tensor dC = full({M, N}, NAN, {DType::f32, Device::cuda(0)});
      kernels::cuda::gemm_bf16_wgmma_kmajor(pair, M, N, K, 1.0f, a, ld, b, ld, 0.0f, dC.data<float>(), N,
                                            cuda::current_stream(0));
      CHECK(relative_error(cpu(dC), want) < 1e-5);
    }
  }
  // Operands the kernel cannot read in place are refused before any launch.
  if (kernels::cuda::sgemm_bf16_wgmma_active()) {
    const Tensor x = full({4, 16}, 1.0, {DType::bf16, Device::cuda(0)});
    const auto* p = static_cast<const uint16_t*>(x.raw_data());
    const Tensor c = empty({4, 4}, {DType::f32, Device::cuda(0)});
    check_throws_with<ValueError>(
        [&] {
          kernels::cuda::gemm_bf16_wgmma_kmajor(false, 4, 4, 12, 1.0f, p, 12, p, 16, 0.0f, c.data<float>(), 4,
                                                cuda::current_stream(0));
        },
        "strides a multiple of 8");
  }
}

// Rows padded to a multiple of 4 with column counts that are not: v5's
// copies of 16 bytes end a row with 4, 8 or 12 source bytes and zeros.
// K = 101 (3 whole slices of 32 and 5 deep) and N = 141, 142, 143 end
// every row of A in a 4-byte chunk and B's in 4, 8 and 12.
TEST_CASE("cuda ops: SGEMM variants on rows padded past a partial 16-byte chunk" * doctest::skip(kNoDevice)) {
  const int64_t M = 67, K = 101, lda = 104;
  for (const int64_t N : {141, 142, 143}) {
    const int64_t ldb = (N + 3) / 4 * 4;
    const Tensor a_store = random_tensor({M * lda}, 31), b_store = random_tensor({K * ldb}, 32);
    const Tensor a64 = ops::slice(reshape(a_store, {M, lda}), 1, 0, K).to(DType::f64);
    const Tensor b64 = ops::slice(reshape(b_store, {K, ldb}), 1, 0, N).to(DType::f64);
    const Tensor want = ops::matmul(a64, b64);
    const Tensor dA = gpu(a_store), dB = gpu(b_store);
    for (const auto& v : kernels::cuda::sgemm_variants()) {
      INFO(v.name, " N ", N);
      const Tensor dC = full({M, N}, NAN, {DType::f32, Device::cuda(0)});
      v.fn(false, false, M, N, K, 1.0f, dA.data<float>(), lda, dB.data<float>(), ldb, 0.0f, dC.data<float>(), N,
           cuda::current_stream(0));
      check_product(v.precision, cpu(dC), want);
    }
  }
}

// The im2col / col2im kernels index in 32 bits; the host refuses, before
// any launch (so this runs without a device), geometries whose fields or
// derived values pass the 2^30 limit they are narrowed under: a 2^32
// stride (cast to int it would be 0, a division by zero on the device),
// padding that takes H + 2 ph past 2^30, a kernel of 2^30 taps; and, as a
// ValueError, a geometry whose output size does not follow from the rest.
TEST_CASE("cuda conv: im2col and col2im refuse geometries past 32-bit indices") {
  const kernels::ConvGeometry fits{1, 2, 5, 5, 3, 3, 3, 3, 3};
  kernels::ConvGeometry stride = fits, padding = fits, taps = fits;
  stride.sh = int64_t{1} << 32, stride.P = 1;
  padding.ph = int64_t{1} << 29, padding.sh = int64_t{1} << 20;  // a small output: P = 1025
  padding.P = (padding.H + 2 * padding.ph - padding.R) / padding.sh + 1;
  // 2^15 x 2^15 taps over a 1 x 1 input padded to 2^15 x 2^15: one output.
  taps.R = taps.S = int64_t{1} << 15, taps.H = taps.W = 1, taps.ph = taps.pw = (taps.R - 1) / 2 + 1;
  taps.P = taps.Q = 1;
  for (const kernels::ConvGeometry& g : {stride, padding, taps}) {
    CHECK_THROWS_AS(kernels::cuda::im2col<float>(g, nullptr, nullptr, nullptr), NotImplementedError);
    CHECK_THROWS_AS(kernels::cuda::col2im<float>(g, nullptr, nullptr, nullptr), NotImplementedError);
  }
  // And with the message naming the op and the geometry.
  CHECK_THROWS_WITH(kernels::cuda::im2col<float>(stride, nullptr, nullptr, nullptr),
                    doctest::Contains("im2col: a 3x3 kernel, stride 4294967296x1"));
  kernels::ConvGeometry inconsistent = fits, negative = fits;
  inconsistent.P = 4;  // a 3x3 kernel over 5 rows gives 3
  negative.ph = -1;
  for (const kernels::ConvGeometry& g : {inconsistent, negative}) {
    CHECK_THROWS_AS(kernels::cuda::im2col<float>(g, nullptr, nullptr, nullptr), ValueError);
    CHECK_THROWS_AS(kernels::cuda::col2im<float>(g, nullptr, nullptr, nullptr), ValueError);
  }
}

#endif

TEST_CASE("cuda ops: matmul, batched and broadcast, f32 and f64" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor a = random_tensor({3, 1, 19, 23}, 10, dt), b = random_tensor({4, 23, 7}, 11, dt);
    check_op("matmul", {a, b}, [](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); }, 1e-4, tol(dt));
    check_op("matmul with a transposed view", {a, b}, [](const std::vector<Tensor>& v) {
      return ops::matmul(ops::transpose(v[1], 1, 2), ops::transpose(v[0], 2, 3));
    }, 1e-4, tol(dt));
  }
}

TEST_CASE("cuda ops: softmax, log_softmax, their backward, and cross-entropy" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({3, 5, 7, 11}, 12, dt, -4, 4), g = random_tensor({3, 5, 7, 11}, 13, dt);
    for (int64_t dim : {1, 3, 0}) {
      for (bool log : {false, true}) {
        check_op("softmax", {x}, [&](const std::vector<Tensor>& v) {
          return log ? ops::log_softmax(v[0], dim) : ops::softmax(v[0], dim);
        }, 1e-6, tol(dt));
        check_op("softmax_backward", {x, g}, [&](const std::vector<Tensor>& v) {
          const Tensor y = log ? ops::log_softmax(v[0], dim) : ops::softmax(v[0], dim);
          return ops::softmax_backward(v[1], y, dim, log);
        }, 1e-6, tol(dt));
      }
    }
    Tensor target = random_tensor({3, 7, 11}, 14, DType::f64, 0, 5).to(DType::i64);
    target = ops::where(ops::compare(ops::CompareOp::eq, target, full({}, 2, {DType::i64})), full({}, -100, {DType::i64}),
                        target);  // some positions ignored
    const Tensor w = random_tensor({5}, 15, dt, 0.5, 2);
    check_op("cross_entropy", {x, target, w}, [](const std::vector<Tensor>& v) {
      return ops::cross_entropy(v[0], v[1], v[2], -100).loss;
    }, 1e-6, tol(dt));
    check_op("cross_entropy_backward", {x, target, w}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], v[2], -100);
      return ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], v[2], -100);
    }, 1e-7, tol(dt));
    // Unweighted, on [N, C] logits; then every position ignored (a NaN
    // loss, as torch gives, and a zero gradient).
    const Tensor x2 = random_tensor({13, 5}, 16, dt);
    const Tensor t2 = random_tensor({13}, 17, DType::f64, 0, 5).to(DType::i64);
    check_op("cross_entropy, unweighted, [N, C]", {x2, t2}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], Tensor(), -100);
      const Tensor dx = ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], Tensor(), -100);
      return ops::concat({ops::reshape(fwd.loss, {1}), ops::flatten(dx)}, 0);
    }, 1e-7, tol(dt));
    const Tensor none = full({13}, -100, {DType::i64});
    check_op("cross_entropy, every position ignored", {x2, none}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], Tensor(), -100);
      const Tensor dx = ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], Tensor(), -100);
      return ops::concat({ops::reshape(fwd.loss, {1}), ops::flatten(dx)}, 0);
    }, 0, 0);
    const Tensor bad = from_vector<int64_t>({0, 1, 7}, {1, 3});
    check_throws_with<ValueError>([&] { ops::cross_entropy(gpu(random_tensor({1, 5, 3}, 1, dt)), gpu(bad), Tensor(), -100); },
                                  "target 7 at flat position 2 is outside [0, 5)");
  }
}

TEST_CASE("cuda ops: binary_cross_entropy_with_logits and its backward" * doctest::skip(kNoDevice)) {
  // Logits up to +-40 (the overflow-free form's range), targets in [0, 1],
  // pos_weight 1 and 2.5; one element, an odd 2-D shape, and more elements
  // than one grid covers. Both sum in double; f32 terms differ by expf's
  // and the contractions' last bits, which cancellation (x = -40, t small)
  // can make large next to a small loss: absolute tolerances of 1e-5 / 1e-6.
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{1}, Shape{7, 13}, Shape{3, 1000003}}) {
      const Tensor x = random_tensor(shape, 16, dt, -40, 40), t = random_tensor(shape, 17, dt, 0, 1);
      for (double p : {1.0, 2.5}) {
        INFO("shape ", shape_str(shape), " pos_weight ", p);
        check_op("bce", {x, t}, [&](const std::vector<Tensor>& v) {
          return ops::binary_cross_entropy_with_logits(v[0], v[1], p);
        }, dt == DType::f64 ? 1e-12 : 1e-5, dt == DType::f64 ? 1e-12 : 1e-5);
        check_op("bce_backward", {x, t}, [&](const std::vector<Tensor>& v) {
          return ops::binary_cross_entropy_with_logits_backward(full({}, 3.0, v[0].options()), v[0], v[1], p);
        }, dt == DType::f64 ? 1e-12 : 1e-6, tol(dt));
      }
    }
  }
  const Tensor empty_x = zeros({0}, {DType::f32, Device::cuda(0)});
  CHECK(std::isnan(ops::binary_cross_entropy_with_logits(empty_x, empty_x).item()));
  // Through autograd, from a non-contiguous view of the logits.
  auto run = [](Device d) {
    Tensor base = random_tensor({13, 7}, 18, DType::f32, -5, 5).to(d);
    set_requires_grad(base, true);
    const Tensor t = random_tensor({7, 13}, 19, DType::f32, 0, 1).to(d);
    const Tensor loss = binary_cross_entropy_with_logits(transpose(base, 0, 1), t, 2.0);
    backward(loss);
    return ops::concat({ops::flatten(loss), ops::flatten(grad(base))}, 0).to(Device::cpu());
  };
  CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-6, 1e-5);
}

TEST_CASE("cuda memory: the caching allocator reuses freed blocks and reports its statistics" *
          doctest::skip(kNoDevice)) {
  cuda::empty_cache(0);
  const DeviceMemoryStats before = cuda::memory_stats(0);
  { const Tensor t = empty({1 << 20}, {DType::f32, Device::cuda(0)}); }
  { const Tensor t = empty({1 << 20}, {DType::f32, Device::cuda(0)}); }
  const DeviceMemoryStats after = cuda::memory_stats(0);
  CHECK(after.allocations - before.allocations == 2);
  CHECK(after.cache_hits - before.cache_hits >= 1);  // the second reused the first's block
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(cuda::memory_summary(0).find("memory on cuda:0") != std::string::npos);
  // An allocation far beyond the device throws OutOfMemoryError with the byte counts, and nothing is lost.
  check_throws_with<OutOfMemoryError>([] { empty({int64_t{1} << 46}, {DType::f32, Device::cuda(0)}); },
                                      "out of memory allocating 281474976710656 bytes");
  CHECK(cuda::memory_stats(0).allocated_bytes == before.allocated_bytes);
}

TEST_CASE("cuda ops: an autograd graph runs on the device and matches the CPU gradients" *
          doctest::skip(kNoDevice)) {
  const Tensor x0 = random_tensor({4, 6}, 20), w0 = random_tensor({6, 3}, 21);
  auto run = [&](Device d) {
    Tensor x = x0.to(d), w = w0.to(d);
    set_requires_grad(w, true);
    Tensor y = relu(matmul(x, w));
    Tensor loss = mean(mul(y, y));
    backward(loss);
    return std::pair{loss.to(Device::cpu()), grad(w).to(Device::cpu())};
  };
  auto [lc, gc] = run(Device::cpu());
  auto [lg, gg] = run(Device::cuda(0));
  CHECK_CLOSE(lg, values(lc), 1e-6, 1e-5);
  CHECK_CLOSE(gg, values(gc), 1e-6, 1e-5);
}

#ifdef CRFSEG_WITH_CUDA
// Runs the conv cases with the given CUDA algorithm, restoring the previous one.
struct ConvAlgorithmGuard {
  explicit ConvAlgorithmGuard(kernels::cuda::ConvAlgorithm a) : previous(kernels::cuda::set_conv_algorithm(a)) {}
  ~ConvAlgorithmGuard() { kernels::cuda::set_conv_algorithm(previous); }
  kernels::cuda::ConvAlgorithm previous;
};
#endif

TEST_CASE("cuda ops: conv2d forward and both backwards, strided, dilated, padded, 1x1" * doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  std::vector<kernels::cuda::ConvAlgorithm> algorithms(std::begin(kernels::cuda::kConvAlgorithms),
                                                        std::end(kernels::cuda::kConvAlgorithms));
  algorithms.push_back(kernels::cuda::ConvAlgorithm::autotune);  // whichever is fastest, per pass and layer
  for (const kernels::cuda::ConvAlgorithm algorithm : algorithms) {
  const ConvAlgorithmGuard guard(algorithm);
  INFO("algorithm ", std::string(kernels::cuda::conv_algorithm_name(algorithm)));
  // F(4x4, 3x3)'s transforms (coefficients up to 8 and 1/24) cost FP32
  // accuracy: ~3e-5 absolute error at 9 input channels here, against 3e-6
  // for 2x2 tiles (a CPU emulation of the rules in float). Autotuned, any
  // layer may run it.
  const double f32_scale = algorithm == kernels::cuda::ConvAlgorithm::winograd4 ||
                                   algorithm == kernels::cuda::ConvAlgorithm::autotune
                               ? 20.0
                               : 1.0;
#else
  const double f32_scale = 1.0;
#endif
  const auto loose = [&](DType dt, double t) { return dt == DType::f32 ? t * f32_scale : t; };
  struct Case { Shape x, w; Conv2dArgs a; };
  const std::vector<Case> cases = {
      {{2, 3, 11, 13}, {5, 3, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {{1, 4, 17, 9}, {7, 4, 5, 3}, {.stride_h = 2, .stride_w = 3, .pad_h = 2, .pad_w = 0, .dil_h = 1, .dil_w = 2}},
      {{3, 6, 7, 7}, {2, 6, 1, 1}, {}},  // pointwise: no im2col
      {{2, 1, 5, 5}, {1, 1, 5, 5}, {}},  // one output pixel
      // More than one 64-wide tile in every implicit-GEMM pass: K = 70 output
      // channels, C R S = 81, N P Q = 42 / N H W = 42.
      {{1, 9, 6, 7}, {70, 9, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      // Winograd's other paddings (0 and 2: backward-input then pads 2 and
      // 0) on odd planes, whose last tiles are cut.
      {{3, 4, 9, 8}, {5, 4, 3, 3}, {.pad_h = 0, .pad_w = 2}},
      // The tiled implicit GEMM (float forward, stride-1 backward-input):
      // P Q = 320 in four-pixel slots over five 128-column tiles, C R S =
      // 45 (the weights loaded one value at a time); 130 output channels in
      // two 128-row tiles (C R S = 12: float4 weight loads; its backward-
      // input's depth is 390: a 1x3 kernel keeps its float sums within the
      // tolerance); P Q = 135, odd: each slot's pixels find their image one
      // by one, across image boundaries.
      {{2, 5, 16, 20}, {7, 5, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {{1, 4, 12, 12}, {130, 4, 1, 3}, {.pad_h = 0, .pad_w = 1}},
      {{3, 2, 9, 15}, {6, 2, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      // The implicit weight gradient's depth (N P Q = 2048 pixels) in two
      // chunks whose partial sums are added afterwards; then 2185 pixels
      // (P Q = 437, odd) in two, four-pixel slots crossing images.
      {{2, 3, 32, 32}, {5, 3, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {{5, 2, 23, 19}, {3, 2, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      // Windows that do not overlap: the implicit backward-input as one
      // GEMM scattered onto dx (2x2 stride 2, exactly tiled, 132 = C R S
      // rows in two tiles; then 2x3 at stride 3 x 4 with gaps and a row
      // and column no window reaches, zeroed).
      {{2, 33, 8, 10}, {5, 33, 2, 2}, {.stride_h = 2, .stride_w = 2}},
      {{1, 3, 10, 13}, {4, 3, 2, 3}, {.stride_h = 3, .stride_w = 4}},
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      const Tensor x = random_tensor(c.x, 30, dt), w = random_tensor(c.w, 31, dt), b = random_tensor({c.w[0]}, 32, dt);
      const Tensor y = ops::conv2d(x, w, b, c.a);
      const Tensor g = random_tensor(y.shape(), 33, dt);
      check_op("conv2d", {x, w, b}, [&](const std::vector<Tensor>& v) { return ops::conv2d(v[0], v[1], v[2], c.a); },
               loose(dt, 1e-5), loose(dt, tol(dt)));
      // The eval-time fused form (layers/conv_bn.cpp): exact zeros below 0.
      check_op("conv2d_relu", {x, w, b}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_relu(v[0], v[1], v[2], c.a);
      }, loose(dt, 1e-5), loose(dt, tol(dt)));
      // The device's ReLU neither hides nor adds a NaN, as the CPU's
      // epilogue: conv2d_relu is NaN exactly where conv2d is (which
      // outputs a NaN input reaches depends on the algorithm: F(4x4)
      // spreads it over whole 4x4 tiles), and max(0, y) elsewhere.
      {
        std::vector<double> xv = values(x);
        xv[xv.size() / 2] = std::nan("");
        const Tensor xn = gpu(from_vector(xv, x.shape()).to(dt));
        const std::vector<double> plain = values(cpu(ops::conv2d(xn, gpu(w), gpu(b), c.a)));
        const std::vector<double> relu = values(cpu(ops::conv2d_relu(xn, gpu(w), gpu(b), c.a)));
        REQUIRE(plain.size() == relu.size());
        int64_t nans = 0, wrong = 0;
        for (size_t i = 0; i < plain.size(); ++i) {
          nans += std::isnan(plain[i]);
          wrong += std::isnan(plain[i]) ? !std::isnan(relu[i]) : relu[i] != std::max(plain[i], 0.0);
        }
        INFO("conv2d_relu with a NaN input");
        CHECK(nans > 0);
        CHECK(wrong == 0);
      }
      check_op("conv2d_backward_input", {g, w}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_input(v[0], v[1], c.x, c.a);
      }, loose(dt, 1e-5), loose(dt, tol(dt)));
      check_op("conv2d_backward_weight", {g, x}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_weight(v[0], v[1], c.w, c.a);
      }, loose(dt, 1e-4), loose(dt, tol(dt)));
      check_op("conv2d_backward_bias", {g}, [](const std::vector<Tensor>& v) { return ops::conv2d_backward_bias(v[0]); },
               1e-5, tol(dt));
    }
    const Tensor xt = random_tensor({2, 4, 5, 6}, 34, dt), wt = random_tensor({4, 3, 3, 3}, 35, dt);
    check_op("conv_transpose2d", {xt, wt}, [](const std::vector<Tensor>& v) {
      return ops::conv_transpose2d(v[0], v[1], Tensor(), {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, 1, 1);
    }, 1e-5, tol(dt));
    // The U-Net decoder's form (2x2, stride 2, with a bias) and its two
    // backwards, on an odd plane.
    const Conv2dArgs up{.stride_h = 2, .stride_w = 2};
    const Tensor xu = random_tensor({2, 5, 7, 3}, 36, dt), wu = random_tensor({5, 4, 2, 2}, 37, dt);
    const Tensor bu = random_tensor({4}, 38, dt), gu = random_tensor({2, 4, 14, 6}, 39, dt);
    check_op("conv_transpose2d (2x2, stride 2, bias)", {xu, wu, bu}, [&](const std::vector<Tensor>& v) {
      return ops::conv_transpose2d(v[0], v[1], v[2], up, 0, 0);
    }, loose(dt, 1e-5), loose(dt, tol(dt)));
    check_op("conv_transpose2d_backward_input", {gu, wu}, [&](const std::vector<Tensor>& v) {
      return ops::conv_transpose2d_backward_input(v[0], v[1], xu.shape(), up);
    }, loose(dt, 1e-5), loose(dt, tol(dt)));
    check_op("conv_transpose2d_backward_weight", {gu, xu}, [&](const std::vector<Tensor>& v) {
      return ops::conv_transpose2d_backward_weight(v[0], v[1], wu.shape(), up);
    }, loose(dt, 1e-4), loose(dt, tol(dt)));
  }
#ifdef CRFSEG_WITH_CUDA
  }
#endif
}

// At bf16 precision the implicit path's float passes run the tensor-core
// tile kernel (gemm/tiled_bf16.cuh): against an f64 reference on the
// operands rounded to BF16 on the host, the error is FP32 accumulation's;
// against the unrounded operands it is BF16's, which the FP32 kernel would
// not show. The shapes are tiled cases whose three passes all run tiled
// (stride 1 with no dilation, or windows that do not overlap): both tile
// heights (64 and 128 output channels), odd P Q (slots crossing images), a
// 1x3 kernel, a weight gradient in chunks, a 64-channel layer and a 2x2
// stride-2 one.
TEST_CASE("cuda conv: implicit GEMM at bf16 multiplies BF16-rounded operands on the tensor cores" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  const ConvAlgorithmGuard guard(kernels::cuda::ConvAlgorithm::implicit_gemm);
  struct Case { Shape x, w; Conv2dArgs a; };
  const Conv2dArgs pad1{.pad_h = 1, .pad_w = 1};
  const std::vector<Case> cases = {
      {{1, 9, 6, 7}, {70, 9, 3, 3}, pad1},   {{2, 5, 16, 20}, {7, 5, 3, 3}, pad1},
      {{1, 4, 12, 12}, {130, 4, 1, 3}, {.pad_h = 0, .pad_w = 1}},       {{3, 2, 9, 15}, {6, 2, 3, 3}, pad1},
      {{2, 3, 32, 32}, {5, 3, 3, 3}, pad1},  {{5, 2, 23, 19}, {3, 2, 3, 3}, pad1},
      {{5, 64, 16, 16}, {64, 64, 3, 3}, pad1},
      // An up-convolution's shape (2x2 stride 2): a strided forward, and the
      // backward-input as one GEMM scattered onto dx (C R S = 128 and 64:
      // A's tile of 128 rows, then of 64).
      {{2, 32, 12, 10}, {16, 32, 2, 2}, {.stride_h = 2, .stride_w = 2}},
      {{2, 16, 12, 10}, {8, 16, 2, 2}, {.stride_h = 2, .stride_w = 2}},
  };
  int seed = 80;
  for (const Case& c : cases) {
    INFO("x ", shape_str(c.x), ", w ", shape_str(c.w));
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
    const Shape y_shape = ops::conv2d(x, w, Tensor(), c.a).shape();
    const Tensor g = random_tensor(y_shape, seed++);
    const Tensor x16 = bf16_rounded(x), w16 = bf16_rounded(w), g16 = bf16_rounded(g);
    const Tensor x64 = x.to(DType::f64), w64 = w.to(DType::f64), g64 = g.to(DType::f64);
    const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
    const Tensor y = cpu(ops::conv2d(gpu(x), gpu(w), Tensor(), c.a));
    const Tensor dw = cpu(ops::conv2d_backward_weight(gpu(g), gpu(x), c.w, c.a));
    const Tensor dx = cpu(ops::conv2d_backward_input(gpu(g), gpu(w), c.x, c.a));
    const double ey = relative_error(y, ops::conv2d(x16, w16, Tensor(), c.a));
    const double edw = relative_error(dw, ops::conv2d_backward_weight(g16, x16, c.w, c.a));
    const double edx = relative_error(dx, ops::conv2d_backward_input(g16, w16, c.x, c.a));
    MESSAGE("implicit bf16 against the BF16-rounded operands: forward ", ey, ", weight gradient ", edw,
            ", backward-input ", edx);
    CHECK(ey < 1e-5);
    CHECK(edw < 1e-5);
    CHECK(edx < 1e-5);
    // ... and BF16's error against the operands themselves.
    CHECK(relative_error(y, ops::conv2d(x64, w64, Tensor(), c.a)) > 1e-4);
    CHECK(relative_error(dw, ops::conv2d_backward_weight(g64, x64, c.w, c.a)) > 1e-4);
    CHECK(relative_error(dx, ops::conv2d_backward_input(g64, w64, c.x, c.a)) > 1e-4);
  }
#endif
}

TEST_CASE("cuda conv: autotune times each applicable algorithm once per pass and layer, then reuses the choice" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  namespace kcu = kernels::cuda;
  const ConvAlgorithmGuard guard(kcu::ConvAlgorithm::autotune);
  kernels::conv_autotuner().clear();
  const Conv2dArgs pad1{.pad_h = 1, .pad_w = 1};
  const Tensor x = gpu(random_tensor({2, 8, 12, 12}, 50)), w = gpu(random_tensor({16, 8, 3, 3}, 51));
  const Tensor s = gpu(random_tensor({2, 8, 12, 12}, 52)), w2 = gpu(random_tensor({16, 8, 2, 2}, 53));
  for (int round = 0; round < 2; ++round) {  // the second round times nothing
    const Tensor y = ops::conv2d(x, w, Tensor(), pad1);
    ops::conv2d_backward_input(y, w, x.shape(), pad1);
    ops::conv2d_backward_weight(y, x, w.shape(), pad1);
    ops::conv2d(s, w2, Tensor(), {.stride_h = 2, .stride_w = 2});  // 2x2 stride 2: no Winograd
    // A 3x3 stride-2 backward-input: the implicit path has no tiled kernel
    // for it (it would run im2col's), so im2col is the only candidate.
    ops::conv2d_backward_input(gpu(random_tensor({2, 16, 6, 6}, 54)), w, x.shape(),
                               {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
  }
  const auto results = kernels::conv_autotuner().results();
  REQUIRE(results.size() == 5);
  for (const auto& [key, r] : results) {
    const std::string what = key.str();  // (clang: a structured binding cannot be captured by CAPTURE's lambda)
    CAPTURE(what);
    // im2col, implicit (+ winograd, winograd4 for the stride-1 3x3 layer);
    // im2col alone for the strided backward-input.
    const size_t want = key.sh == 2 && key.R == 3 ? 1 : key.R == 3 ? 4 : 2;
    CHECK(r.times_ms.size() == want);
    for (const auto& [c, t] : r.times_ms) CHECK(t > 0.0);
    CHECK(r.chosen >= 0);
  }
  // What ran is what was chosen: each autotuned 3x3 pass gives the bits of
  // its chosen algorithm run on its own (every path is deterministic).
  const Tensor y_auto = ops::conv2d(x, w, Tensor(), pad1);
  const Tensor dx_auto = ops::conv2d_backward_input(y_auto, w, x.shape(), pad1);
  const Tensor dw_auto = ops::conv2d_backward_weight(y_auto, x, w.shape(), pad1);
  for (const auto& [key, r] : results) {
    if (key.R != 3 || key.sh != 1) continue;
    const std::string what = key.str();  // (clang: a structured binding cannot be captured by CAPTURE's lambda)
    CAPTURE(what);
    const ConvAlgorithmGuard fixed(static_cast<kcu::ConvAlgorithm>(r.chosen));
    if (key.pass == kernels::ConvPass::forward) CHECK(values(cpu(ops::conv2d(x, w, Tensor(), pad1))) == values(cpu(y_auto)));
    if (key.pass == kernels::ConvPass::backward_input) {
      CHECK(values(cpu(ops::conv2d_backward_input(y_auto, w, x.shape(), pad1))) == values(cpu(dx_auto)));
    }
    if (key.pass == kernels::ConvPass::backward_weight) {
      CHECK(values(cpu(ops::conv2d_backward_weight(y_auto, x, w.shape(), pad1))) == values(cpu(dw_auto)));
    }
  }
  MESSAGE(kernels::conv_autotuner().report([](int c) { return kcu::conv_algorithm_name(static_cast<kcu::ConvAlgorithm>(c)); }));
  kernels::conv_autotuner().clear();
#endif
}

TEST_CASE("cuda ops: batch norm, training and eval, fused ReLU, forward and backward" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    // [3, 2, 97, 89]: 25899 values per channel in 4 chunks whose edges fall
    // inside images (kernels/channel_chunks.h); [20000, 3]: 3 chunks of
    // images of one value; [2, 600, 3, 3]: one chunk per channel; [1100,
    // 64, 8, 8]: 70400 planes of 64, past one grid's 65535 rows; [2, 3, 48,
    // 40]: rows of 1920 in 16-byte vectors over two blocks a row (97 x 89
    // rows are not a multiple of 4: one value a thread).
    for (const Shape& shape : {Shape{4, 3, 7, 5}, Shape{6, 5}, Shape{2, 300, 1, 1}, Shape{3, 2, 97, 89},
                               Shape{20000, 3}, Shape{2, 600, 3, 3}, Shape{1100, 64, 8, 8}, Shape{2, 3, 48, 40}}) {
      const int64_t C = shape[1];
      // An offset far above the spread: the statistics must not cancel.
      const Tensor x = ops::scalar_op(ops::ScalarOp::add, random_tensor(shape, 40, dt), 1000.0);
      const Tensor w = random_tensor({C}, 41, dt, 0.5, 1.5), b = random_tensor({C}, 42, dt);
      const Tensor g = random_tensor(shape, 43, dt);
      for (bool training : {true, false}) {
        for (bool relu : {false, true}) {
          INFO("training=", training, " relu=", relu);
          auto run = [&](const std::vector<Tensor>& v) {
            Tensor rm = ops::clone(v[4]), rv = ops::clone(v[5]);
            const auto fwd = ops::batch_norm(v[0], v[1], v[2], rm, rv, training, 0.1, 1e-5, relu);
            const auto grads = ops::batch_norm_backward(v[3], v[0], v[1], fwd, training, relu);
            // Everything in one tensor: y, dx, dweight, dbias, the running statistics.
            return ops::concat({ops::flatten(fwd.y), ops::flatten(grads.dx), grads.dweight, grads.dbias, rm, rv}, 0);
          };
          const Tensor rm0 = ops::scalar_op(ops::ScalarOp::add, random_tensor({C}, 44, dt), 1000.0);
          const Tensor rv0 = random_tensor({C}, 45, dt, 0.5, 2.0);
          // f32: x near 1000 has an ulp of 6e-5, which the devices' 1-ulp
          // differences in the mean carry into y and dx.
          check_op("batch_norm", {x, w, b, g, rm0, rv0}, run, dt == DType::f64 ? 1e-9 : 1e-3, dt == DType::f64 ? 1e-9 : 1e-3);
        }
      }
    }
    // Without affine parameters (BatchNorm2d(affine = false)), training,
    // with and without the fused ReLU: no dweight, and dbias the (masked)
    // gradient's per-channel sum.
    const Shape shape{3, 4, 9, 7};
    const Tensor x = random_tensor(shape, 46, dt), g = random_tensor(shape, 47, dt);
    for (const bool relu : {false, true}) {
      INFO("relu=", relu);
      check_op("batch_norm without weight and bias", {x, g}, [relu](const std::vector<Tensor>& v) {
        Tensor rm = zeros({4}, v[0].options()), rv = ones({4}, v[0].options());
        const auto fwd = ops::batch_norm(v[0], Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, relu);
        const auto grads = ops::batch_norm_backward(v[1], v[0], Tensor(), fwd, true, relu);
        REQUIRE_FALSE(grads.dweight.defined());
        return ops::concat({ops::flatten(fwd.y), ops::flatten(grads.dx), grads.dbias, rm, rv}, 0);
      }, tol(dt) * 10, tol(dt) * 10);
    }
  }
}

TEST_CASE("cuda ops: max, average and adaptive pooling with their backwards" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({2, 3, 13, 11}, 50, dt);
    const std::vector<Pool2dArgs> args = {
        {},
        {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1},
        {.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0, .dil_h = 2, .dil_w = 3,
         .ceil_mode = true},
        {.kernel_h = 4, .kernel_w = 3, .stride_h = 3, .stride_w = 2, .pad_h = 2, .pad_w = 1, .ceil_mode = true,
         .count_include_pad = false},
    };
    for (const Pool2dArgs& a : args) {
      check_op("max_pool2d", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::concat({ops::flatten(f.y), ops::flatten(ops::to_dtype(f.indices, v[0].dtype()))}, 0);
      }, 0, 0);
      check_op("max_pool2d_backward", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape());
      }, 1e-6, tol(dt));
      check_op("max_pool2d_backward (gather)", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape(), a);
      }, 1e-6, tol(dt));
      check_op("max_pool2d_backward (gather, unchecked)", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape(), a,
                                        false);
      }, 1e-6, tol(dt));
      if (a.dil_h == 1 && a.dil_w == 1) {
        check_op("avg_pool2d", {x}, [&](const std::vector<Tensor>& v) { return ops::avg_pool2d(v[0], a); }, 1e-6,
                 tol(dt));
        check_op("avg_pool2d_backward", {x}, [&](const std::vector<Tensor>& v) {
          const Tensor y = ops::avg_pool2d(v[0], a);
          return ops::avg_pool2d_backward(ops::unary(ops::UnaryOp::sigmoid, y), v[0].shape(), a);
        }, 1e-6, tol(dt));
      }
    }
    for (const std::pair<int64_t, int64_t>& size : {std::pair<int64_t, int64_t>{1, 1}, {5, 3}, {13, 11}, {4, 7}}) {
      const int64_t ph = size.first, pw = size.second;  // lambdas cannot capture structured bindings before C++20's P1091 (clang 14)
      check_op("adaptive_avg_pool2d", {x}, [&](const std::vector<Tensor>& v) {
        const Tensor y = ops::adaptive_avg_pool2d(v[0], ph, pw);
        return ops::concat({ops::flatten(y), ops::flatten(ops::adaptive_avg_pool2d_backward(y, v[0].shape()))}, 0);
      }, 1e-6, tol(dt));
    }
    // A bad index reaches the user as a ValueError, as on the CPU.
    const auto f = ops::max_pool2d(gpu(x), {});
    Tensor bad = ops::clone(f.indices);
    ops::fill_(ops::slice(ops::flatten(bad), 0, 3, 4), 1000.0);
    check_throws_with<ValueError>([&] { ops::max_pool2d_backward(f.y, bad, x.shape()); }, "got 1000 at flat position 3");
    // With the forward's arguments, an index in its plane but outside its
    // window (output 3 of a 2x2 stride-2 pool reads columns 6-7; 0 is not there).
    Tensor outside = ops::clone(f.indices);
    ops::fill_(ops::slice(ops::flatten(outside), 0, 3, 4), 0.0);
    check_throws_with<ValueError>([&] { ops::max_pool2d_backward(f.y, outside, x.shape(), {}); },
                                  "each inside its output's window, got 0 at flat position 3");
  }
}

TEST_CASE("cuda ops: nearest and bilinear upsampling and their backwards" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({2, 3, 7, 5}, 60, dt);
    for (const std::pair<int64_t, int64_t>& size : {std::pair<int64_t, int64_t>{14, 10}, {13, 11}, {3, 2}, {82, 1}, {7, 5}}) {
      const int64_t oh = size.first, ow = size.second;
      for (auto mode : {ops::UpsampleMode::nearest, ops::UpsampleMode::bilinear}) {
        for (bool corners : {false, true}) {
          if (corners && mode == ops::UpsampleMode::nearest) continue;
          check_op("upsample2d", {x}, [&](const std::vector<Tensor>& v) {
            const Tensor y = ops::upsample2d(v[0], oh, ow, mode, corners);
            const Tensor dx = ops::upsample2d_backward(ops::unary(ops::UnaryOp::tanh, y), v[0].shape(), mode, corners);
            return ops::concat({ops::flatten(y), ops::flatten(dx)}, 0);
          }, 1e-6, tol(dt));
        }
      }
    }
  }
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
  check_throws_with<ValueError>([&] { ops::one_hot(gpu(from_vector<int64_t>({0, 5}, {2})), 3, DType::f32); },
                                "target 5 at flat index 1 is outside [0, 3)");
  check_throws_with<DTypeError>([&] { ops::one_hot(gpu(t), 3, DType::i64); }, "expected dtype f32 or f64, got i64");
  // A transposed view gets the numbers it gets on the CPU.
  const Tensor host_view = ops::transpose(zeros({3, 5}, {DType::f32}), 0, 1);
  const Tensor device_view = ops::transpose(zeros({3, 5}, {DType::f32, Device::cuda(0)}), 0, 1);
  Generator g5(11), g6(11);
  uniform_(host_view, -2.0, 2.0, g5);
  uniform_(device_view, -2.0, 2.0, g6);
  CHECK(values(host_view) == values(cpu(device_view)));
}

// A CPU grad_output for a CUDA output is refused at once: through a chain
// of views only, it would have become a CPU .grad on a CUDA leaf.
TEST_CASE("cuda autograd: backward refuses a grad_output on another device" * doctest::skip(kNoDevice)) {
  const Tensor x = gpu(random_tensor({2, 6}, 3));
  set_requires_grad(x);
  const Tensor y = crfseg::reshape(x, {3, 4});
  check_throws_with<AutogradError>([&] { backward(y, ones({3, 4})); },
                                   "backward: expected grad_output like Tensor[3, 4] f32 cuda:0, got Tensor[3, 4] f32 cpu");
  CHECK_FALSE(grad(x).defined());
  backward(y, ones({3, 4}, y.options()));
  CHECK(grad(x).device() == Device::cuda(0));
}

TEST_CASE("cuda autograd: each differentiable function's forward and backward on the device match the CPU" *
          doctest::skip(kNoDevice)) {
  // The autograd glue (saved tensors, the backward's raw ops, gradient
  // accumulation) on device tensors, per function, in f64: the kernels
  // themselves are compared above, this is what calls them.
  using Fn = std::function<Tensor(const Tensor&, const Tensor&)>;
  const ops::Pool2dArgs pool{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
  const std::vector<std::pair<std::string, Fn>> fns = {
      {"sigmoid", [](const Tensor& x, const Tensor&) { return crfseg::sigmoid(x); }},
      {"tanh", [](const Tensor& x, const Tensor&) { return crfseg::tanh(x); }},
      {"exp", [](const Tensor& x, const Tensor&) { return crfseg::exp(x); }},
      {"log", [](const Tensor& x, const Tensor&) { return crfseg::log(x); }},
      {"sqrt", [](const Tensor& x, const Tensor&) { return crfseg::sqrt(x); }},
      {"pow 2.5", [](const Tensor& x, const Tensor&) { return crfseg::pow(x, 2.5); }},
      {"reciprocal, square, neg", [](const Tensor& x, const Tensor&) {
         return crfseg::neg(crfseg::square(crfseg::reciprocal(x)));
       }},
      {"div, broadcast", [](const Tensor& x, const Tensor& y) { return crfseg::div(x, crfseg::slice(y, 1, 0, 1)); }},
      {"rsub and rdiv scalars", [](const Tensor& x, const Tensor&) {
         return crfseg::rdiv_scalar(crfseg::rsub_scalar(x, 5.0), 2.0);
       }},
      {"softmax and log_softmax", [](const Tensor& x, const Tensor& y) {
         return crfseg::add(crfseg::softmax(x, 1), crfseg::log_softmax(y, 3));
       }},
      {"mean and max", [](const Tensor& x, const Tensor& y) {
         return crfseg::add(crfseg::mean(x, {2, 3}, true), crfseg::max(y, {2, 3}, true));
       }},
      {"avg_pool2d", [pool](const Tensor& x, const Tensor&) { return crfseg::avg_pool2d(x, pool); }},
      {"max_pool2d", [pool](const Tensor& x, const Tensor&) { return crfseg::max_pool2d(x, pool); }},
      {"adaptive_avg_pool2d", [](const Tensor& x, const Tensor&) { return crfseg::adaptive_avg_pool2d(x, 4, 3); }},
      {"upsample2d bilinear", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 13, 11, ops::UpsampleMode::bilinear);
       }},
      {"upsample2d bilinear, align_corners", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 5, 17, ops::UpsampleMode::bilinear, true);
       }},
      {"upsample2d nearest", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 18, 14, ops::UpsampleMode::nearest);
       }},
      {"stack and concat", [](const Tensor& x, const Tensor& y) {
         return crfseg::concat({crfseg::flatten(crfseg::stack({x, y}, 1)), crfseg::flatten(x)}, 0);
       }},
      {"to_dtype f32 and back", [](const Tensor& x, const Tensor&) {
         return crfseg::to_dtype(crfseg::mul_scalar(crfseg::to_dtype(x, DType::f32), 3.0), DType::f64);
       }},
      {"dropout", [](const Tensor& x, const Tensor&) {
         Generator gen(11);  // masks are drawn on the host: the same on both devices
         return crfseg::dropout(x, 0.3, true, gen);
       }},
      {"matmul of views", [](const Tensor& x, const Tensor& y) {
         return crfseg::matmul(crfseg::reshape(x, {6, 63}), crfseg::transpose(crfseg::reshape(y, {6, 63}), 0, 1));
       }},
  };
  const Tensor x0 = random_tensor({2, 3, 9, 7}, 120, DType::f64, 0.2, 2.0);
  const Tensor y0 = random_tensor({2, 3, 9, 7}, 121, DType::f64, 0.2, 2.0);
  for (const auto& fn : fns) {
    INFO(fn.first);
    auto run = [&](Device d) {
      Tensor x = ops::clone(x0.to(d)), y = ops::clone(y0.to(d));  // fresh leaves on each run
      set_requires_grad(x, true);
      set_requires_grad(y, true);
      const Tensor out = fn.second(x, y);
      const Tensor r = random_tensor(out.shape(), 122, DType::f64).to(d);
      backward(crfseg::sum(crfseg::mul(out, r)));
      std::vector<Tensor> parts = {ops::flatten(detach(out))};
      for (const Tensor& t : {x, y})
        if (grad(t).defined()) parts.push_back(ops::flatten(grad(t)));
      return ops::concat(parts, 0).to(Device::cpu());
    };
    const Tensor want = run(Device::cpu()), got = run(Device::cuda(0));
    REQUIRE(got.shape() == want.shape());
    CHECK_CLOSE(got, values(want), 1e-9, 1e-9);
  }
}

TEST_CASE("cuda: a U-Net trains on the device as on the CPU (SGD and Adam, dice + CE)" * doctest::skip(kNoDevice)) {
  // Same seed, same data: two steps on each device; losses and weights must agree.
  for (const std::string opt_name : {"sgd", "adam"}) {
    auto train = [&](Device d) {
      Generator gen(3);
      const auto net = tiny_unet(gen);
      net->to(d);
      std::unique_ptr<optim::Optimizer> opt;
      if (opt_name == "sgd") opt = std::make_unique<optim::SGD>(net->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      else opt = std::make_unique<optim::Adam>(net->parameters(), optim::AdamOptions{.lr = 1e-2});
      const Tensor x = random_tensor({2, 3, 16, 16}, 70).to(d);
      const Tensor y = random_tensor({2, 16, 16}, 71, DType::f64, 0, 3).to(DType::i64).to(d);
      std::vector<double> losses;
      for (int step = 0; step < 2; ++step) {
        const Tensor logits = (*net)(x);
        const Tensor loss = cross_entropy(logits, y) + dice_loss(logits, y);
        losses.push_back(loss.item());
        opt->zero_grad();
        backward(loss);
        opt->step();
      }
      return std::pair{losses, state_values(*net)};
    };
    INFO(opt_name);
    const auto [lc, wc] = train(Device::cpu());
    const auto [lg, wg] = train(Device::cuda(0));
    CHECK_CLOSE(lg, lc, 1e-4, 1e-4);
    // Adam's first steps move each weight by about lr * sign(g), so a
    // gradient near 0 that rounds to the other sign on the other device moves
    // its weight 2 lr apart: compare weights after SGD only.
    if (opt_name == "sgd") CHECK_CLOSE(wg, wc, 1e-3, 1e-3);
  }
}

TEST_CASE("cuda: a U-Net + CRF-RNN segmenter at a size its encoder does not divide trains on the device as on the "
          "CPU, under every convolution algorithm and at bf16" * doctest::skip(kNoDevice)) {
  // 17 x 23 pads to 20 x 24 for a depth-2 U-Net (Segmenter's zero padding,
  // made on the input's device), and the CRF-RNN final layer sees the
  // unpadded image. Two SGD steps on each device from the same weights.
#ifdef CRFSEG_WITH_CUDA
  struct Run {
    std::vector<double> losses, weights;
    Tensor first;  // the first step's logits and every parameter's gradient, flattened, on the CPU
  };
  auto train = [&](Device d) {
    Generator gen(5);
    const auto net = tiny_unet(gen);
    auto layer = std::make_shared<crf::CrfRnn>(
        crf::CrfRnnOptions{.num_classes = 3, .train_iterations = 2, .theta_alpha = 20.0, .theta_beta = 30.0});
    net->set_final_layer(layer, layer->as_final_layer());
    net->to(d);
    optim::SGD opt(net->parameters(), optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
    const Tensor x = random_tensor({2, 3, 17, 23}, 72, DType::f32, 0, 255).to(d);
    const Tensor y = random_tensor({2, 17, 23}, 73, DType::f64, 0, 3).to(DType::i64).to(d);
    Run run;
    for (int step = 0; step < 2; ++step) {
      const Tensor logits = (*net)(x);
      REQUIRE(logits.shape() == Shape{2, 3, 17, 23});
      const Tensor loss = cross_entropy(logits, y);
      run.losses.push_back(loss.item());
      opt.zero_grad();
      backward(loss);
      if (step == 0) run.first = with_grads(logits, net->parameters());
      opt.step();
    }
    run.weights = state_values(*net);
    return run;
  };
  const Run want = train(Device::cpu());
  std::vector<kernels::cuda::ConvAlgorithm> algorithms(std::begin(kernels::cuda::kConvAlgorithms),
                                                        std::end(kernels::cuda::kConvAlgorithms));
  algorithms.push_back(kernels::cuda::ConvAlgorithm::autotune);
  for (const kernels::cuda::ConvAlgorithm algorithm : algorithms) {
    const ConvAlgorithmGuard guard(algorithm);
    // F(4x4, 3x3)'s transforms round about 10x more than the others (the
    // conv test's note); anything autotuned may run them.
    const bool coarse = algorithm == kernels::cuda::ConvAlgorithm::winograd4 ||
                        algorithm == kernels::cuda::ConvAlgorithm::autotune;
    {
      INFO("fp32, algorithm ", std::string(kernels::cuda::conv_algorithm_name(algorithm)));
      const Run got = train(Device::cuda(0));
      const double tol = coarse ? 5e-3 : 1e-3;
      CHECK_CLOSE(got.losses, want.losses, tol, tol);
      CHECK_CLOSE(got.first, values(want.first), tol, tol);
      CHECK_CLOSE(got.weights, want.weights, tol, tol);
    }
    {
      // BF16 tensor-core inputs (FP32 storage and accumulation): within
      // BF16's rounding of the FP32 run, norm-wise (each convolution rounds
      // its operands to 8 significant bits, about 4e-3 relative).
      const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
      INFO("bf16, algorithm ", std::string(kernels::cuda::conv_algorithm_name(algorithm)));
      const Run got = train(Device::cuda(0));
      const double err = relative_error(got.first, want.first);
      MESSAGE("bf16, ", std::string(kernels::cuda::conv_algorithm_name(algorithm)),
              ": first step's logits and gradients within ", err, " of fp32 on the CPU (norm-wise)");
      CHECK(err < (coarse ? 1e-1 : 5e-2));
    }
  }
#endif
}

namespace {
// Equality where NaN equals NaN and infinities must match exactly; finite
// values within `tol` relative (the devices may sum in different orders).
bool same_values(const std::vector<double>& a, const std::vector<double>& b, double tol = 1e-6) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (!(std::isnan(a[i]) && std::isnan(b[i]))) return false;
    } else if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return false;
    } else if (std::abs(a[i] - b[i]) > tol * (1 + std::abs(b[i]))) {
      return false;
    }
  }
  return true;
}
}  // namespace

TEST_CASE("cuda ops: NaN and infinity take the CPU's paths (fused-ReLU batch norm, nearest upsampling, pooling)" *
          doctest::skip(kNoDevice)) {
  Tensor x = random_tensor({2, 3, 4, 4}, 80);
  ops::fill_(ops::slice(ops::slice(x, 0, 0, 1), 2, 1, 2), NAN);
  ops::fill_(ops::slice(ops::slice(x, 1, 2, 3), 3, 3, 4), INFINITY);
  ops::fill_(ops::slice(ops::slice(x, 0, 1, 2), 3, 0, 1), -INFINITY);
  const Tensor rm = zeros({3}), rv = ones({3});
  auto bn_relu = [&](const Tensor& t) {
    return ops::batch_norm(t, Tensor(), Tensor(), rm.to(t.device()), rv.to(t.device()), false, 0.1, 1e-5, true).y;
  };
  CHECK(same_values(values(cpu(bn_relu(gpu(x)))), values(bn_relu(x))));
  auto nearest = [](const Tensor& t) { return ops::upsample2d(t, 9, 7, ops::UpsampleMode::nearest); };
  CHECK(same_values(values(cpu(nearest(gpu(x)))), values(nearest(x))));
  auto nearest_back = [](const Tensor& t) {
    return ops::upsample2d_backward(t, {2, 3, 2, 3}, ops::UpsampleMode::nearest);
  };
  CHECK(same_values(values(cpu(nearest_back(gpu(x)))), values(nearest_back(x))));
  auto pool = [](const Tensor& t) { return ops::max_pool2d(t, {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1}).y; };
  CHECK(same_values(values(cpu(pool(gpu(x)))), values(pool(x))));
}

TEST_CASE("cuda ops: matmul with broadcast (stride-0) operands, as a reduction's backward makes them" *
          doctest::skip(kNoDevice)) {
  const Tensor row = random_tensor({1, 5}, 81), col = random_tensor({5, 1}, 82), w = random_tensor({5, 3}, 83);
  check_op("expanded rows @ w", {row, w}, [](const std::vector<Tensor>& v) {
    return ops::matmul(ops::expand(v[0], {4, 5}), v[1]);
  }, 1e-6, 1e-5);
  check_op("w^T @ expanded columns", {col, w}, [](const std::vector<Tensor>& v) {
    return ops::matmul(ops::transpose(v[1], 0, 1), ops::expand(v[0], {5, 6}));
  }, 1e-6, 1e-5);
  // sum(x @ w) backward: the incoming gradient is a stride-0 broadcast.
  auto grad_of_w = [&](Device d) {
    Tensor xx = random_tensor({4, 5}, 84).to(d), ww = w.to(d);
    set_requires_grad(ww, true);
    set_requires_grad(xx, true);
    backward(sum(matmul(xx, ww)));
    return ops::concat({ops::flatten(grad(ww)), ops::flatten(grad(xx))}, 0).to(Device::cpu());
  };
  CHECK_CLOSE(grad_of_w(Device::cuda(0)), values(grad_of_w(Device::cpu())), 1e-6, 1e-5);
}

TEST_CASE("cuda: every SGD, Adam and AdamW option steps on the device as on the CPU" * doctest::skip(kNoDevice)) {
  // The fused device steps (kernels/cuda/optim.cu) against the CPU loops on
  // the same gradients: 1031 elements (not a multiple of a block), 4 steps.
  const int64_t n = 1031;
  auto values_at = [&](int step, double scale) {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = scale * std::sin(1.3 * static_cast<double>(i) + 0.7 * step);
    return v;
  };
  using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const Tensor&)>;
  std::vector<std::pair<std::string, MakeOpt>> variants;
  for (const optim::SGDOptions o : {optim::SGDOptions{.lr = 0.1},
                                     optim::SGDOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.3},
                                     optim::SGDOptions{.lr = 0.02, .momentum = 0.9, .weight_decay = 0.05,
                                                       .nesterov = true},
                                     optim::SGDOptions{.lr = 0.1, .weight_decay = 0.1, .maximize = true}}) {
    variants.emplace_back("SGD momentum " + std::to_string(o.momentum) + (o.nesterov ? " nesterov" : "") +
                              (o.maximize ? " maximize" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::SGD>(std::vector<Tensor>{p}, o); });
  }
  for (const optim::AdamOptions o : {optim::AdamOptions{.lr = 1e-2},
                                      optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true},
                                      optim::AdamOptions{.lr = 1e-2, .maximize = true}}) {
    variants.emplace_back(std::string("Adam") + (o.amsgrad ? " amsgrad" : "") + (o.maximize ? " maximize" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::Adam>(std::vector<Tensor>{p}, o); });
  }
  for (const optim::AdamWOptions o :
       {optim::AdamWOptions{.lr = 1e-2}, optim::AdamWOptions{.lr = 1e-2, .amsgrad = true}}) {
    variants.emplace_back(std::string("AdamW") + (o.amsgrad ? " amsgrad" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::AdamW>(std::vector<Tensor>{p}, o); });
  }
  for (const auto& variant : variants) {
    const std::string& name = variant.first;
    const MakeOpt& make = variant.second;
    for (const DType dtype : {DType::f32, DType::f64}) {
      auto run = [&](Device d) {
        Tensor p = from_vector(values_at(-1, 1.0), {n}).to(dtype).to(d);
        set_requires_grad(p);
        const std::unique_ptr<optim::Optimizer> opt = make(p);
        for (int step = 0; step < 4; ++step) {
          p.autograd_meta()->grad = from_vector(values_at(step, 1.0 + 0.5 * step), {n}).to(dtype).to(d);
          opt->step();
        }
        return values(p.to(Device::cpu()).to(DType::f64));
      };
      INFO(name, ", ", std::string(dtype_name(dtype)));
      const double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
      CHECK_CLOSE(run(Device::cuda(0)), run(Device::cpu()), tol, tol);
    }
  }
}

TEST_CASE("cuda optim: state made on the CPU follows its parameters to the device, and load_state takes the "
          "device's own state" * doctest::skip(kNoDevice)) {
  // Two steps on the CPU, the module moved (Module::to), two more on the
  // device: the same as four on the CPU. The moments made on the CPU must
  // follow the parameters (they were handed to the device kernels as host
  // pointers).
  using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>;
  const std::vector<std::pair<std::string, MakeOpt>> kinds = {
      {"SGD", [](const std::vector<Tensor>& p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
       }},
      {"Adam", [](const std::vector<Tensor>& p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 1e-2, .amsgrad = true});
       }}};
  const Tensor x = random_tensor({4, 5}, 130), target = random_tensor({4, 3}, 131);
  for (const auto& kind : kinds) {
    INFO(kind.first);
    auto train = [&](bool move) {
      Generator gen(9);
      nn::Linear net(nn::LinearOptions{.in_features = 5, .out_features = 3}, gen);
      const std::unique_ptr<optim::Optimizer> opt = kind.second(net.parameters());
      Device d = Device::cpu();
      for (int step = 0; step < 4; ++step) {
        if (move && step == 2) {
          d = Device::cuda(0);
          net.to(d);
        }
        const Tensor diff = crfseg::sub(net.forward(x.to(d)), target.to(d));
        opt->zero_grad();
        backward(crfseg::mean(crfseg::mul(diff, diff)));
        opt->step();
      }
      const std::vector<double> w = state_values(net);
      // The device optimizer's state, exported (on the device) and loaded
      // into a fresh optimizer over the same parameters, steps the same.
      if (move) {
        const std::unique_ptr<optim::Optimizer> again = kind.second(net.parameters());
        again->load_state(opt->state_tensors());
        const std::vector<Tensor> ps = net.parameters();
        for (const Tensor& p : ps) p.autograd_meta()->grad = full_like(p, 0.25);
        const std::vector<Tensor> before = {ops::clone(ps[0]), ops::clone(ps[1])};
        opt->step();
        std::vector<Tensor> first;
        for (size_t i = 0; i < ps.size(); ++i) {
          first.push_back(ops::clone(ps[i]));
          ops::copy_(ps[i], before[i]);
        }
        again->step();
        for (size_t i = 0; i < ps.size(); ++i) CHECK_CLOSE(cpu(ps[i]), values(cpu(first[i])), 0, 0);
      }
      return w;
    };
    CHECK_CLOSE(train(true), train(false), 1e-5, 1e-5);
  }
}

TEST_CASE("cuda: grad_norm over device gradients, an empty one included" * doctest::skip(kNoDevice)) {
  for (double norm : {1.0, 2.0, 3.0, static_cast<double>(INFINITY)}) {
    auto run = [&](Device d) {
      Tensor p = zeros({0}, {DType::f32, d}), q = random_tensor({7, 3}, 85).to(d);
      set_requires_grad(p, true);
      set_requires_grad(q, true);
      backward(add(sum(p), sum(mul(q, q))));
      return optim::grad_norm({p, q}, norm);
    };
    INFO("norm ", norm);
    CHECK(run(Device::cuda(0)) == doctest::Approx(run(Device::cpu())).epsilon(1e-6));
    // Several device gradients come back in one copy, summed (or maxed) in
    // parameter order; a NaN in any of them gives NaN, as on the CPU.
    for (const bool poisoned : {false, true}) {
      auto several = [&](Device d) {
        std::vector<Tensor> ps;
        for (int i = 0; i < 5; ++i) {
          ps.push_back(random_tensor({3 + i, 4}, static_cast<uint64_t>(86 + i)).to(d));
          set_requires_grad(ps.back(), true);
        }
        Tensor loss = sum(mul(ps[0], ps[0]));
        for (size_t i = 1; i < ps.size(); ++i) loss = add(loss, sum(mul(ps[i], ps[i])));
        backward(loss);
        if (poisoned) ops::fill_(grad(ps[2]), std::nan(""));
        return optim::grad_norm(ps, norm);
      };
      const double got = several(Device::cuda(0)), want = several(Device::cpu());
      INFO("poisoned ", poisoned);
      if (poisoned) {
        CHECK(std::isnan(got));
        CHECK(std::isnan(want));
      } else {
        CHECK(got == doctest::Approx(want).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("cuda: the CRF-RNN layer on the device (composed mean-field, GPU lattice) matches the CPU" *
          doctest::skip(kNoDevice)) {
  // Both lattice builds: on the host and uploaded, and on the GPU (kernels/cuda/lattice_build.cu).
  // And the dense mode: the exact filter's kernel (kernels/cuda/dense_gaussian.cu).
  struct Case {
    crf::LatticeBuild build;
    crf::CrfParametrization param;
    crf::FilterMode mode;
  };
  for (const Case c : {Case{crf::LatticeBuild::host, crf::CrfParametrization::free, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::host, crf::CrfParametrization::convergent, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::device, crf::CrfParametrization::free, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::device, crf::CrfParametrization::convergent, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::host, crf::CrfParametrization::convergent, crf::FilterMode::dense}}) {
    const crf::LatticeBuild build = c.build;
    const crf::CrfParametrization param = c.param;
    const crf::FilterMode mode = c.mode;
    INFO(std::string(build == crf::LatticeBuild::device ? "lattice built on the device" : "lattice built on the host"),
         ", ", std::string(crf::filter_mode_name(mode)));
    const LatticeBuildGuard restore(build);
    auto run = [&](Device d) {
      crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3, .theta_alpha = 20.0, .theta_beta = 30.0,
                                           .mode = mode, .parametrization = param});
      layer.to(d);
      Tensor u = random_tensor({2, 3, 19, 23}, 90, DType::f32, -2, 2).to(d);
      const Tensor image = random_tensor({2, 3, 19, 23}, 91, DType::f32, 0, 255).to(d);
      set_requires_grad(u, true);
      const Tensor out = layer.forward(u, image);
      backward(sum(mul(out, random_tensor(out.shape(), 92).to(d))));
      std::vector<Tensor> leaves = layer.parameters();
      leaves.insert(leaves.begin(), u);
      return with_grads(out, leaves);
    };
    // The GPU lattice sums in the CPU lattice's order (tests/cuda/test_cuda_permutohedral.cpp),
    // so only f32 rounding separates the two.
    CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-3, 1e-3);
  }
  // A grayscale image (features x, y, intensity: d = 3) in f64, both builds,
  // and the eval-mode iteration count (10) after the training one (5).
  for (const crf::LatticeBuild build : {crf::LatticeBuild::host, crf::LatticeBuild::device}) {
    INFO(std::string(build == crf::LatticeBuild::device ? "grayscale f64, lattice built on the device"
                                                        : "grayscale f64, lattice built on the host"));
    const LatticeBuildGuard restore(build);
    auto run = [&](Device d) {
      crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 4, .image_channels = 1, .theta_alpha = 10.0,
                                           .theta_beta = 20.0, .dtype = DType::f64});
      layer.to(d);
      Tensor u = random_tensor({2, 4, 13, 17}, 93, DType::f64, -2, 2).to(d);
      const Tensor image = random_tensor({2, 1, 13, 17}, 94, DType::f64, 0, 255).to(d);
      set_requires_grad(u, true);
      const Tensor out = layer.forward(u, image);
      backward(sum(mul(out, random_tensor(out.shape(), 95, DType::f64).to(d))));
      layer.eval();
      const Tensor out_eval = layer.forward(u, image);
      std::vector<Tensor> leaves = layer.parameters();
      leaves.insert(leaves.begin(), u);
      return ops::concat({with_grads(out, leaves), cpu(ops::flatten(out_eval))}, 0);
    };
    CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-9, 1e-9);
  }
  // Unaries and image on different devices: a clear error, not the other
  // device's filters (a CPU image's lattice was applied to device memory).
  crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3});
  layer.to(Device::cuda(0));
  const Tensor u = random_tensor({1, 3, 5, 6}, 96).to(Device::cuda(0));
  const Tensor host_image = random_tensor({1, 3, 5, 6}, 97, DType::f32, 0, 255);
  check_throws_with<DeviceError>([&] { layer.forward(u, host_image); },
                                 "expected the image on the unaries' device cuda:0, got it on cpu");
}

TEST_CASE("cuda crf: lattices prefetched on a host thread give the inline build's bits, forward and backward" *
          doctest::skip(kNoDevice)) {
  // The host build (the default) with and without CrfRnn::prefetch_lattices;
  // with it, the forward takes the tables made on the host thread and only
  // uploads them (crf/bilateral_prefetch.h).
  const Device gpu = Device::cuda(0);
  const LatticeBuildGuard restore(crf::LatticeBuild::host);
  auto run = [&](bool prefetch) {
    crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3, .theta_alpha = 20.0, .theta_beta = 30.0});
    layer.to(gpu);
    Tensor u = random_tensor({2, 3, 19, 23}, 90, DType::f32, -2, 2).to(gpu);
    const Tensor host = random_tensor({2, 3, 19, 23}, 91, DType::f32, 0, 255);
    const Tensor image = host.to(gpu);
    if (prefetch) layer.prefetch_lattices(host, image);
    set_requires_grad(u, true);
    const Tensor out = layer.forward(u, image);
    backward(sum(mul(out, random_tensor(out.shape(), 92).to(gpu))));
    return values(ops::concat({ops::flatten(out), ops::flatten(grad(u))}, 0).to(Device::cpu()));
  };
  const std::vector<double> plain = run(false);
  const int64_t hits = crf::prefetched_bilateral_hits();
  CHECK(run(true) == plain);
  CHECK(crf::prefetched_bilateral_hits() == hits + 1);
}

#ifdef CRFSEG_WITH_CUDA
// Sets the convolutions' column workspace limit, restoring the previous one.
struct WorkspaceLimitGuard {
  explicit WorkspaceLimitGuard(int64_t elems) : previous(kernels::cuda::set_conv_workspace_limit(elems)) {}
  ~WorkspaceLimitGuard() { kernels::cuda::set_conv_workspace_limit(previous); }
  int64_t previous;
};

// A 3x3 padded convolution of 5 images 3 x 9 x 7 to 4 channels: 27 x 63 =
// 1701 column entries per image.
kernels::ConvGeometry five_images() {
  kernels::ConvGeometry g{};
  g.N = 5, g.C = 3, g.H = 9, g.W = 7, g.K = 4, g.R = 3, g.S = 3, g.P = 9, g.Q = 7, g.ph = 1, g.pw = 1;
  return g;
}
#endif

#ifdef CRFSEG_WITH_CUDA
// Sets whether the im2col path's stride-1 backward-input runs as the
// forward of the flipped filters, restoring the previous setting.
struct FlipGuard {
  explicit FlipGuard(bool on) : previous(kernels::cuda::set_conv_flipped_backward_input(on)) {}
  ~FlipGuard() { kernels::cuda::set_conv_flipped_backward_input(previous); }
  bool previous;
};
#endif

TEST_CASE("cuda conv: the flipped backward-input's plan (when it runs, its groups and workspace)") {
#ifdef CRFSEG_WITH_CUDA
  namespace kcu = kernels::cuda;
  kernels::ConvGeometry g = five_images();  // 3 -> 4 channels: more columns flipped (4 x 9 x 63 against 27 x 63)
  kernels::ConvGeometry narrowing = g;      // 4 -> 3: fewer
  narrowing.C = 4, narrowing.K = 3;
  const WorkspaceLimitGuard limit(int64_t{1} << 26);
  {
    const FlipGuard off(false);
    const kcu::BackwardInputPlan p = kcu::backward_input_plan<float>(narrowing);
    CHECK_FALSE(p.flipped);
    CHECK(p.images == 5);
    CHECK(p.workspace == kcu::col_elems(narrowing, 5));
  }
  const FlipGuard on(true);
  CHECK_FALSE(kcu::backward_input_plan<float>(g).flipped);   // K > C at FP32: col2im's columns are fewer
  CHECK_FALSE(kcu::backward_input_plan<double>(g).flipped);
  const kcu::BackwardInputPlan p = kcu::backward_input_plan<float>(narrowing);
  CHECK(p.flipped);
  CHECK(kcu::backward_input_plan<double>(narrowing).flipped);
  // The forward of 3 -> 4 channels over the 9 x 7 gradient: 3 x 9 x 63
  // columns an image, after the 3 x 4 x 9 = 108 filter values rounded up
  // to a multiple of 64.
  CHECK(p.images == 5);
  CHECK(p.workspace == 128 + 5 * 27 * 63);
  {
    const WorkspaceLimitGuard two(2 * 27 * 63);
    CHECK(kcu::backward_input_plan<float>(narrowing).images == 2);
  }
  // Not flipped: strides, dilations, padding past R - 1, pointwise layers.
  kernels::ConvGeometry strided = narrowing, dilated = narrowing, padded = narrowing, pointwise = narrowing;
  strided.sh = 2, strided.P = 5;
  dilated.dw = 2, dilated.pw = 2;
  padded.ph = 3, padded.P = 13;
  pointwise.R = pointwise.S = 1, pointwise.ph = pointwise.pw = 0;
  for (const kernels::ConvGeometry& c : {strided, dilated, padded, pointwise}) {
    CHECK_FALSE(kcu::backward_input_plan<float>(c).flipped);
  }
#endif
}

// The im2col path's flipped backward-input against the CPU, f32 and f64:
// narrowing layers (K < C), equal ones, paddings 0 and 2 of a 3x3 kernel
// and a 1x3 one, groups of 1, 2 + 2 + 1 and 5 images; and at bf16
// precision (BF16 columns, so also K = 2 C, equal bytes) against f64 on
// the BF16-rounded operands.
TEST_CASE("cuda conv: the backward-input as the forward of the flipped filters matches the CPU" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  const ConvAlgorithmGuard algorithm(kernels::cuda::ConvAlgorithm::im2col);
  const FlipGuard on(true);
  struct Case { Shape x, w; Conv2dArgs a; };
  const std::vector<Case> cases = {
      {{5, 6, 9, 11}, {3, 6, 3, 3}, {.pad_h = 1, .pad_w = 1}},  {{5, 4, 8, 8}, {4, 4, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {{5, 6, 9, 11}, {3, 6, 3, 3}, {.pad_h = 0, .pad_w = 2}},  {{5, 5, 7, 12}, {2, 5, 1, 3}, {.pad_h = 0, .pad_w = 1}},
      {{5, 4, 9, 7}, {8, 4, 3, 3}, {.pad_h = 1, .pad_w = 1}},  // K = 2 C: flipped only at bf16
  };
  int seed = 120;
  for (const Case& c : cases) {
    const Tensor w = random_tensor(c.w, seed++), x = random_tensor(c.x, seed++);
    const Shape y_shape = ops::conv2d(x, w, Tensor(), c.a).shape();
    const Tensor g = random_tensor(y_shape, seed++);
    kernels::ConvGeometry geo{c.x[0], c.x[1], c.x[2], c.x[3], c.w[0], c.w[2], c.w[3], y_shape[2], y_shape[3]};
    geo.ph = c.a.pad_h, geo.pw = c.a.pad_w;
    const int64_t per_image = geo.K * geo.R * geo.S * geo.H * geo.W;
    for (const int64_t limit : {per_image, 2 * per_image, int64_t{1} << 26}) {
      INFO("x ", shape_str(c.x), ", w ", shape_str(c.w), ", workspace limit ", limit);
      const WorkspaceLimitGuard guard(limit);
      CHECK(kernels::cuda::backward_input_plan<float>(geo).flipped == (geo.K <= geo.C));
      for (DType dt : {DType::f32, DType::f64}) {
        check_op("flipped conv2d_backward_input", {g.to(dt), w.to(dt)}, [&](const std::vector<Tensor>& v) {
          return ops::conv2d_backward_input(v[0], v[1], c.x, c.a);
        }, dt == DType::f64 ? 1e-12 : 1e-5, tol(dt));
      }
      const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
      CHECK(kernels::cuda::backward_input_plan<float>(geo).flipped);
      const Tensor dx = cpu(ops::conv2d_backward_input(gpu(g), gpu(w), c.x, c.a));
      CHECK(relative_error(dx, ops::conv2d_backward_input(bf16_rounded(g), bf16_rounded(w), c.x, c.a)) < 1e-5);
    }
  }
#endif
}

TEST_CASE("cuda conv: image groups fill the column workspace limit") {
#ifdef CRFSEG_WITH_CUDA
  const kernels::ConvGeometry g = five_images();
  for (const auto& [limit, images] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1700, 1}, {1701, 1}, {2 * 1701, 2}, {3 * 1701 + 5, 3}, {int64_t{1} << 26, 5}}) {
    const WorkspaceLimitGuard guard(limit);
    CHECK(kernels::cuda::conv_group_images(g) == images);
    CHECK(kernels::cuda::col_elems(g, images) == images * 1701);
  }
  kernels::ConvGeometry pointwise = g;
  pointwise.R = pointwise.S = 1, pointwise.ph = pointwise.pw = 0;
  const WorkspaceLimitGuard guard(1);
  CHECK(kernels::cuda::conv_group_images(pointwise) == 5);  // no columns: one batched GEMM
  CHECK(kernels::cuda::col_elems(pointwise, 5) == 0);
  // The weight gradient's groups hold columns and g, (27 + 4) x 63 an image;
  // a pointwise one x and g, (3 + 4) x 63.
  for (const auto& [limit, images] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1953, 1}, {2 * 1953, 2}, {int64_t{1} << 26, 5}}) {
    const WorkspaceLimitGuard again(limit);
    CHECK(kernels::cuda::conv_weight_grad_images(g) == images);
    // g's copy starts on a multiple of 64 elements.
    const int64_t padded = (images * 1701 + 63) / 64 * 64;
    CHECK(kernels::cuda::col_elems_weight_grad(g, images) == (images == 1 ? 1701 : padded + images * 4 * 63));
  }
  {
    const WorkspaceLimitGuard big(int64_t{1} << 26);
    kernels::ConvGeometry large = g;  // 64 x 64 outputs: one image per weight-gradient GEMM
    large.H = large.W = large.P = large.Q = 64;
    CHECK(kernels::cuda::conv_weight_grad_images(large) == 1);
    CHECK(kernels::cuda::conv_weight_grad_images(g) == 5);
  }
  const WorkspaceLimitGuard pointwise_limit(2 * 7 * 63);
  CHECK(kernels::cuda::conv_weight_grad_images(pointwise) == 2);
  CHECK(kernels::cuda::col_elems_weight_grad(pointwise, 2) == (2 * 3 * 63 + 63) / 64 * 64 + 2 * 4 * 63);
  CHECK(kernels::cuda::col_elems_weight_grad(pointwise, 1) == 0);
  CHECK_THROWS_AS(kernels::cuda::set_conv_workspace_limit(0), ValueError);
  // Winograd, 2x2 tiles: V and M hold 16 (3 + 4) values per tile, 5 x 4 =
  // 20 tiles an image (2240); the workspace adds U's 16 x 4 x 3, each part
  // on a multiple of 64 elements. 4x4 tiles: 36 (3 + 4) values per tile,
  // 3 x 2 = 6 tiles an image (1512).
  for (const auto& [limit, images] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {2239, 1}, {2 * 2240, 2}, {int64_t{1} << 26, 5}}) {
    const WorkspaceLimitGuard again(limit);
    CHECK(kernels::cuda::winograd_group_images(g, 2) == images);
  }
  CHECK(kernels::cuda::winograd_workspace(g, 2, 2) == 192 + 1920 + 16 * 4 * 40);
  {
    const WorkspaceLimitGuard again(3 * 1512);
    CHECK(kernels::cuda::winograd_group_images(g, 4) == 3);
  }
  CHECK(kernels::cuda::winograd_workspace(g, 4, 1) == 448 + 704 + 36 * 4 * 6);
  CHECK_THROWS_AS(kernels::cuda::winograd_workspace(g, 3, 1), ValueError);
#endif
}

TEST_CASE("cuda ops: conv2d forward and backward-input in image groups (batched GEMMs) match the CPU" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  const ConvAlgorithmGuard algorithm(kernels::cuda::ConvAlgorithm::im2col);
  const Conv2dArgs pad1{.pad_h = 1, .pad_w = 1};
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({5, 3, 9, 7}, 60, dt), w = random_tensor({4, 3, 3, 3}, 61, dt);
    const Tensor b = random_tensor({4}, 62, dt);
    // Groups of 1, 2 (2 + 2 + 1), 3 (3 + 2) and all 5 images. P Q = 63
    // here, so im2col stores one value per thread; the 8 x 8 case below
    // takes the four-wide kernel.
    for (int64_t limit : {int64_t{1}, int64_t{2 * 1701}, int64_t{3 * 1701}, int64_t{1} << 26}) {
      const WorkspaceLimitGuard guard(limit);
      INFO("workspace limit ", limit, ", ", std::string(dtype_name(dt)));
      check_op("conv2d in groups", {x, w, b}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d(v[0], v[1], v[2], pad1);
      }, 1e-5, tol(dt));
      const Tensor g = random_tensor({5, 4, 9, 7}, 67, dt);
      check_op("conv2d_backward_input in groups", {g, w}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_input(v[0], v[1], x.shape(), pad1);
      }, 1e-5, tol(dt));
      // The weight gradient's groups need (27 + 4) x 63 = 1953 elements an
      // image: groups of 1, 1, 2 (2 + 2 + 1) and 5 here.
      check_op("conv2d_backward_weight in groups", {g, x}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_weight(v[0], v[1], w.shape(), pad1);
      }, 1e-4, tol(dt));
    }
    const Tensor x8 = random_tensor({3, 5, 8, 8}, 69, dt), w8 = random_tensor({6, 5, 3, 3}, 70, dt);
    const Tensor g8 = random_tensor({3, 6, 8, 8}, 71, dt);
    // 45 x 64 column entries an image, (45 + 6) x 64 for the weight
    // gradient: groups of 1, of 2 + 1 for both passes, then all 3.
    for (int64_t limit : {int64_t{45 * 64}, int64_t{2 * 51 * 64}, int64_t{1} << 26}) {
      const WorkspaceLimitGuard guard(limit);
      check_op("conv2d, P Q a multiple of 4", {x8, w8}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d(v[0], v[1], Tensor(), pad1);
      }, 1e-5, tol(dt));
      check_op("conv2d_backward_weight, P Q a multiple of 4", {g8, x8}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_weight(v[0], v[1], w8.shape(), pad1);
      }, 1e-4, tol(dt));
    }
    for (const auto& [algorithm, per_image] :
         {std::pair{kernels::cuda::ConvAlgorithm::winograd, int64_t{2240}},
          std::pair{kernels::cuda::ConvAlgorithm::winograd4, int64_t{1512}}}) {
      // Winograd in groups of 1, 2 (2 + 2 + 1) and 5: per_image workspace
      // elements an image, backward-input's and the weight gradient's as
      // many (4 + 3 channels); the weight gradient sums over the groups.
      const ConvAlgorithmGuard winograd(algorithm);
      // F(4x4, 3x3) in FP32: see the first conv test.
      const double scale = dt == DType::f32 && algorithm == kernels::cuda::ConvAlgorithm::winograd4 ? 20.0 : 1.0;
      for (int64_t limit : {int64_t{1}, 2 * per_image, int64_t{1} << 26}) {
        const WorkspaceLimitGuard guard(limit);
        INFO(std::string(kernels::cuda::conv_algorithm_name(algorithm)), ", workspace limit ", limit, ", ",
             std::string(dtype_name(dt)));
        check_op("conv2d in Winograd groups", {x, w, b}, [&](const std::vector<Tensor>& v) {
          return ops::conv2d(v[0], v[1], v[2], pad1);
        }, scale * 1e-5, scale * tol(dt));
        const Tensor g = random_tensor({5, 4, 9, 7}, 67, dt);
        check_op("conv2d_backward_input in Winograd groups", {g, w}, [&](const std::vector<Tensor>& v) {
          return ops::conv2d_backward_input(v[0], v[1], x.shape(), pad1);
        }, scale * 1e-5, scale * tol(dt));
        check_op("conv2d_backward_weight in Winograd groups", {g, x}, [&](const std::vector<Tensor>& v) {
          return ops::conv2d_backward_weight(v[0], v[1], w.shape(), pad1);
        }, scale * 1e-4, scale * tol(dt));
      }
      // No images: a zero weight gradient. An empty input plane (H = 0,
      // padding 2: a 2-row output) has an empty input gradient.
      const Tensor x0 = random_tensor({0, 3, 9, 7}, 72, dt), g0 = random_tensor({0, 4, 9, 7}, 73, dt);
      check_op("Winograd weight gradient of no images", {g0, x0}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_weight(v[0], v[1], w.shape(), pad1);
      }, 0, 0);
      const Conv2dArgs pad2{.pad_h = 2, .pad_w = 2};
      const Tensor gh = random_tensor({2, 4, 2, 7}, 74, dt);
      check_op("Winograd backward-input of an empty plane", {gh, w}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_input(v[0], v[1], Shape{2, 3, 0, 5}, pad2);
      }, 0, 0);
    }
    // Pointwise: the 5 images in one batched GEMM reading x (writing dx) in place.
    const Tensor xp = random_tensor({5, 6, 4, 3}, 63, dt), wp = random_tensor({2, 6, 1, 1}, 64, dt);
    check_op("pointwise conv2d, batched", {xp, wp}, [](const std::vector<Tensor>& v) {
      return ops::conv2d(v[0], v[1], Tensor(), {});
    }, 1e-5, tol(dt));
    const Tensor gp = random_tensor({5, 2, 4, 3}, 68, dt);
    check_op("pointwise conv2d_backward_input, batched", {gp, wp}, [&](const std::vector<Tensor>& v) {
      return ops::conv2d_backward_input(v[0], v[1], xp.shape(), {});
    }, 1e-5, tol(dt));
    for (int64_t limit : {int64_t{2 * 8 * 12}, int64_t{1} << 26}) {  // pointwise weight gradient: 2 + 2 + 1, 5
      const WorkspaceLimitGuard guard(limit);
      check_op("pointwise conv2d_backward_weight in groups", {gp, xp}, [&](const std::vector<Tensor>& v) {
        return ops::conv2d_backward_weight(v[0], v[1], wp.shape(), {});
      }, 1e-5, tol(dt));
    }
  }
  // The batched GEMM honours the precision setting, as the single one does.
  // TF32 only *allows* the tensor cores, and on an H100 cuBLAS kept a small
  // batched product (8 x 63 x 144 per image) on its FP32 kernels, with
  // FP32's error to the last digit; this shape (64 x 256 x 576 per image)
  // is large enough for them. Groups of 1 (one GEMM per image) and of 5
  // (one batched GEMM) must both show each precision's error.
  const Tensor x = random_tensor({5, 64, 16, 16}, 65), w = random_tensor({64, 64, 3, 3}, 66);
  const Tensor want = ops::conv2d(x.to(DType::f64), w.to(DType::f64), Tensor(), pad1);
  for (int64_t limit : {int64_t{576 * 256}, int64_t{1} << 26}) {
    const WorkspaceLimitGuard guard(limit);
    auto error_at = [&](cuda::MatmulPrecision p) {
      const cuda::MatmulPrecisionGuard precision(p);
      return relative_error(cpu(ops::conv2d(gpu(x), gpu(w), Tensor(), pad1)), want);
    };
    const double e32 = error_at(cuda::MatmulPrecision::fp32), etf = error_at(cuda::MatmulPrecision::tf32),
                 ebf = error_at(cuda::MatmulPrecision::bf16);
    MESSAGE("conv2d relative error, workspace limit ", limit, ": fp32 ", e32, ", tf32 ", etf, ", bf16 ", ebf);
    CHECK(e32 < 1e-6);
    CHECK(etf < 3e-3);
    CHECK(ebf < 2e-2);
    CHECK(etf > 10 * e32);
    CHECK(ebf > 2 * etf);
  }
  // At BF16 the three passes must round exactly their two operands and
  // accumulate in FP32: against an f64 reference computed from the
  // operands rounded to BF16 on the host, the error is FP32 accumulation's
  // (~1e-6), where leaving either operand unrounded would show BF16's
  // (~1e-3). The forward and the weight gradient make their columns in
  // BF16 directly; limits give groups of 1, of 2 + 2 + 1 and of 5.
  const Tensor g = random_tensor({5, 64, 16, 16}, 67);
  const Tensor x16 = bf16_rounded(x), w16 = bf16_rounded(w), g16 = bf16_rounded(g);
  const Tensor want_y = ops::conv2d(x16, w16, Tensor(), pad1);
  const Tensor want_dw = ops::conv2d_backward_weight(g16, x16, w.shape(), pad1);
  const Tensor want_dx = ops::conv2d_backward_input(g16, w16, x.shape(), pad1);
  for (int64_t limit : {int64_t{576 * 256}, int64_t{2 * (576 + 64) * 256}, int64_t{1} << 26}) {
    const WorkspaceLimitGuard guard(limit);
    const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
    const double ey = relative_error(cpu(ops::conv2d(gpu(x), gpu(w), Tensor(), pad1)), want_y);
    const double edw = relative_error(cpu(ops::conv2d_backward_weight(gpu(g), gpu(x), w.shape(), pad1)), want_dw);
    const double edx = relative_error(cpu(ops::conv2d_backward_input(gpu(g), gpu(w), x.shape(), pad1)), want_dx);
    MESSAGE("bf16 against the BF16-rounded operands, workspace limit ", limit, ": forward ", ey, ", weight gradient ",
            edw, ", backward-input ", edx);
    CHECK(ey < 1e-4);
    CHECK(edw < 1e-4);
    CHECK(edx < 1e-4);
  }
  // Winograd keeps its products in FP32 at every precision: its transforms
  // would amplify TF32/BF16 rounding of the transformed operands 7-11x (an
  // emulation gave F(4x4) at BF16 2.3e-2 against im2col's 2.1e-3). So all
  // three passes give the same bits at fp32, tf32 and bf16, at FP32's error.
  const Tensor want_dw64 = ops::conv2d_backward_weight(g.to(DType::f64), x.to(DType::f64), w.shape(), pad1);
  const Tensor want_dx64 = ops::conv2d_backward_input(g.to(DType::f64), w.to(DType::f64), x.shape(), pad1);
  for (const kernels::cuda::ConvAlgorithm a : {kernels::cuda::ConvAlgorithm::winograd,
                                               kernels::cuda::ConvAlgorithm::winograd4}) {
    const ConvAlgorithmGuard algorithm(a);
    INFO("algorithm ", std::string(kernels::cuda::conv_algorithm_name(a)));
    std::vector<std::vector<double>> runs;
    for (const cuda::MatmulPrecision p :
         {cuda::MatmulPrecision::fp32, cuda::MatmulPrecision::tf32, cuda::MatmulPrecision::bf16}) {
      const cuda::MatmulPrecisionGuard precision(p);
      const Tensor y = cpu(ops::conv2d(gpu(x), gpu(w), Tensor(), pad1));
      const Tensor dw = cpu(ops::conv2d_backward_weight(gpu(g), gpu(x), w.shape(), pad1));
      const Tensor dx = cpu(ops::conv2d_backward_input(gpu(g), gpu(w), x.shape(), pad1));
      const double ey = relative_error(y, want), edw = relative_error(dw, want_dw64), edx = relative_error(dx, want_dx64);
      MESSAGE(std::string(kernels::cuda::conv_algorithm_name(a)), " at ",
              std::string(cuda::matmul_precision_name(p)), ": forward ", ey, ", weight gradient ", edw,
              ", backward-input ", edx);
      CHECK(ey < 2e-4);
      CHECK(edw < 2e-4);
      CHECK(edx < 2e-4);
      std::vector<double> all = values(y), more = values(dw), last = values(dx);
      all.insert(all.end(), more.begin(), more.end());
      all.insert(all.end(), last.begin(), last.end());
      runs.push_back(std::move(all));
    }
    // At fp32 the products run on the production GEMM, at tf32/bf16 on
    // cuBLAS in FP32: the same call (so the same bits) when that is cuBLAS.
    if (kernels::cuda::sgemm_production_name() == "cublas") {
      CHECK(runs[1] == runs[0]);
      CHECK(runs[2] == runs[0]);
    }
  }
#endif
}

TEST_CASE("cuda: matmul precision tf32 / bf16 rounds the GEMM inputs, and fp32 does not" * doctest::skip(kNoDevice)) {
  // product(a, b) on the device at each precision, against f64 on the CPU.
  auto check_precisions = [](const std::string& what, const Tensor& a, const Tensor& b,
                             const std::function<Tensor(const Tensor&, const Tensor&)>& product) {
    const Tensor want = product(a.to(DType::f64), b.to(DType::f64));
    auto error_at = [&](cuda::MatmulPrecision p) {
      const cuda::MatmulPrecisionGuard guard(p);
      return relative_error(cpu(product(gpu(a), gpu(b))), want);
    };
    const double e32 = error_at(cuda::MatmulPrecision::fp32), etf = error_at(cuda::MatmulPrecision::tf32),
                 ebf = error_at(cuda::MatmulPrecision::bf16);
    MESSAGE(what, " relative error: fp32 ", e32, ", tf32 ", etf, ", bf16 ", ebf);
    CHECK(e32 < 1e-6);
    CHECK(etf < 3e-3);
    CHECK(ebf < 2e-2);
    // The reduced precisions must really be in effect (not silently FP32).
    CHECK(etf > 10 * e32);
    CHECK(ebf > 2 * etf);  // BF16 keeps 8 mantissa bits, TF32 10
  };
  check_precisions("one product:", random_tensor({256, 384}, 100), random_tensor({384, 200}, 101),
                   [](const Tensor& a, const Tensor& b) { return ops::matmul(a, b); });
  // Batched (ops::matmul runs one GEMM per matrix; the convolutions'
  // strided batched GEMMs are checked above), with a broadcast operand and
  // a transposed view: each GEMM honours the setting too.
  check_precisions("batched, broadcast, transposed:", random_tensor({3, 64, 192}, 102), random_tensor({160, 192}, 103),
                   [](const Tensor& a, const Tensor& b) { return ops::matmul(a, ops::transpose(b, 0, 1)); });
  CHECK(cuda::matmul_precision() == cuda::MatmulPrecision::fp32);  // the guards restored it
}
