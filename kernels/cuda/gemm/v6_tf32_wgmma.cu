// v6_tf32_wgmma and v7_tf32_wgmma_pair: Hopper's warpgroup tensor-core
// product (wgmma.mma_async, TF32 inputs, FP32 accumulation) fed by the
// tensor memory accelerator (TMA) through a 4-stage mbarrier pipeline, with
// one producer warpgroup and two consumer warpgroups per block. v7 runs
// blocks in pairs (a cluster of two) that share B's tile. The kernel and
// its data path are wgmma.cuh's; this file gives the TF32 instruction.
//
// Why a new kernel rather than tuning v5: v5 (mma.sync, cp.async) reached
// 0.28x cuBLAS TF32 at 4096^3 on an H100 (session 42), and cuBLAS's TF32
// kernels there are wgmma kernels (402 TFLOP/s); mma.sync issues from one
// warp at a time and cannot keep Hopper's tensor cores busy, so the 0.8x
// target of issue #7 needs wgmma.
//
// TF32 is read from the FP32 bit patterns (the low 13 mantissa bits
// ignored: truncation, where v3 and v5 round), so A and B^T stored K-major
// with 16-byte rows are read in place; only B not transposed (or A
// transposed, or unaligned) is packed, 128 MB at 4096^3 (about 45 us on an
// H100, against 340 us for cuBLAS's whole product).
//
// Written without a GPU (session 43): compiled here, its PTX read (four
// wgmma.mma_async per slice, the two TMA copies) and ptxas's report (154
// registers, no spills; this machine has no disassembler for the SASS).
// tests/cuda/test_cuda_gemm.cpp checks it against the CPU like every
// variant, and checks that it really took the wgmma path, once a device is
// lent.
#include "kernels/cuda/gemm/wgmma.cuh"

namespace crfseg::kernels::cuda {

// In a named namespace: nvcc warns of an unreferenced function in an
// unnamed one in builds without sm_90a, where the kernel body that calls
// mma() is compiled out.
namespace wgmma {

struct Tf32 {
  using Element = float;
  static constexpr int kElemBytes = 4;
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  struct Convert {
    __device__ float operator()(float v) const { return v; }
  };
  // d (64 x 256 over the warpgroup) += A (64 x 8, descriptor a) B^T (256 x
  // 8, descriptor b): one 32-byte step of K.
  __device__ __forceinline__ static void mma(float (&d)[128], uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("{\nwgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 " CRFSEG_WGMMA_D128_LIST
                 ", %128, %129, 1, 1, 1;\n}\n"
                 : CRFSEG_WGMMA_D128
                 : "l"(a), "l"(b));
#endif
  }
  static void fallback(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
    sgemm_v5_tf32_async(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  }
};

}  // namespace wgmma

bool sgemm_wgmma_active() { return wgmma::ready<wgmma::Tf32, 1>() && wgmma::ready<wgmma::Tf32, 2>(); }

void sgemm_v6_tf32_wgmma(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  wgmma::sgemm<wgmma::Tf32, 1>("v6_tf32_wgmma", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void sgemm_v7_tf32_wgmma_pair(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                              Stream stream) {
  wgmma::sgemm<wgmma::Tf32, 2>("v7_tf32_wgmma_pair", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

}  // namespace crfseg::kernels::cuda
