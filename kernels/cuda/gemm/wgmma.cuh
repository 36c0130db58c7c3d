// The Hopper GEMM kernel behind the wgmma variants: v6_tf32_wgmma and
// v7_tf32_wgmma_pair (TF32 operands), v9_bf16_wgmma and v10_bf16_wgmma_pair
// (BF16). Each variant's file gives the element type and its one wgmma
// instruction (an `Mma`); the data path is this file's, the same bytes for
// both types.
//
// The data path, one 128 x 256 tile of C per block, K in slices of one
// 128-byte row per operand row (32 TF32 or 64 BF16 values):
//  1. Producer (warpgroup 0, one thread): for slice k, waits until stage
//     k mod 4 is free (its `empty` barrier), announces 48 KiB on the stage's
//     `full` barrier, and issues two TMA copies: A's 128-row box and B^T's
//     256-row box. The TMA writes the 128-byte rows with the 128-byte
//     swizzle (16-byte chunk c of row r lands at chunk c ^ (r mod 8)), the
//     layout wgmma reads without bank conflicts; boxes past M, N or K are
//     filled with zeros, so tails need no special path.
//  2. Consumers (warpgroups 1 and 2, 64 rows of the tile each): wait on
//     `full`, issue four wgmmas of 32 bytes of K each (m64n256k8 TF32 or
//     m64n256k16 BF16: the smem descriptor's start address moves 32 bytes
//     inside the swizzle atom), and, once the previous slice's products are
//     done (at most one group in flight), arrive on that slice's `empty` so
//     the producer can refill.
//  3. Each consumer thread holds 128 accumulators (64 x 256 / 128 threads)
//     and writes C = alpha acc + beta C straight from registers.
//
// wgmma reads both operands K-major here (K contiguous), so C = A B runs as
// A [M][K] times (B^T) [N][K]. An operand the TMA cannot read in place (not
// K-major, a row stride that is not a multiple of 16 bytes, a base off 16
// bytes, or FP32 values for a BF16 kernel) is first packed K-major into
// stream-ordered scratch (pack_kmajor_kernel: one pass, 32 x 32 tiles
// through shared memory, converting as it goes). That pass is part of the
// measured time.
//
// Needs a build for sm_90a (meson's gpu_arch, default 90a: wgmma exists
// only there) and a compute capability 9.0 device with 193 KiB of shared
// memory per block; elsewhere each variant hands its calls to a fallback
// of the same precision (v5 for TF32, cuBLAS for BF16).
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/wgmma_rules.h"
#include "kernels/cuda/per_device.h"

namespace crfseg::kernels::cuda::wgmma {

// The 128 accumulators as inline-assembly operands (%0 .. %127) and their
// place-holder list, for the variants' wgmma instructions. Accumulator
// ownership (both types): wgmma_rules.h's accumulator_position.
#define CRFSEG_WGMMA_D8(i)                                                                                  \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define CRFSEG_WGMMA_D128                                                                                  \
  CRFSEG_WGMMA_D8(0), CRFSEG_WGMMA_D8(8), CRFSEG_WGMMA_D8(16), CRFSEG_WGMMA_D8(24), CRFSEG_WGMMA_D8(32),     \
      CRFSEG_WGMMA_D8(40), CRFSEG_WGMMA_D8(48), CRFSEG_WGMMA_D8(56), CRFSEG_WGMMA_D8(64), CRFSEG_WGMMA_D8(72), \
      CRFSEG_WGMMA_D8(80), CRFSEG_WGMMA_D8(88), CRFSEG_WGMMA_D8(96), CRFSEG_WGMMA_D8(104),                   \
      CRFSEG_WGMMA_D8(112), CRFSEG_WGMMA_D8(120)
#define CRFSEG_WGMMA_D128_LIST                                                                              \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                        \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                        \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "                        \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "                        \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "                        \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "            \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
               : "memory");
}
// Returns once the barrier's phase of the given parity has completed (a
// fresh barrier counts its phase "before 0", parity 1, as completed).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (done == 0);
}

