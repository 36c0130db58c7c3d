// CUDA GEMM: cuBLAS and the hand-written variants, behind one registry.
//
// Every variant has one signature: row-major C = alpha op(A) op(B) + beta C
// with op = transpose when the flag is set, any M, N, K (bounds-checked),
// leading dims >= row length, device pointers, launched on `stream`. This is
// the CPU family's contract (kernels/cpu/gemm/gemm.h), so the same tests
// (tests/cuda/test_cuda_gemm.cpp) and benchmark (bench/bench_gemm_cuda.cpp)
// iterate every variant.
//
// The ladder (one file each):
//   cublas      : cublasSgemm on the column-major view (C^T = op(B)^T op(A)^T);
//                 the baseline and the production default. FP32 unless
//                 set_gemm_precision asks for TF32 (cublasGemmEx rounds on
//                 the fly) or BF16 (operands rounded to BF16 copies first,
//                 see cublas.cu), FP32 accumulation and output: an explicit
//                 setting, never silent.
//   v1_naive    : one thread per element of C, K-loop from global memory.
//   v2_smem_tile: 128x128 block tile staged through shared memory in 8-deep
//                 K slices, 256 threads each computing an 8x8 register tile
//                 (64 FMAs per 16 shared loads): SGEMM_CUDA's kernel 5 idea,
//                 with every load guarded so any shape works.
//   v3_tf32_mma : tensor cores (mma.sync m16n8k8, TF32 inputs, FP32
//                 accumulation), 128x128 block tile, 64x32 warp tiles; TF32
//                 precision, so it is compared with cuBLAS in TF32 mode.
//   v4_float4_dbuf: v2 with 16-byte shared reads (two 4x4 quads per thread),
//                 double-buffered 16-deep slices (global loads of slice k+1
//                 in flight during slice k) and 16-byte global loads where a
//                 slice is whole and aligned. FP32: 0.85-0.88x cuBLAS at
//                 2048^3-4096^3 on an H200 (v2: 0.49-0.51x).
//   v5_tf32_async: v3's tensor-core product fed by a 3-stage cp.async
//                 pipeline (16-byte copies straight to shared memory, 32-deep
//                 slices, one barrier each) for A, B not transposed with
//                 16-byte aligned rows; other calls run v3. Written without
//                 a GPU (session 41); 0.28x cuBLAS TF32 on an H100.
//   v6_tf32_wgmma: Hopper's warpgroup MMA (wgmma, m64n256k8) fed by TMA
//                 copies through a 4-stage mbarrier pipeline, one producer
//                 and two consumer warpgroups per 128x256 tile; operands the
//                 TMA cannot read K-major are packed first. Needs an sm_90a
//                 build and a compute capability 9.0 device (else v5).
//   v7_tf32_wgmma_pair: v6 with blocks in clusters of two along M that
//                 share B's tile: each loads half of it and the TMA
//                 multicasts it to both, halving B's L2 reads. Written
//                 without a GPU (session 43).
//   v8_float4_256x128: v4's kernel on 256x128 tiles, 8 deep (16 x 8
//                 accumulators a thread: 6 shared float4 reads per 128 FMAs
//                 against v4's 4 per 64). FP32. Written without a GPU
//                 (session 43).
//   v9_bf16_wgmma, v10_bf16_wgmma_pair: v6 and v7's kernel (wgmma.cuh) on
//                 BF16 operands (m64n256k16), rounded from FP32 while they
//                 are packed K-major; cuBLAS at bf16 precision where wgmma
//                 cannot run. Written without a GPU (session 47).
//   v11_bf16_mma_tile: v4's tiles and loaders on the tensor cores
//                 (tiled_bf16.cuh: mma.sync m16n8k16 fed by ldmatrix, BF16
//                 operands rounded on their way into shared memory); the
//                 kernel of the implicit-GEMM convolution at bf16 precision.
//                 Any shape. Written without a GPU (session 48).
// Production: CRFSEG_CUDA_SGEMM=<name> (or set_sgemm_production) selects a
// variant; default cublas.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/geometry.h"

namespace crfseg::kernels::cuda {

// Whether p is 16-byte aligned, as float4 loads, cp.async and TMA need their
// operands (the hand-written variants check before taking a fast path).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The input precision of cuBLAS SGEMM (and so of matmul and the im2col
// convolutions): fp32 (the default), or tf32 / bf16, where the tensor cores
// take A and B rounded to TF32 (10-bit mantissa) or BF16 (7-bit) and
// accumulate in FP32. Tensors stay FP32 in memory. Process-wide; the setter
// returns the previous value. The hand-written variants keep their own
// precision (CudaSgemmVariant::precision: v3, v5, v6, v7 TF32; v9, v10,
// v11 BF16; the others FP32).
enum class GemmPrecision { fp32, tf32, bf16 };
GemmPrecision gemm_precision();
GemmPrecision set_gemm_precision(GemmPrecision precision);
const char* gemm_precision_name(GemmPrecision precision);

using CudaSgemmFn = void (*)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                             const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                             int64_t ldc, Stream stream);

struct CudaSgemmVariant {
  std::string name;
  CudaSgemmFn fn;
  std::string constraints;  // "" when none
  // The precision its inputs reach the multiplier at: tf32 and bf16
  // variants are compared with cuBLAS at the same precision (and looser
  // tolerances) in the tests and the benchmark.
  GemmPrecision precision = GemmPrecision::fp32;
};

