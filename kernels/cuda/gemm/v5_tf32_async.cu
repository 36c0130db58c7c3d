// v5_tf32_async: v3's tensor-core product (mma.sync m16n8k8, TF32 inputs,
// FP32 accumulation) fed by a three-stage cp.async pipeline.
//
// Changed from v3 (0.09x cuBLAS TF32 at 4096^3 on an H200, session 32): v3
// loads each 16-deep slice with scalar global loads, rounds and stores it
// to shared memory, and the tensor cores wait for that every slice. Here:
//  1. cp.async copies 16-byte chunks from global straight to shared memory
//     (.cg: through L2 only), for the two slices after the one being
//     multiplied: loads overlap the mma.sync work, one barrier per slice.
//  2. BK = 32: four 8-deep mma steps per barrier (v3: two).
//  3. The shared tiles keep the operands' own layout, FP32: As[m][k] for A
//     (k contiguous, as in memory), Bs[k][n] for B. Fragments are rounded
//     to TF32 (cvt.rna, as v3) when they are read. Padding (As rows of
//     BK + 4 floats, Bs rows of BN + 8) keeps each warp's fragment reads in
//     32 distinct banks (a: (4g + t) mod 32, b: (8t + g) mod 32) and every
//     16-byte destination aligned.
// Tails need no special path: a chunk past M, N or K is copied with fewer
// source bytes (cp.async's src-size), and the rest of its 16 bytes is
// filled with zeros, which add nothing to the products.
//
// Applies to A and B not transposed with lda and ldb multiples of 4 and
// 16-byte aligned bases (every chunk then starts aligned); other calls run
// v3's kernel. 3 stages x 35,840 bytes of shared memory: 105 KiB, above the
// default 48 KiB, so the kernel's limit is raised first (prepare_kernel);
// a device that cannot give that much (sm_86, sm_89) runs v3 too.
//
// Fragment ownership, the rounding, the mma and the store of the
// accumulators: mma_tf32.cuh, shared with v3.
//
// Written without a GPU (session 41): compiled and its PTX read here (24
// cp.async per slice pair, 64 mma.sync, 96 cvt.rna per unrolled slice
// body); tests/cuda/test_cuda_gemm.cpp runs it against the CPU like every
// variant once a device is lent. ptxas (sm_90): 130 registers without a
// block minimum, one block of 256 threads per SM; capped for two blocks,
// 128 registers with 16 bytes spilled. Two blocks (16 warps) hide more of
// the pipeline's latency, so the kernel asks for two; on a device, time
// both.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/mma_tf32.cuh"
#include "kernels/cuda/per_device.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, kStages = 3;
constexpr int kThreads = 256;
constexpr int WM = 64, WN = 32;  // warp tile: 8 warps as 2 x 4
constexpr int kLdA = BK + 4, kLdB = BN + 8;
constexpr int kStageFloats = BM * kLdA + BK * kLdB;
constexpr int kSmemBytes = kStages * kStageFloats * static_cast<int>(sizeof(float));
constexpr int kChunksA = BM * BK / 4 / kThreads, kChunksB = BK * BN / 4 / kThreads;  // 4 and 4 per thread

