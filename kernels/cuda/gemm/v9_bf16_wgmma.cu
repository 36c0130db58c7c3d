// v9_bf16_wgmma and v10_bf16_wgmma_pair: v6 and v7's Hopper kernel
// (wgmma.cuh: TMA, a 4-stage mbarrier pipeline, 128 x 256 tiles, v10 in
// clusters of two sharing B's tile) on BF16 operands with FP32
// accumulation, m64n256k16: four instructions per 64-deep slice.
//
// Why: BF16 is the precision of torch.autocast on the GPU and the tensor
// cores' dense BF16 rate is twice TF32's (~990 TFLOP/s on an H100 SXM).
// A BF16 slice of one 128-byte row per operand row is twice as deep as a
// TF32 one for the same shared memory and the same TMA traffic, so the
// pipeline that feeds TF32 at rate R feeds BF16 at 2R from the same bytes.
//
// The variants take FP32 operands (gemm.h's contract) and round them to
// BF16 (nearest even) while packing them K-major, as the cuBLAS path at
// bf16 precision rounds them into copies before its product; the rounding
// pass is inside the timed call for both. Where the wgmma kernel cannot
// run (not an sm_90a build on a compute capability 9.0 device), the calls
// go to cuBLAS at bf16 precision.
//
// Written without a GPU (session 47): compiled for sm_90a here; the data
// path is v6's (same smem layout in bytes, same descriptors), only the
// instruction, the TMA element type and the conversion differ.
// tests/cuda/test_cuda_gemm.cpp checks it like every variant (BF16
// tolerance) once a device is lent.
#include <cuda_bf16.h>

#include "kernels/cuda/gemm/wgmma.cuh"

namespace crfseg::kernels::cuda {

// In a named namespace: nvcc warns of an unreferenced function in an
// unnamed one in builds without sm_90a, where the kernel body that calls
// mma() is compiled out.
namespace wgmma {

struct Bf16 {
  using Element = __nv_bfloat16;
  static constexpr int kElemBytes = 2;
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  struct Convert {
    __device__ __nv_bfloat16 operator()(float v) const { return __float2bfloat16_rn(v); }
  };
  // d (64 x 256 over the warpgroup) += A (64 x 16, descriptor a) B^T (256 x
  // 16, descriptor b): one 32-byte step of K. The last two immediates say
  // both operands are K-major (no transpose).
  __device__ __forceinline__ static void mma(float (&d)[128], uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("{\nwgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " CRFSEG_WGMMA_D128_LIST
                 ", %128, %129, 1, 1, 1, 0, 0;\n}\n"
                 : CRFSEG_WGMMA_D128
                 : "l"(a), "l"(b));
#endif
  }
  static void fallback(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
    sgemm_cublas_at(GemmPrecision::bf16, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  }
};

}  // namespace wgmma

void sgemm_v9_bf16_wgmma(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  wgmma::sgemm<wgmma::Bf16, 1>("v9_bf16_wgmma", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void sgemm_v10_bf16_wgmma_pair(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                               Stream stream) {
  wgmma::sgemm<wgmma::Bf16, 2>("v10_bf16_wgmma_pair", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

bool sgemm_bf16_wgmma_active() { return wgmma::ready<wgmma::Bf16, 1>() && wgmma::ready<wgmma::Bf16, 2>(); }

void gemm_bf16_wgmma_kmajor(bool pair, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                            const uint16_t* Bt, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  const char* name = pair ? "gemm_bf16_wgmma_kmajor (pair)" : "gemm_bf16_wgmma_kmajor";
  CRFSEG_CHECK(sgemm_bf16_wgmma_active(), NotImplementedError, name,
               ": needs an sm_90a build on a compute capability 9.0 device");
  CRFSEG_CHECK(M > 0 && N > 0 && K > 0 && M < (int64_t{1} << 30) && N < (int64_t{1} << 30) && K < (int64_t{1} << 30),
               ValueError, name, ": expected 0 < M, N, K < 2^30, got ", M, ", ", N, ", ", K);
  CRFSEG_CHECK(ldc >= N, ValueError, name, ": expected ldc >= N = ", N, ", got ", ldc);
  CRFSEG_CHECK(lda >= K && ldb >= K && lda % 8 == 0 && ldb % 8 == 0 && aligned16(A) && aligned16(Bt), ValueError,
               name, ": expected K-major rows of at least K = ", K,
               " values, strides a multiple of 8 and 16-byte aligned bases, got lda ", lda, ", ldb ", ldb);
  const auto* a = reinterpret_cast<const __nv_bfloat16*>(A);
  const auto* b = reinterpret_cast<const __nv_bfloat16*>(Bt);
  if (pair) {
    wgmma::run_kmajor<wgmma::Bf16, 2>(name, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc, stream);
  } else {
    wgmma::run_kmajor<wgmma::Bf16, 1>(name, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc, stream);
  }
}

}  // namespace crfseg::kernels::cuda
