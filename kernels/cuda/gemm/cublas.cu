// cuBLAS backend of the CUDA GEMM family, the registry and the production
// entry points (see gemm.h).
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw CudaError(detail::concat_message(what, " failed: ", cublas_status_name(s), " (", static_cast<int>(s), ")"));
  }
}

std::atomic<int> g_precision{static_cast<int>(GemmPrecision::fp32)};

// One handle per (host thread, device), created on first use: a handle's
// stream and workspace must not be shared by threads that launch on
// different streams (cublasSetStream then the GEMM is not atomic). Handles
// are not destroyed (as in PyTorch): at process exit the CUDA context may
// already be gone, and only threads that run GEMMs create one.
cublasHandle_t handle_for_current_device() {
  thread_local std::array<cublasHandle_t, 64> handles{};
  int device = 0;
  CRFSEG_CUDA_CHECK(cudaGetDevice(&device));
  cublasHandle_t& h = handles.at(static_cast<size_t>(device));
  if (h == nullptr) check_cublas(cublasCreate(&h), "cublasCreate");
  return h;
}

cublasHandle_t prepare(Stream stream) {
  cublasHandle_t h = handle_for_current_device();
  check_cublas(cublasSetStream(h, stream), "cublasSetStream");
  // Plain FP32 unless a reduced precision was asked for (then the compute
  // type of cublasGemmEx says which; see sgemm_cublas).
  check_cublas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  return h;
}

int as_int(int64_t v, const char* what) {
  CRFSEG_CHECK(v >= 0 && v <= 0x7fffffff, NotImplementedError, "cuBLAS GEMM: ", what, " = ", v,
               " does not fit cuBLAS's 32-bit sizes");
  return static_cast<int>(v);
}

// Row-major C[M,N] = op(A) op(B) is column-major C^T[N,M] = op(B)^T op(A)^T:
// swap the operands and the sizes, keep the transposes; in a strided batch
// the batch strides swap with their operands. Operands of type In (T, or
// bf16 for T = float), output and scalars of type T. fn is a
// cublas*StridedBatched-shaped call.
template <typename T, typename In, typename Fn>
void gemm_rowmajor_batched(Fn fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const In* A,
                           int64_t lda, int64_t stride_a, const In* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                           int64_t ldc, int64_t stride_c, int64_t batch, Stream stream, const char* name) {
  if (M == 0 || N == 0 || batch == 0) return;
  cublasHandle_t h = prepare(stream);
  // cuBLAS rejects ld < 1. An ld of 0 reaches here only for rows of length
  // 0 (ops::matmul copies broadcast, stride-0 operands first), where nothing
  // is read: clamp it.
  auto ld = [](int64_t v) { return v < 1 ? int64_t{1} : v; };
  check_cublas(fn(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"),
                  as_int(K, "K"), &alpha, B, as_int(ld(ldb), "ldb"), static_cast<long long>(stride_b), A,
                  as_int(ld(lda), "lda"), static_cast<long long>(stride_a), &beta, C, as_int(ld(ldc), "ldc"),
                  static_cast<long long>(stride_c), as_int(batch, "batch")),
               name);
}

// One product: fn is a cublas*Gemm-shaped call, given the batched form's
// arguments without the strides and the count.
template <typename T, typename In, typename Fn>
void gemm_rowmajor(Fn fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const In* A, int64_t lda,
                   const In* B, int64_t ldb, T beta, T* C, int64_t ldc, Stream stream, const char* name) {
  const auto one = [&fn](cublasHandle_t h, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k,
                         const T* alpha_, const In* a, int la, long long, const In* b, int lb, long long,
                         const T* beta_, T* c, int lc, long long, int) {
    return fn(h, opa, opb, m, n, k, alpha_, a, la, b, lb, beta_, c, lc);
  };
  gemm_rowmajor_batched<T, In>(one, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream, name);
}