// 16 bytes from global to shared; only `bytes` (0..16) are read, the rest
// of the destination is zeroed.
__device__ __forceinline__ void cp_async_16(float* dst, const float* src, int bytes) {
  const auto d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Source bytes of the chunk of 4 floats starting at index i of a row of n.
__device__ __forceinline__ int chunk_bytes(int64_t i, int64_t n) {
  const int64_t left = n - i;
  return left >= 4 ? 16 : left > 0 ? static_cast<int>(left) * 4 : 0;
}

// Issues the copies of slice k0 (A's rows m0.., B's columns n0..) into one
// stage. (One loop per operand: a template over the tile's shape serving
// both made ptxas spill 44 bytes instead of 16.)
__device__ __forceinline__ void load_stage(float* stage, const float* __restrict__ A, int64_t lda,
                                           const float* __restrict__ B, int64_t ldb, int64_t M, int64_t N,
                                           int64_t K, int64_t m0, int64_t n0, int64_t k0, int tid) {
  float* As = stage;
  float* Bs = stage + BM * kLdA;
#pragma unroll
  for (int i = 0; i < kChunksA; ++i) {
    const int c = tid + i * kThreads;  // 8 chunks per row of 32 k
    const int row = c >> 3, kc = (c & 7) * 4;
    const int64_t m = m0 + row, k = k0 + kc;
    const int bytes = m < M ? chunk_bytes(k, K) : 0;
    cp_async_16(As + row * kLdA + kc, bytes > 0 ? A + m * lda + k : A, bytes);
  }
#pragma unroll
  for (int i = 0; i < kChunksB; ++i) {
    const int c = tid + i * kThreads;  // 32 chunks per row of 128 n
    const int krow = c >> 5, nc = (c & 31) * 4;
    const int64_t k = k0 + krow, n = n0 + nc;
    const int bytes = k < K ? chunk_bytes(n, N) : 0;
    cp_async_16(Bs + krow * kLdB + nc, bytes > 0 ? B + k * ldb + n : B, bytes);
  }
}

__global__ void __launch_bounds__(kThreads, 2)
sgemm_tf32_async_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A, int64_t lda,
                        const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C, int64_t ldc) {
  extern __shared__ __align__(16) float smem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = (warp / 4) * WM, wn = (warp % 4) * WN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t slices = (K + BK - 1) / BK;

  // Prologue: the first kStages - 1 slices in flight, one commit group each
  // (empty groups past the end keep the count that wait_group relies on).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < slices) load_stage(smem + s * kStageFloats, A, lda, B, ldb, M, N, K, m0, n0, s * BK, tid);
    cp_async_commit();
  }

  float acc[WM / 16][WN / 8][4] = {};
  for (int64_t s = 0; s < slices; ++s) {
    // Slice s is this thread's oldest group but kStages - 2; the barrier
    // makes every thread's copies visible, and also ends the reads of the
    // stage the next copies overwrite (the one multiplied last iteration).
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int64_t next = s + kStages - 1;
    if (next < slices) {
      load_stage(smem + (next % kStages) * kStageFloats, A, lda, B, ldb, M, N, K, m0, n0, next * BK, tid);
    }
    cp_async_commit();

    const float* As = smem + (s % kStages) * kStageFloats;
    const float* Bs = As + BM * kLdA;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      uint32_t a[WM / 16][4], b[WN / 8][2];
#pragma unroll
      for (int i = 0; i < WM / 16; ++i) {
        const float* r = As + (wm + i * 16 + g) * kLdA + kk + t;
        a[i][0] = to_tf32(r[0]);
        a[i][1] = to_tf32(r[8 * kLdA]);
        a[i][2] = to_tf32(r[4]);
        a[i][3] = to_tf32(r[8 * kLdA + 4]);
      }
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) {
        const float* c = Bs + (kk + t) * kLdB + wn + j * 8 + g;
        b[j][0] = to_tf32(c[0]);
        b[j][1] = to_tf32(c[4 * kLdB]);
      }
#pragma unroll
      for (int i = 0; i < WM / 16; ++i) {
#pragma unroll
        for (int j = 0; j < WN / 8; ++j) mma_tf32(acc[i][j], a[i], b[j]);
      }
    }
  }
  cp_async_wait<0>();  // nothing is left in flight when the block exits
  store_mma_tiles(acc, m0 + wm, n0 + wn, g, t, M, N, alpha, beta, C, ldc);
}

// Raises the kernel's dynamic shared-memory limit on the current device, and
// asks for the largest shared-memory carveout (two blocks need 217 KB of an
// SM's 228), once per device. False where a block cannot have kSmemBytes
// (sm_86 and sm_89 give 99 KB): v3 runs there.
bool prepare_kernel() {
  return once_per_device([](int device) {
    int optin = 0;
    CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const bool fits = optin >= kSmemBytes;
    if (fits) {
      CRFSEG_CUDA_CHECK(
          cudaFuncSetAttribute(sgemm_tf32_async_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
      CRFSEG_CUDA_CHECK(cudaFuncSetAttribute(sgemm_tf32_async_kernel,
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             cudaSharedmemCarveoutMaxShared));
    }
    return fits;
  });
}

}  // namespace

void sgemm_v5_tf32_async(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  if (M == 0 || N == 0) return;
  if (ta || tb || lda % 4 != 0 || ldb % 4 != 0 || !aligned16(A) || !aligned16(B) || !prepare_kernel()) {
    sgemm_v3_tf32_mma(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
    return;
  }
  const int64_t gy = (M + BM - 1) / BM;
  CRFSEG_CHECK(gy <= 65535, NotImplementedError, "sgemm v5_tf32_async: M = ", M, " needs more than 65535 block rows");
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>(gy));
  sgemm_tf32_async_kernel<<<grid, kThreads, kSmemBytes, stream>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  launch_check("sgemm_v5_tf32_async");
}

}  // namespace crfseg::kernels::cuda