// The TMA copy of the box at (inner, outer) = (k, row) into shared memory,
// completing `bytes` on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int inner, int outer, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
          "r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(smem_u32(bar))
      : "memory");
}

// The same copy delivered to every block of the cluster in cta_mask, at the
// same shared-memory offsets, completing on each block's barrier there.
__device__ __forceinline__ void tma_load_2d_multicast(void* dst, const CUtensorMap* map, int inner, int outer,
                                                      uint64_t* bar, uint32_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(smem_u32(bar)),
      "h"(static_cast<uint16_t>(cta_mask))
      : "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// Arrives on the barrier at bar's offset in the shared memory of cluster
// block `rank` (this block's own when rank is its rank).
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(smem_u32(bar)), "r"(rank));
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}

// All threads of every block in the cluster.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most kPending committed wgmma groups are still running.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accumulator reads or writes across the
// asynchronous wgmma (CUTLASS's warpgroup_fence_operand).
__device__ __forceinline__ void fence_accumulators(float (&d)[128]) {
#pragma unroll
  for (int i = 0; i < 128; ++i) asm volatile("" : "+f"(d[i])::"memory");
}


#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// One block per 128 x 256 tile of C; kCluster blocks (1 or 2) form a
// cluster along M that shares B's tile: each loads 256 / kCluster of its
// rows and the TMA multicasts them to every block of the cluster, so each
// block reads kCluster times less of B from L2. (At 4 bytes an operand, a
// lone block reads 48 KiB from L2 per 2.1 MFLOP TF32 slice: 11 TB/s across
// the chip at the H100's 495 TFLOP/s of dense TF32, more than its L2 gives;
// a pair reads 32 KiB per block and slice, 7.5 TB/s. A BF16 slice is twice
// as deep for the same bytes, at twice the rate: the same bandwidth.) A
// stage is then refilled only when the consumers of every block in the cluster are done with it, so each
// consumer warp arrives on the `empty` barrier of every block.
template <class Mma, int kCluster>
__global__ void __launch_bounds__(kThreads, 1)
gemm_wgmma_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b, int M, int N,
                  int K, float alpha, float beta, float* __restrict__ C, int64_t ldc, int tiles_m, int tiles_n) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BK = kRowBytes / Mma::kElemBytes;  // elements of K per slice: 32 TF32 or 64 BF16
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t full[kStages], empty[kStages];
  uint8_t* smem = smem_raw + (atom_aligned(smem_u32(smem_raw)) - smem_u32(smem_raw));
  const int wg = static_cast<int>(threadIdx.x) / 128, lane_wg = static_cast<int>(threadIdx.x) % 128;
  const TileIndex tile = tile_of(static_cast<int>(blockIdx.x), tiles_m, tiles_n);
  const int tm = tile.m, tn = tile.n;
  const int slices = (K + BK - 1) / BK;
  const uint32_t rank = kCluster > 1 ? cluster_rank() : 0;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], empty_arrivals(kCluster));  // one arrival per consumer warp of the cluster
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  // Every block's barriers exist before any block copies or arrives there.
  if constexpr (kCluster > 1) {
    cluster_sync();
  } else {
    __syncthreads();
  }

  if (wg == 0) {
    if (lane_wg == 0) {
      for (int k = 0; k < slices; ++k) {
        const int s = stage_of(k);
        mbar_wait(&empty[s], empty_parity(k));
        mbar_expect_tx(&full[s], kStageBytes);  // A, and all of B's rows: this block's and the others'
        uint8_t* stage = smem + s * kStageBytes;
        const Box a = a_box(tm), b = b_box(tn, static_cast<int>(rank), kCluster);
        tma_load_2d(stage + a.offset, &map_a, k * BK, static_cast<int>(a.first_row), &full[s]);
        if constexpr (kCluster > 1) {
          tma_load_2d_multicast(stage + b.offset, &map_b, k * BK, static_cast<int>(b.first_row), &full[s],
                                (1u << kCluster) - 1);
        } else {
          tma_load_2d(stage + b.offset, &map_b, k * BK, static_cast<int>(b.first_row), &full[s]);
        }
      }
    }
  } else {
    const int c = wg - 1;  // this consumer's 64 rows: c * 64 ..
    // Stage s is free for this warp: one arrival on its `empty` barrier in
    // every block of the cluster.
    auto release = [&](int s) {
      __syncwarp();
      if (lane_wg % 32 == 0) {
#pragma unroll
        for (int r = 0; r < kCluster; ++r) mbar_arrive_cluster(&empty[s], static_cast<uint32_t>(r));
      }
    };
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.0f;
    for (int k = 0; k < slices; ++k) {
      const int s = stage_of(k);
      mbar_wait(&full[s], full_parity(k));
      const uint32_t a = smem_u32(smem + s * kStageBytes + a_rows(c));
      const uint32_t b = smem_u32(smem + s * kStageBytes + kTileABytes);
      fence_accumulators(d);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kRowBytes / kStepBytes; ++kk) {
        Mma::mma(d, desc_sw128(a + kStepBytes * kk), desc_sw128(b + kStepBytes * kk));
      }
      wgmma_commit();
      // Keep this slice's products running while the last slice's stage
      // is handed back: once at most one group is pending, slice k - 1's
      // products have read their operands.
      wgmma_wait<1>();
      fence_accumulators(d);
      if (k > 0) release(stage_of(k - 1));
    }
    wgmma_wait<0>();
    fence_accumulators(d);
    if (slices > 0) release(stage_of(slices - 1));

    const AccPosition origin = accumulator_origin(lane_wg);
    const int64_t row0 = static_cast<int64_t>(tm) * BM + c * kConsumerRows + origin.row;
    const int64_t col0 = static_cast<int64_t>(tn) * BN + origin.col;