// dst[(m rows + r) cols + c] = bf16(src[m stride + r ld + c]) for the
// count matrices of a stored operand: compacted and rounded to nearest even.
void to_bf16(int64_t count, int64_t rows, int64_t cols, const float* src, int64_t ld, int64_t stride,
             __nv_bfloat16* dst, Stream stream) {
  const int64_t per = rows * cols;
  for_each(count * per, [=] __device__(int64_t i) {
    const int64_t m = i / per, e = i - m * per, r = e / cols, c = e - r * cols;
    dst[i] = __float2bfloat16_rn(src[m * stride + r * ld + c]);
  }, stream, "sgemm bf16: to_bf16");
}

// BF16 operands, FP32 accumulation and output. CUBLAS_COMPUTE_32F_FAST_16BF
// on FP32 operands only *allows* BF16: cuBLAS 13 on an H200 ran it as TF32
// (the same error to 9 digits; tests/cuda/test_cuda_gemm.cpp), so the
// operands are rounded here, into stream-ordered scratch (cudaMallocAsync,
// the driver's pool), and multiplied as BF16. A batch is one
// cublasGemmStridedBatchedEx, each operand's distinct matrices rounded once
// (an operand of stride 0, as gemm_shared_a's weights, is one matrix, not
// one per product). B's copy starts 256 bytes aligned, as cuBLAS's
// tensor-core kernels prefer.
// B (FP32, rounded here when B16 is null) or B16 (already BF16).
void sgemm_cublas_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, int64_t stride_a, const float* B, const __nv_bfloat16* B16, int64_t ldb,
                       int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                       Stream stream) {
  if (M == 0 || N == 0 || batch == 0) return;
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  const int64_t a_count = stride_a == 0 ? 1 : batch, b_count = stride_b == 0 ? 1 : batch;
  const int64_t a_per = a_rows * a_cols, b_per = b_rows * b_cols;
  const size_t a_elems = static_cast<size_t>(a_count * a_per);
  const size_t b_elems = B16 != nullptr ? 0 : static_cast<size_t>(b_count * b_per);
  const size_t b_offset = (a_elems + 127) / 128 * 128;
  void* scratch = scratch_malloc(std::max<size_t>(1, (b_offset + b_elems) * sizeof(__nv_bfloat16)), stream,
                                 "sgemm bf16 operand copies");
  auto* a16 = static_cast<__nv_bfloat16*>(scratch);
  try {
    if (a_elems > 0) to_bf16(a_count, a_rows, a_cols, A, lda, stride_a, a16, stream);
    // B as given (its own ld and stride), or its compact rounded copy.
    const __nv_bfloat16* b16 = B16;
    int64_t b_ld = ldb, b_stride = stride_b;
    if (B16 == nullptr) {
      __nv_bfloat16* copy = a16 + b_offset;
      if (b_elems > 0) to_bf16(b_count, b_rows, b_cols, B, ldb, stride_b, copy, stream);
      b16 = copy;
      b_ld = b_cols;
      b_stride = stride_b == 0 ? 0 : b_per;
    }
    auto gemm_ex = [](cublasHandle_t h, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k,
                      const float* alpha_, const __nv_bfloat16* a, int la, long long sa, const __nv_bfloat16* b,
                      int lb, long long sb, const float* beta_, float* c, int lc, long long sc, int count) {
      return cublasGemmStridedBatchedEx(h, opa, opb, m, n, k, alpha_, a, CUDA_R_16BF, la, sa, b, CUDA_R_16BF, lb, sb,
                                        beta_, c, CUDA_R_32F, lc, sc, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    gemm_rowmajor_batched<float, __nv_bfloat16>(gemm_ex, ta, tb, M, N, K, alpha, a16, a_cols,
                                                stride_a == 0 ? 0 : a_per, b16, b_ld, b_stride, beta, C, ldc,
                                                stride_c, batch, stream, "cublasGemmStridedBatchedEx (bf16)");
  } catch (...) {
    cudaFreeAsync(scratch, stream);  // best effort; the first error is the one to report
    throw;
  }
  CRFSEG_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

}  // namespace

void sgemm_cublas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  sgemm_cublas_at(gemm_precision(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void sgemm_cublas_at(GemmPrecision precision, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                     Stream stream) {
  if (precision == GemmPrecision::fp32) {
    gemm_rowmajor<float>(cublasSgemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream, "cublasSgemm");
    return;
  }
  if (precision == GemmPrecision::tf32) {
    // FP32 storage, TF32 tensor-core inputs (cuBLAS rounds A and B on the
    // fly), FP32 accumulation.
    auto gemm_ex = [](cublasHandle_t h, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k,
                      const float* alpha_, const float* a, int la, const float* b, int lb, const float* beta_,
                      float* c, int lc) {
      return cublasGemmEx(h, opa, opb, m, n, k, alpha_, a, CUDA_R_32F, la, b, CUDA_R_32F, lb, beta_, c, CUDA_R_32F,
                          lc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
    };
    gemm_rowmajor<float>(gemm_ex, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream, "cublasGemmEx");
    return;
  }
  sgemm_cublas_bf16(ta, tb, M, N, K, alpha, A, lda, 0, B, nullptr, ldb, 0, beta, C, ldc, 0, 1, stream);
}

void gemm_bf16_cublas_kmajor(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                             const uint16_t* Bt, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  auto gemm_ex = [](cublasHandle_t h, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k,
                    const float* alpha_, const __nv_bfloat16* a, int la, const __nv_bfloat16* b, int lb,
                    const float* beta_, float* c, int lc) {
    return cublasGemmEx(h, opa, opb, m, n, k, alpha_, a, CUDA_R_16BF, la, b, CUDA_R_16BF, lb, beta_, c, CUDA_R_32F, lc,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  gemm_rowmajor<float, __nv_bfloat16>(gemm_ex, false, true, M, N, K, alpha, reinterpret_cast<const __nv_bfloat16*>(A),
                                      lda, reinterpret_cast<const __nv_bfloat16*>(Bt), ldb, beta, C, ldc, stream,
                                      "cublasGemmEx (bf16 operands)");
}

void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc, Stream stream) {
  gemm_rowmajor<double>(cublasDgemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream, "cublasDgemm");
}

namespace {

void check_batch(const char* op, int64_t stride_a, int64_t stride_b, int64_t stride_c, int64_t batch) {
  CRFSEG_CHECK(stride_a >= 0 && stride_b >= 0 && stride_c >= 0 && batch >= 0, ValueError, op,
               ": expected batch strides >= 0 and a batch >= 0, got strides ", stride_a, ", ", stride_b, ", ",
               stride_c, " and batch ", batch);
  // One launch writes every product at once: outputs must not share memory.
  CRFSEG_CHECK(stride_c != 0 || batch <= 1, ValueError, op, ": a batch of ", batch,
               " products with output stride 0 would write one C concurrently");
}

}  // namespace

void sgemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                           float* C, int64_t ldc, int64_t stride_c, int64_t batch, Stream stream) {
  check_batch("sgemm_strided_batched", stride_a, stride_b, stride_c, batch);
  if (sgemm_production_name() != "cublas") {
    for (int64_t i = 0; i < batch; ++i)
      sgemm(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc,
            stream);
    return;
  }
  sgemm_strided_batched_at(gemm_precision(), ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                           ldc, stride_c, batch, stream);
}

void sgemm_strided_batched_at(GemmPrecision precision, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                              float alpha, const float* A, int64_t lda, int64_t stride_a, const float* B,
                              int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c,
                              int64_t batch, Stream stream) {
  check_batch("sgemm_strided_batched_at", stride_a, stride_b, stride_c, batch);
  if (precision == GemmPrecision::bf16) {
    sgemm_cublas_bf16(ta, tb, M, N, K, alpha, A, lda, stride_a, B, nullptr, ldb, stride_b, beta, C, ldc, stride_c,
                      batch, stream);
    return;
  }
  if (precision == GemmPrecision::fp32) {
    gemm_rowmajor_batched<float, float>(cublasSgemmStridedBatched, ta, tb, M, N, K, alpha, A, lda, stride_a, B,
                                        ldb, stride_b, beta, C, ldc, stride_c, batch, stream,
                                        "cublasSgemmStridedBatched");
    return;
  }
  auto gemm_ex = [](cublasHandle_t h, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k,
                    const float* alpha_, const float* a, int la, long long sa, const float* b, int lb, long long sb,
                    const float* beta_, float* c, int lc, long long sc, int count) {
    return cublasGemmStridedBatchedEx(h, opa, opb, m, n, k, alpha_, a, CUDA_R_32F, la, sa, b, CUDA_R_32F, lb, sb,
                                      beta_, c, CUDA_R_32F, lc, sc, count, CUBLAS_COMPUTE_32F_FAST_TF32,
                                      CUBLAS_GEMM_DEFAULT);
  };
  gemm_rowmajor_batched<float, float>(gemm_ex, ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                                      ldc, stride_c, batch, stream, "cublasGemmStridedBatchedEx");
}

bool sgemm_takes_bf16() {
  return gemm_precision() == GemmPrecision::bf16 && sgemm_production_name() == "cublas";
}

void sgemm_strided_batched_b16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                               int64_t lda, int64_t stride_a, const uint16_t* B16, int64_t ldb, int64_t stride_b,
                               float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch, Stream stream) {
  check_batch("sgemm_strided_batched_b16", stride_a, stride_b, stride_c, batch);
  CRFSEG_CHECK(sgemm_takes_bf16(), ValueError, "sgemm_strided_batched_b16: BF16 operands need the cuBLAS SGEMM at bf16 "
               "precision (now ", gemm_precision_name(gemm_precision()), ", ", sgemm_production_name(), ")");
  CRFSEG_CHECK(B16 != nullptr || M == 0 || N == 0 || K == 0 || batch == 0, ValueError,
               "sgemm_strided_batched_b16: null B");
  sgemm_cublas_bf16(ta, tb, M, N, K, alpha, A, lda, stride_a, nullptr, reinterpret_cast<const __nv_bfloat16*>(B16),
                    ldb, stride_b, beta, C, ldc, stride_c, batch, stream);
}

void dgemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                           int64_t lda, int64_t stride_a, const double* B, int64_t ldb, int64_t stride_b,
                           double beta, double* C, int64_t ldc, int64_t stride_c, int64_t batch, Stream stream) {
  check_batch("dgemm_strided_batched", stride_a, stride_b, stride_c, batch);
  gemm_rowmajor_batched<double, double>(cublasDgemmStridedBatched, ta, tb, M, N, K, alpha, A, lda, stride_a, B,
                                        ldb, stride_b, beta, C, ldc, stride_c, batch, stream,
                                        "cublasDgemmStridedBatched");
}

GemmPrecision gemm_precision() { return static_cast<GemmPrecision>(g_precision.load()); }
GemmPrecision set_gemm_precision(GemmPrecision precision) {
  return static_cast<GemmPrecision>(g_precision.exchange(static_cast<int>(precision)));
}
const char* gemm_precision_name(GemmPrecision precision) {
  switch (precision) {
    case GemmPrecision::fp32: return "fp32";
    case GemmPrecision::tf32: return "tf32";
    case GemmPrecision::bf16: return "bf16";
  }
  return "?";
}

const std::vector<CudaSgemmVariant>& sgemm_variants() {
  static const std::vector<CudaSgemmVariant> v = {
      {"cublas", sgemm_cublas, ""},
      {"v1_naive", sgemm_v1_naive, ""},
      {"v2_smem_tile", sgemm_v2_smem_tile, ""},
      {"v4_float4_dbuf", sgemm_v4_float4_dbuf, ""},
      {"v8_float4_256x128", sgemm_v8_float4_256x128, ""},
      {"v3_tf32_mma", sgemm_v3_tf32_mma, "TF32 precision; sm_80 or later", GemmPrecision::tf32},
      {"v5_tf32_async", sgemm_v5_tf32_async,
       "TF32 precision; sm_80 or later; A and B not transposed, ld % 4 == 0, 16-byte aligned, 105 KiB of shared "
       "memory per block (else v3)",
       GemmPrecision::tf32},
      {"v6_tf32_wgmma", sgemm_v6_tf32_wgmma,
       "TF32 precision; sm_90a build on a compute capability 9.0 device (else v5); packs B (and a transposed or "
       "unaligned A) K-major first",
       GemmPrecision::tf32},
      {"v7_tf32_wgmma_pair", sgemm_v7_tf32_wgmma_pair, "as v6, in clusters of two blocks sharing B's tile",
       GemmPrecision::tf32},
      {"v9_bf16_wgmma", sgemm_v9_bf16_wgmma,
       "BF16 precision; sm_90a build on a compute capability 9.0 device (else cuBLAS at bf16); rounds A and B "
       "into K-major BF16 copies first",
       GemmPrecision::bf16},
      {"v10_bf16_wgmma_pair", sgemm_v10_bf16_wgmma_pair, "as v9, in clusters of two blocks sharing B's tile",
       GemmPrecision::bf16},
      {"v11_bf16_mma_tile", sgemm_v11_bf16_mma_tile, "BF16 precision; sm_80 or later", GemmPrecision::bf16},
  };
  return v;
}

const CudaSgemmVariant& sgemm_variant(const std::string& name) {
  std::string names;
  for (const CudaSgemmVariant& v : sgemm_variants()) {
    if (v.name == name) return v;
    names += (names.empty() ? "" : ", ") + v.name;
  }
  throw ValueError("CUDA sgemm: no variant named '" + name + "'; the variants are " + names);
}

namespace {

// The production variant's index in sgemm_variants(); -1 until the first
// use reads CRFSEG_CUDA_SGEMM, or set_sgemm_production sets it.
std::atomic<int> g_production{-1};

int variant_index(const std::string& name) {
  const std::vector<CudaSgemmVariant>& v = sgemm_variants();
  return static_cast<int>(&sgemm_variant(name) - v.data());
}

// The variant CRFSEG_CUDA_SGEMM names (ValueError naming the variable for an
// unknown one), else cublas.
int production_from_env() {
  const char* env = std::getenv("CRFSEG_CUDA_SGEMM");
  if (env == nullptr || env[0] == '\0') return variant_index("cublas");
  try {
    return variant_index(env);
  } catch (const ValueError& e) {
    throw ValueError(std::string("CRFSEG_CUDA_SGEMM: ") + e.what());
  }
}

}  // namespace

int sgemm_production_index() {
  int current = g_production.load();
  if (current >= 0) return current;
  const int from_env = production_from_env();  // a bad name throws here, and again at the next use
  // A setter that ran meanwhile wins (current then holds its choice).
  return g_production.compare_exchange_strong(current, from_env) ? from_env : current;
}

const std::string& sgemm_production_name() { return sgemm_variants()[sgemm_production_index()].name; }

void check_production_precision(GemmPrecision precision, const std::string& what) {
  const std::string& name = sgemm_production_name();
  if (name == "cublas") return;
  const GemmPrecision own = sgemm_variant(name).precision;
  CRFSEG_CHECK(own == precision, ValueError, what, " ", gemm_precision_name(precision), ": the production SGEMM ", name,
               " (CRFSEG_CUDA_SGEMM) multiplies at ", gemm_precision_name(own), "; ask for ",
               gemm_precision_name(own), " or leave CRFSEG_CUDA_SGEMM unset");
}

std::string set_sgemm_production(const std::string& name) {
  const int previous = g_production.exchange(variant_index(name));  // (an unknown name throws first)
  if (previous >= 0) return sgemm_variants()[previous].name;
  // Not chosen yet: what the environment names, or cublas when it names no variant.
  try {
    return sgemm_variants()[production_from_env()].name;
  } catch (const ValueError&) {
    return "cublas";
  }
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  sgemm_variants()[sgemm_production_index()].fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

}  // namespace crfseg::kernels::cuda
