// Shared by the tests/cuda/test_cuda_*.cpp suites: every op that has a
// CUDA kernel runs on cuda:0 and is compared with the same op on the CPU
// (ggml's test-backend-ops pattern). Inputs are random, with awkward sizes
// (primes, 1, non-multiples of the tile sizes), broadcast and strided
// views. Each case needs a CUDA device: without one doctest reports it as
// skipped, not passed. (To run a suite's CPU halves by hand, CPU against
// CPU, set kNoDevice to false and Device::cuda(0) to Device::cpu() here.)
#pragma once

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
#include "tensor/cuda_deferred.h"
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

inline const bool kNoDevice = cuda::device_count() == 0;

inline Tensor gpu(const Tensor& t) { return t.to(Device::cuda(0)); }
inline Tensor cpu(const Tensor& t) { return t.to(Device::cpu()); }

// A float tensor's values rounded to BF16 (to nearest even, as
// __float2bfloat16_rn), as f64: the operands a bf16-precision product
// must have multiplied.
inline Tensor bf16_rounded(const Tensor& t) {
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
inline double tol(DType d) { return d == DType::f64 ? 1e-12 : 2e-5; }

// ||got - want|| / ||want|| over all elements (infinite if any is NaN).
inline double relative_error(const Tensor& got, const Tensor& want) {
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
inline void check_op(const char* what, const std::vector<Tensor>& inputs, F f, double atol, double rtol) {
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
inline Tensor with_grads(const Tensor& out, const std::vector<Tensor>& leaves) {
  std::vector<Tensor> parts = {ops::flatten(detach(out))};
  for (const Tensor& t : leaves) {
    REQUIRE(grad(t).defined());
    parts.push_back(ops::flatten(grad(t)));
  }
  return cpu(ops::concat(parts, 0));
}

// Every tensor of m's state, in state_dict order, as f64 values.
inline std::vector<double> state_values(const nn::Module& m) {
  std::vector<double> w;
  for (const auto& named : m.state_dict()) {
    const std::vector<double> v = values(cpu(named.second).to(DType::f64));
    w.insert(w.end(), v.begin(), v.end());
  }
  return w;
}

// The depth-2, base-4 U-Net of the training tests.
inline std::shared_ptr<models::Segmenter> tiny_unet(Generator& gen) {
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

// Equality where NaN equals NaN and infinities must match exactly; finite
// values within `tol` relative (the devices may sum in different orders).
inline bool same_values(const std::vector<double>& a, const std::vector<double>& b, double tol = 1e-6) {
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

#ifdef CRFSEG_WITH_CUDA  // the SGEMM registry and the convolution switches exist only in CUDA builds
// A GEMM's result against the double reference at the tolerance of the
// precision its inputs were multiplied at. TF32 rounds each input to 11
// significant bits and BF16 to 8: those are judged by the relative
// Frobenius error (about 3e-4 and 3e-3 expected), which NaN never passes.
inline void check_product(kernels::cuda::GemmPrecision precision, const Tensor& got, const Tensor& want) {
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

// Runs the conv cases with the given CUDA algorithm, restoring the previous one.
struct ConvAlgorithmGuard {
  explicit ConvAlgorithmGuard(kernels::cuda::ConvAlgorithm a) : previous(kernels::cuda::set_conv_algorithm(a)) {}
  ~ConvAlgorithmGuard() { kernels::cuda::set_conv_algorithm(previous); }
  kernels::cuda::ConvAlgorithm previous;
};
// Sets the convolutions' column workspace limit, restoring the previous one.
struct WorkspaceLimitGuard {
  explicit WorkspaceLimitGuard(int64_t elems) : previous(kernels::cuda::set_conv_workspace_limit(elems)) {}
  ~WorkspaceLimitGuard() { kernels::cuda::set_conv_workspace_limit(previous); }
  int64_t previous;
};

// A 3x3 padded convolution of 5 images 3 x 9 x 7 to 4 channels: 27 x 63 =
// 1701 column entries per image.
inline kernels::ConvGeometry five_images() {
  kernels::ConvGeometry g{};
  g.N = 5, g.C = 3, g.H = 9, g.W = 7, g.K = 4, g.R = 3, g.S = 3, g.P = 9, g.Q = 7, g.ph = 1, g.pw = 1;
  return g;
}
// Sets whether the im2col path's stride-1 backward-input runs as the
// forward of the flipped filters, restoring the previous setting.
struct FlipGuard {
  explicit FlipGuard(bool on) : previous(kernels::cuda::set_conv_flipped_backward_input(on)) {}
  ~FlipGuard() { kernels::cuda::set_conv_flipped_backward_input(previous); }
  bool previous;
};
#endif