#pragma unroll
    for (int i = 0; i < 128; ++i) {
      const int64_t m = row0 + accumulator_step(i).row, n = col0 + accumulator_step(i).col;
      if (m >= M || n >= N) continue;
      float* out = C + m * ldc + n;
      *out = beta == 0.0f ? alpha * d[i] : alpha * d[i] + beta * *out;
    }
  }
  // No block leaves while another may still multicast into its shared
  // memory or arrive on its barriers.
  if constexpr (kCluster > 1) cluster_sync();
#endif
}


// dst[r * ldd + c] = X(r, c) for r < rows, c < cols, converted to TOut,
// where X is src (row-major, row stride ld) or, when `transposed`, src^T
// (X(r, c) = src[c * ld + r]). 32 x 32 tiles through shared memory (one
// column of padding against bank conflicts), so both the reads and the
// writes are coalesced either way. Grid: x over column tiles, y strides
// over row tiles (more than 65535 of them for a packed B^T with N past 2
// million).
template <typename TOut, typename Convert>
__global__ void pack_kmajor_kernel(int64_t rows, int64_t cols, const float* __restrict__ src, int64_t ld,
                                   bool transposed, TOut* __restrict__ dst, int64_t ldd, Convert convert) {
  __shared__ float tile[32][33];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32;
  const int x = static_cast<int>(threadIdx.x);
  for (int64_t r0 = static_cast<int64_t>(blockIdx.y) * 32; r0 < rows; r0 += static_cast<int64_t>(gridDim.y) * 32) {
    for (int y = static_cast<int>(threadIdx.y); y < 32; y += 8) {
      if (transposed) {
        const int64_t r = r0 + x, cc = c0 + y;
        if (r < rows && cc < cols) tile[x][y] = src[cc * ld + r];
      } else {
        const int64_t r = r0 + y, cc = c0 + x;
        if (r < rows && cc < cols) tile[y][x] = src[r * ld + cc];
      }
    }
    __syncthreads();
    for (int y = static_cast<int>(threadIdx.y); y < 32; y += 8) {
      const int64_t r = r0 + y, cc = c0 + x;
      if (r < rows && cc < cols) dst[r * ldd + cc] = convert(tile[y][x]);
    }
    __syncthreads();  // the tile is refilled for the next row block
  }
}

