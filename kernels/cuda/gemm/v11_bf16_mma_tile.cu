// v11_bf16_mma_tile: v4's block tiles, loaders and double buffering with the
// products on the tensor cores (tiled_bf16.cuh: mma.sync m16n8k16 fed by
// ldmatrix, operands rounded to BF16 as they enter shared memory, FP32
// accumulation). Changed from v4: BF16 precision, so it is compared with
// cuBLAS at bf16. Its reason to exist is the implicit-GEMM convolution,
// which runs the same kernel on gathered operands (conv2d_implicit.cu):
// as a plain SGEMM it times the kernel alone, beside v9's wgmma and
// cuBLAS, and the SGEMM tests run it on every awkward shape.
// Written without a GPU (session 48): untested on a device.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled.cuh"
#include "kernels/cuda/gemm/tiled_bf16.cuh"

namespace crfseg::kernels::cuda {

void sgemm_v11_bf16_mma_tile(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                             Stream stream) {
  constexpr int kTileM = 128;
  tiled::launch_stored<kTileM, tiled::kBf16Depth>(
      "sgemm_v11_bf16_mma_tile", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
      [&](auto la, auto lb, const tiled::StoreC& out, dim3 grid, int64_t chunk) {
        tiled::gemm_tile_bf16_kernel<decltype(la), decltype(lb), tiled::StoreC, kTileM>
            <<<grid, tiled::kThreads, 0, stream>>>(la, lb, out, K, chunk);
      });
}

}  // namespace crfseg::kernels::cuda
