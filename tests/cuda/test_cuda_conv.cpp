// The CUDA convolutions (kernels/cuda/conv2d*.cu) on cuda:0 against the CPU:
// every algorithm (im2col, implicit GEMM, Winograd, autotuned), the flipped
// backward-input, image groups under the workspace limit, bf16 operands,
// and the 32-bit index limits.

#include "tests/cuda/support.h"

#ifdef CRFSEG_WITH_CUDA
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