template <class Mma>
void pack_kmajor(const char* name, int64_t rows, int64_t cols, const float* src, int64_t ld, bool transposed,
                 typename Mma::Element* dst, int64_t ldd, Stream stream) {
  const int64_t gx = (cols + 31) / 32, gy = std::min<int64_t>((rows + 31) / 32, 65535);
  CRFSEG_CHECK(gx <= 0x7fffffff, NotImplementedError, "sgemm ", name, ": packing a ", rows, " x ", cols,
               " operand needs more than 2^31 column tiles");
  pack_kmajor_kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(32, 8), 0, stream>>>(
      rows, cols, src, ld, transposed, dst, ldd, typename Mma::Convert{});
  launch_check("sgemm wgmma: pack_kmajor");  // a fixed name: no string built per call
}

// cuTensorMapEncodeTiled is a driver function; the runtime hands out its
// address, so nothing links libcuda directly.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    CRFSEG_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                                       &found));
    if (found != cudaDriverEntryPointSuccess || p == nullptr) {
      throw CudaError("sgemm wgmma: the driver has no cuTensorMapEncodeTiled");
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// The TMA map of a K-major operand [rows][K] with row stride ld elements,
// read in boxes of box_rows x one 128-byte row with the 128-byte swizzle.
template <class Mma>
CUtensorMap kmajor_map(const char* name, const typename Mma::Element* base, int64_t rows, int64_t K, int64_t ld,
                       int box_rows, const char* which) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(ld) * Mma::kElemBytes};
  const cuuint32_t box[2] = {kRowBytes / Mma::kElemBytes, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t steps[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &map, Mma::kTmaType, 2, const_cast<typename Mma::Element*>(base), dims, strides, box, steps,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    throw CudaError(detail::concat_message("sgemm ", name, ": cuTensorMapEncodeTiled for ", which, " (", rows, " x ",
                                           K, ", row stride ", ld, " elements) failed with CUresult ",
                                           static_cast<int>(r)));
  }
  return map;
}