const std::vector<CudaSgemmVariant>& sgemm_variants();
const CudaSgemmVariant& sgemm_variant(const std::string& name);  // ValueError listing names otherwise

void sgemm_cublas(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                  float*, int64_t, Stream);
// cuBLAS at the given precision rather than the process-wide one (the
// benchmark's baselines, and v9/v10's fallback).
void sgemm_cublas_at(GemmPrecision precision, bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                     const float*, int64_t, float, float*, int64_t, Stream);
void sgemm_v1_naive(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                    float, float*, int64_t, Stream);
void sgemm_v2_smem_tile(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                        float, float*, int64_t, Stream);
void sgemm_v3_tf32_mma(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                       float, float*, int64_t, Stream);
void sgemm_v4_float4_dbuf(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t, Stream);
void sgemm_v5_tf32_async(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t, Stream);
void sgemm_v8_float4_256x128(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                             int64_t, float, float*, int64_t, Stream);
void sgemm_v6_tf32_wgmma(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t, Stream);
void sgemm_v7_tf32_wgmma_pair(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                              int64_t, float, float*, int64_t, Stream);
void sgemm_v9_bf16_wgmma(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t, Stream);
void sgemm_v10_bf16_wgmma_pair(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                               int64_t, float, float*, int64_t, Stream);
void sgemm_v11_bf16_mma_tile(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                             int64_t, float, float*, int64_t, Stream);
// Whether v6 and v7 (v9 and v10) run their own wgmma kernels on the current
// device (built for sm_90a, compute capability 9.0), rather than handing
// calls to v5 (to cuBLAS at bf16 precision).
bool sgemm_wgmma_active();
bool sgemm_bf16_wgmma_active();
// The BF16 products alone, for the benchmark's kernel-to-kernel ratio:
// C (FP32, row-major) = alpha A Bt^T + beta C with A [M][K] and Bt [N][K]
// already BF16 (bit patterns) and K-major. v9's kernel (v10's with `pair`)
// needs rows a multiple of 8 values, 16-byte aligned bases and
// sgemm_bf16_wgmma_active() (else NotImplementedError); cuBLAS's takes any
// row strides >= K.
void gemm_bf16_wgmma_kmajor(bool pair, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                            const uint16_t* Bt, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream);
void gemm_bf16_cublas_kmajor(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                             const uint16_t* Bt, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream);

// Production entry points (f64 always goes to cuBLAS's DGEMM).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream);
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc, Stream stream);
// The production SGEMM variant: CRFSEG_CUDA_SGEMM=<name> (read at the first
// GEMM; an unknown name is a ValueError naming the variable there), else
// cublas. set_sgemm_production switches it for the process and returns the
// previous name (ValueError listing the names for an unknown one, nothing
// changed); switch it only while no GEMM runs, since an op may read it more
// than once. Its index in sgemm_variants() keys the conv autotuner's
// choices for f32.
const std::string& sgemm_production_name();
// ValueError when a hand-written production SGEMM multiplies at another
// precision than `precision` (it runs at its own whatever the setting, so
// a run asking for another would silently get it); `what` names the
// caller's setting in the message ("--precision"). cuBLAS takes any.
void check_production_precision(GemmPrecision precision, const std::string& what);
int sgemm_production_index();
std::string set_sgemm_production(const std::string& name);

// Strided batches of the production GEMM: C_i = alpha op(A_i) op(B_i) +
// beta C_i for i < batch, where X_i = X + i stride_x (a stride of 0 shares
// the operand). One cuBLAS launch (cublas*StridedBatched) when the
// production GEMM is cuBLAS, and always for f64 (at bf16 precision each
// operand's distinct matrices are rounded to BF16 once first); a
// hand-written variant runs one GEMM per entry.
// The convolutions' forward runs several images per call this way: one
// image's [K, P Q] output is a few tiles for deep layers (16 for 1024
// channels at 16^2), too few for the GPU.
void sgemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                           float* C, int64_t ldc, int64_t stride_c, int64_t batch, Stream stream);
// The same through cuBLAS at `precision` whatever the process-wide one and
// the production GEMM.
void sgemm_strided_batched_at(GemmPrecision precision, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                              float alpha, const float* A, int64_t lda, int64_t stride_a, const float* B,
                              int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c,
                              int64_t batch, Stream stream);
void dgemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                           const double* A, int64_t lda, int64_t stride_a, const double* B, int64_t ldb,
                           int64_t stride_b, double beta, double* C, int64_t ldc, int64_t stride_c, int64_t batch,
                           Stream stream);
// The same with B already in BF16 (bit patterns, uint16_t), for operands
// made in BF16 directly: the convolutions' columns when sgemm_takes_bf16().
// A is rounded here (once when stride_a is 0). cuBLAS only.
void sgemm_strided_batched_b16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float* A, int64_t lda, int64_t stride_a, const uint16_t* B16, int64_t ldb,
                               int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                               Stream stream);
// Whether the float GEMMs take BF16 inputs (cuBLAS production at bf16
// precision), so that a caller may hand sgemm_strided_batched_b16 its B.
bool sgemm_takes_bf16();
// The two above by element type (the convolutions are templates over it).
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                          int64_t ldc, int64_t stride_c, int64_t batch, Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm_strided_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
                          batch, stream);
  } else {
    static_assert(std::is_same_v<T, double>, "gemm_strided_batched: f32 or f64");
    dgemm_strided_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
                          batch, stream);
  }
}


}  // namespace crfseg::kernels::cuda
