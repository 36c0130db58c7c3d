// The CUDA SGEMM variants (kernels/cuda/gemm/) and matmul on cuda:0 against
// the CPU: awkward shapes, transposes, padded rows, broadcast operands, the
// production switch, and the tf32/bf16 precisions.

#include "tests/cuda/support.h"

#ifdef CRFSEG_WITH_CUDA  // the registry exists only in CUDA builds
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

// The BF16 operand copies come from the driver's pool, which cannot take
// what the caching allocator holds. With all but 16-48 MiB of the device
// cached (freed tensors of 32 MiB), a bf16 product whose copies take 64 MiB
// (64 x 2^18 times 2^18 x 64: a 16 KiB output, from the small pool) gets
// the cached segments back (scratch_malloc's retry) instead of failing.
TEST_CASE("cuda: GEMM scratch gets the memory the caching allocator holds back" * doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  const int64_t K = int64_t{1} << 18;
  const Tensor a = gpu(random_tensor({64, K}, 104)), b = gpu(random_tensor({K, 64}, 105));
  cuda::empty_cache(0);
  size_t free_b = 0, total_b = 0;
  REQUIRE(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
  const int64_t chunk = int64_t{32} << 20;
  const int64_t chunks = (static_cast<int64_t>(free_b) - (int64_t{16} << 20)) / chunk;
  {
    std::vector<Tensor> hog;
    try {
      for (int64_t i = 0; i < chunks; ++i) hog.push_back(empty({chunk / 4}, {DType::f32, Device::cuda(0)}));
    } catch (const OutOfMemoryError&) {
      // The driver kept more than the margin: the device is full all the same.
    }
  }  // all cached now
  const int64_t reserved = cuda::memory_stats(0).reserved_bytes;
  if (reserved == 0) {
    MESSAGE("skipped: the caching allocator is off (CRFSEG_CUDA_CACHE=0)");
    return;
  }
  MESSAGE("cached ", reserved, " bytes of ", total_b);
  Tensor c;
  {
    const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
    c = ops::matmul(a, b);
  }
  CHECK(cuda::memory_stats(0).reserved_bytes < reserved);  // the cache gave segments back
  const Tensor want = ops::matmul(bf16_rounded(cpu(a)), bf16_rounded(cpu(b)));
  // FP32 sums 2^18 deep (the tensor cores may truncate: a few 1e-4);
  // operands not rounded to BF16 would give ~3e-3.
  CHECK(relative_error(cpu(c), want) < 1e-3);
  cuda::empty_cache(0);
#endif
}