// True where the wgmma kernel <Mma, kCluster> can run on the current device:
// built for sm_90a, compute capability 9.0, enough shared memory per block.
// Raises the kernel's shared-memory limit once per device.
template <class Mma, int kCluster>
bool ready() {
#if defined(CRFSEG_CUDA_SM90A)
  return once_per_device([](int device) {
    int major = 0, minor = 0, optin = 0;
    CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    CRFSEG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const bool ok = major == 9 && minor == 0 && optin >= kSmemBytes + kBarrierBytes;
    if (ok) {
      CRFSEG_CUDA_CHECK(
          cudaFuncSetAttribute(gemm_wgmma_kernel<Mma, kCluster>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
    }
    return ok;
  });
#else
  return false;
#endif
}

// C = alpha A (B^T)^T + beta C on operands already of the kernel's type
// and K-major: A [M][K] with row stride la, B^T [N][K] with row stride lb
// (both multiples of 16 bytes, bases 16-byte aligned), 0 < M, N, K < 2^30,
// ready<Mma, kCluster>() true. One launch; no packing.
template <class Mma, int kCluster>
void run_kmajor(const char* name, int64_t M, int64_t N, int64_t K, float alpha, const typename Mma::Element* a,
                int64_t la, const typename Mma::Element* b, int64_t lb, float beta, float* C, int64_t ldc,
                Stream stream) {
  const CUtensorMap map_a = kmajor_map<Mma>(name, a, M, K, la, a_box(0).rows, "A");
  const CUtensorMap map_b = kmajor_map<Mma>(name, b, N, K, lb, b_box(0, 0, kCluster).rows, "B^T");
  const Grid grid = grid_of(M, N, kCluster);
  const int64_t tiles_m = grid.tiles_m, tiles_n = grid.tiles_n;
  CRFSEG_CHECK(tiles_m * tiles_n <= 0x7fffffff, NotImplementedError, "sgemm ", name, ": ", M, " x ", N,
               " needs more than 2^31 tiles");
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(tiles_m * tiles_n));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kSmemBytes;
  config.stream = stream;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = kCluster;
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  config.attrs = &cluster;
  config.numAttrs = 1;
  CRFSEG_CUDA_CHECK(cudaLaunchKernelEx(&config, gemm_wgmma_kernel<Mma, kCluster>, map_a, map_b,
                                       static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, beta,
                                       C, ldc, static_cast<int>(tiles_m), static_cast<int>(tiles_n)));
  launch_check(name);
}

// The variants' common body: row-major C = alpha op(A) op(B) + beta C with
// FP32 A, B and C (gemm.h's contract), through gemm_wgmma_kernel<Mma,
// kCluster>, or Mma::fallback where that cannot run.
template <class Mma, int kCluster>
void sgemm(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  using Element = typename Mma::Element;
  if (M == 0 || N == 0) return;
  constexpr int64_t kIntLimit = int64_t{1} << 30;
  if (K == 0 || M >= kIntLimit || N >= kIntLimit || K >= kIntLimit || !ready<Mma, kCluster>()) {
    Mma::fallback(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
    return;
  }
  // Operands the TMA cannot read in place (not K-major, rows off 16 bytes,
  // or not of the kernel's type) are packed K-major, rows padded to 16
  // bytes.
  constexpr bool kConvert = !std::is_same_v<Element, float>;
  constexpr int64_t kPer16 = 16 / Mma::kElemBytes;
  const bool pack_a = kConvert || ta || lda % kPer16 != 0 || !aligned16(A);
  const bool pack_b = kConvert || !tb || ldb % kPer16 != 0 || !aligned16(B);
  const int64_t ldp = (K + kPer16 - 1) / kPer16 * kPer16;
  const size_t a_elems = pack_a ? static_cast<size_t>(M * ldp) : 0;
  constexpr size_t kAlign = 256 / sizeof(Element);  // B's copy 256-byte aligned
  const size_t b_offset = (a_elems + kAlign - 1) / kAlign * kAlign;
  const size_t b_elems = pack_b ? static_cast<size_t>(N * ldp) : 0;
  void* scratch = nullptr;
  if (a_elems + b_elems > 0) {
    scratch = scratch_malloc((b_offset + b_elems) * sizeof(Element), stream, name);
  }
  try {
    // Without packing, Element is float (kConvert is false): A and B as given.
    const Element* a = reinterpret_cast<const Element*>(A);
    const Element* b = reinterpret_cast<const Element*>(B);
    int64_t la = lda, lb = ldb;
    if (pack_a) {
      auto* dst = static_cast<Element*>(scratch);
      pack_kmajor<Mma>(name, M, K, A, lda, ta, dst, ldp, stream);
      a = dst, la = ldp;
    }
    if (pack_b) {
      Element* dst = static_cast<Element*>(scratch) + b_offset;
      pack_kmajor<Mma>(name, N, K, B, ldb, !tb, dst, ldp, stream);
      b = dst, lb = ldp;
    }
    run_kmajor<Mma, kCluster>(name, M, N, K, alpha, a, la, b, lb, beta, C, ldc, stream);
  } catch (...) {
    if (scratch != nullptr) cudaFreeAsync(scratch, stream);  // best effort; the first error is the one to report
    throw;
  }
  if (scratch != nullptr) CRFSEG_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

}  // namespace crfseg::kernels::cuda::wgmma
