// Implicit-GEMM convolution: the three passes as GEMMs whose operand tiles
// are gathered straight from the tensors, with no im2col buffer in memory.
//
//   forward          y[n, k, pq]   = sum_{crs} W[k, crs] X[crs, (n, pq)]
//                    (M = K, N = N*P*Q, K = C*R*S; X gathered from x)
//   backward-input   dx[n, c, hw]  = sum_{k r s} W[k, c, r, s] G[(k, r, s), (n, h, w)]
//                    (M = C, N = N*H*W, K = K*R*S; G(k, r, s; n, h, w) =
//                    g[n, k, p, q] when h + ph - r dh = p sh and w + pw - s dw = q sw
//                    land on an output pixel, else 0)
//   backward-weight  dW[k, crs]    = sum_{(n, pq)} g[n, k, pq] X[crs, (n, pq)]
//                    (M = K, N = C*R*S, K = N*P*Q)
//
// Three kernels:
//  * float at fp32 or tf32 precision, every pass: v4/v8's tiled SGEMM
//    kernel (gemm/tiled.cuh), 128-column tiles 16 deep, 8 x 8 results a
//    thread, double-buffered, its operands gathered slice by slice
//    instead of written to memory and read back (GatherColumns: each
//    thread's four consecutive pixels of one im2col row, one
//    im2col_values call). The forward multiplies the
//    weights by the im2col matrix; the backward-input of stride-1
//    undilated layers is the forward of the flipped, transposed filters at
//    padding R-1-p (im2col_rules.h); the weight gradient multiplies the
//    output gradient by the im2col matrix's transpose, its long depth (N P
//    Q) split into chunks over blockIdx.z whose partial sums are added in
//    chunk order. On the H100 in session 42 the im2col and col2im kernels
//    took 95 ms of 476 in the profile of a U-Net step's kernels; this path
//    writes no columns at all.
//  * float at bf16 precision (gemm_precision(), as cuBLAS follows it on
//    the im2col path): the same loaders and epilogues on the tensor-core
//    form of that kernel (gemm/tiled_bf16.cuh: mma.sync m16n8k16 fed by
//    ldmatrix, the gathered values rounded to BF16 on their way into
//    shared memory, 32-deep slices). Written without a GPU (session 48).
//  * everything else (f64, a strided or dilated backward-input whose
//    windows overlap, planes past 32-bit indices): v2_smem_tile's scheme
//    at 64 x 64 x 8 tiles with a 4 x 4 register tile per thread (small
//    enough for f64), parameterised by two gather functors, a(m, k) and
//    b(k, n), and a store functor; six to three hundred times im2col +
//    cuBLAS's time on that H100 (bench_conv_cuda), so only a reference:
//    the ops run im2col's for such a float backward-input instead
//    (implicit_backward_input_tiled).
// The backward-input of layers whose windows do not overlap (the U-Net's
// up-convolutions' forwards) is one tiled GEMM, dx rows (c, r, s) by
// columns (image, p, q), each product scattered to its own pixel.
// Every gather is bounds-checked, so any geometry works; the sums run in a
// fixed order (chunks of a fixed split, no atomics), so results are
// deterministic.
// CRFSEG_CUDA_CONV=implicit selects this path, and the autotuner times it
// against the others (tensor/ops_conv.cpp).
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/gemm/tiled.cuh"
#include "kernels/cuda/gemm/tiled_bf16.cuh"
#include "kernels/cuda/im2col_rules.h"
#include "kernels/cuda/implicit_loaders.h"

namespace crfseg::kernels::cuda {

namespace {

using implicit::kDepthStep;
using implicit::tile_rows;

constexpr int BM = 64, BN = 64, BK = 8, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256

template <typename T, typename LoadA, typename LoadB, typename Store>
__global__ void __launch_bounds__(kThreads)
implicit_gemm_kernel(int64_t M, int64_t N, int64_t K, LoadA load_a, LoadB load_b, Store store) {
  __shared__ T As[BK][BM + 4];
  __shared__ T Bs[BK][BN];
  const int t = threadIdx.x;
  const int tr = t / (BN / TN), tc = t % (BN / TN);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  T acc[TM][TN] = {};
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int i = 0; i < (BM * BK) / kThreads; ++i) {
      const int e = t + i * kThreads;
      const int mm = e / BK, kk = e % BK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < M && k < K) ? load_a(m, k) : T(0);
    }
#pragma unroll
    for (int i = 0; i < (BN * BK) / kThreads; ++i) {
      const int e = t + i * kThreads;
      const int nn = e % BN, kk = e / BN;
      const int64_t n = n0 + nn, k = k0 + kk;
      Bs[kk][nn] = (n < N && k < K) ? load_b(k, n) : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][tr + i * (BM / TM)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tc + j * (BN / TN)];
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + tr + i * (BM / TM);
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tc + j * (BN / TN);
      if (n < N) store(m, n, acc[i][j]);
    }
  }
}

template <typename T, typename LoadA, typename LoadB, typename Store>
void implicit_gemm(int64_t M, int64_t N, int64_t K, LoadA a, LoadB b, Store s, Stream stream, const char* name) {
  if (M == 0 || N == 0) return;
  const int64_t gy = (M + BM - 1) / BM, gx = (N + BN - 1) / BN;
  CRFSEG_CHECK(gy <= 65535 && gx <= 0x7fffffff, NotImplementedError, name, ": a ", M, " x ", N,
               " output is too large for one grid");
  implicit_gemm_kernel<T><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), kThreads, 0, stream>>>(
      M, N, K, a, b, s);
  launch_check(name);
}

// X[crs, (n, pq)] of the forward and backward-weight: x at the tap's input
// pixel, 0 in the padding.
template <typename T>
struct GatherX {
  const T* x;
  ConvGeometry g;
  __device__ T operator()(int64_t crs, int64_t npq) const {
    const int64_t PQ = g.P * g.Q;
    const int64_t n = npq / PQ, pq = npq % PQ, p = pq / g.Q, q = pq % g.Q;
    const int64_t s = crs % g.S, r = (crs / g.S) % g.R, c = crs / (g.R * g.S);
    const int64_t h = p * g.sh - g.ph + r * g.dh, w = q * g.sw - g.pw + s * g.dw;
    return (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x[((n * g.C + c) * g.H + h) * g.W + w] : T(0);
  }
};


// with_tile_rows calls f with tile_rows(K) (implicit_loaders.h) as a
// compile-time constant.
template <typename F>
void with_tile_rows(int64_t K, F f) {
  if (tile_rows(K) == 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    f(std::integral_constant<int, 128>{});
  }
}

// The tiled product M x N (tiles of kTileM x kTileN) on the tensor cores
// (tiled_bf16.cuh) when the GEMMs' precision is bf16 (gemm_precision(), as
// the im2col path's cuBLAS calls follow it), else on the FP32 kernel
// (tiled.cuh); the precision is read once, for the kernel and its slices.
// The depth runs in `chunks` chunks of `chunk`, a multiple of both
// kernels' slice depths, one per blockIdx.z; chunks = 0: one chunk of the
// whole depth in whole slices of the kernel that runs.
template <int kTileM, class LoadA, class LoadB, class Out>
void launch_tiles(const LoadA& a, const LoadB& b, const Out& out, int64_t M, int64_t N, int64_t depth, int64_t chunk,
                  int64_t chunks, Stream stream, const char* name) {
  const bool tensor_cores = gemm_precision() == GemmPrecision::bf16;
  if (chunks == 0) {
    chunk = tiled::whole_slices(depth, tensor_cores ? tiled::kBf16Depth : kDepthStep);
    chunks = 1;
  }
  const int64_t gy = (M + kTileM - 1) / kTileM, gx = (N + tiled::kTileN - 1) / tiled::kTileN;
  CRFSEG_CHECK(gy <= 65535 && gx <= 0x7fffffff && chunks <= 65535, NotImplementedError, name, ": a ", M, " x ", N,
               " product in ", chunks, " chunks is too large for one grid");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(chunks));
  if (tensor_cores) {
    tiled::gemm_tile_bf16_kernel<LoadA, LoadB, Out, kTileM><<<grid, tiled::kThreads, 0, stream>>>(a, b, out, depth,
                                                                                                  chunk);
  } else {
    tiled::gemm_tile_kernel<LoadA, LoadB, Out, kTileM, kDepthStep><<<grid, tiled::kThreads, 0, stream>>>(a, b, out,
                                                                                                       depth, chunk);
  }
  launch_check(name);
}

// The float forward on the tiled kernel: M = K output channels in tiles of
// tile_rows(K), N = N P Q pixels, depth C R S.
template <int kTileM>
void tiled_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y, Stream stream,
                   const char* name) {
  if (g.K == 0 || g.N * g.pq() == 0) return;
  const implicit::ForwardPass p = implicit::forward_pass(g, x, w, bias, y, name);
  launch_tiles<kTileM>(p.a, p.b, p.out, p.M, p.N, p.depth, 0, 0, stream, name);
}

void tiled_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y, Stream stream,
                   const char* name) {
  with_tile_rows(g.K, [&](auto rows) { tiled_forward<decltype(rows)::value>(g, x, w, bias, y, stream, name); });
}

bool tiled_weight_grad_applies(const ConvGeometry& g) { return fits_32bit_indices(g); }

// dW [K, C R S] = G [K, N P Q] X^T: A the output gradient, B the im2col
// matrix with its pixels along the depth, in chunks of the depth whose
// partial sums `work` holds, added in chunk order.
template <int kTileM>
void tiled_weight_grad(const ConvGeometry& g, const float* grad, const float* x, float* dw, float* work,
                       Stream stream, const char* name) {
  if (g.K == 0 || g.crs() == 0) return;
  const implicit::WeightGradSplit split = implicit::weight_grad_split(g);
  const implicit::WeightGradPass p = implicit::weight_grad_pass(g, grad, x, split.chunks > 1 ? work : dw, name);
  launch_tiles<kTileM>(p.a, p.b, p.out, p.M, p.N, p.depth, split.chunk, split.chunks, stream, name);
  if (split.chunks > 1) {
    const int64_t n = g.K * g.crs(), chunks = split.chunks;
    for_each(n, [=] __device__(int64_t i) {
      float acc = 0.0f;
      for (int64_t z = 0; z < chunks; ++z) acc += work[z * n + i];
      dw[i] = acc;
    }, stream, "conv2d_backward_weight_implicit: sum chunks");
  }
}

// The backward-input of a layer whose windows do not overlap (stride at
// least the kernel, no padding: the U-Net's up-convolutions' forwards) on
// the tiled kernel: dx [rows (c, r, s), columns (image, p, q)] = W^T G,
// M = C R S, N = N P Q, depth K, each product scattered to its own pixel;
// G is read as a 1x1 convolution's im2col matrix. Pixels no window reaches
// are zeroed first.
template <int kTileM>
void tiled_backward_input_scatter(const ConvGeometry& g, const float* grad, const float* w, float* dx, Stream stream,
                                  const char* name) {
  if (!scatter_covers(g) || g.K == 0) {  // (no output channels: every product is 0)
    for_each(g.N * g.C * g.hw(), [=] __device__(int64_t i) { dx[i] = 0.0f; }, stream, name);
  }
  if (g.crs() == 0 || g.N * g.pq() == 0 || g.K == 0) return;
  const implicit::ScatterPass p = implicit::scatter_pass(g, grad, w, dx, name);
  launch_tiles<kTileM>(p.a, p.b, p.out, p.M, p.N, p.depth, 0, 0, stream, name);
}

}  // namespace

bool implicit_backward_input_tiled(const ConvGeometry& g) {
  return backward_input_as_forward(g) || backward_input_as_scatter(g);
}

template <typename T>
int64_t implicit_backward_input_workspace(const ConvGeometry& g) {
  return std::is_same_v<T, float> && backward_input_as_forward(g) ? g.K * g.crs() : 0;
}

template <typename T>
int64_t implicit_backward_weight_workspace(const ConvGeometry& g) {
  if (!std::is_same_v<T, float> || !tiled_weight_grad_applies(g)) return 0;
  const implicit::WeightGradSplit split = implicit::weight_grad_split(g);
  return split.chunks > 1 ? split.chunks * g.K * g.crs() : 0;
}

template <typename T>
void conv2d_forward_implicit(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (fits_32bit_indices(g)) {  // (planes of 2^30 pixels and more: the generic kernel below)
      tiled_forward(g, x, w, bias, y, stream, "conv2d_forward_implicit");
      return;
    }
  }
  const int64_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q, Kout = g.K;
  auto load_w = [=] __device__(int64_t k, int64_t crs) { return w[k * CRS + crs]; };
  auto store = [=] __device__(int64_t k, int64_t npq, T v) {
    y[((npq / PQ) * Kout + k) * PQ + npq % PQ] = bias != nullptr ? v + bias[k] : v;
  };
  implicit_gemm<T>(g.K, g.N * PQ, CRS, load_w, GatherX<T>{x, g}, store, stream, "conv2d_forward_implicit");
}

template <typename T>
void conv2d_backward_input_implicit(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* work,
                                    Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (backward_input_as_forward(g)) {
      // dx = the forward of g's output gradient through W' [C, K, R, S]
      // (W flipped and transposed, written to work) at padding R-1-p.
      flip_filters<float>(g, w, work, stream);
      tiled_forward(backward_input_forward_geometry(g), grad, work, nullptr, dx, stream,
                    "conv2d_backward_input_implicit");
      return;
    }
    if (backward_input_as_scatter(g)) {
      with_tile_rows(g.crs(), [&](auto rows) {
        tiled_backward_input_scatter<decltype(rows)::value>(g, grad, w, dx, stream, "conv2d_backward_input_implicit");
      });
      return;
    }
  }
  const ConvGeometry c = g;
  const int64_t RS = g.R * g.S, HW = g.H * g.W, C = g.C;
  // A[c, (k, r, s)] = W[k, c, r, s]
  auto load_w = [=] __device__(int64_t ch, int64_t krs) {
    const int64_t k = krs / RS, rs = krs % RS;
    return w[(k * C + ch) * RS + rs];
  };
  // B[(k, r, s), (n, h, w)] = g[n, k, p, q] where the tap (r, s) of output (p, q) reads (h, w).
  auto load_g = [=] __device__(int64_t krs, int64_t nhw) {
    const int64_t k = krs / RS, r = (krs % RS) / c.S, s = krs % c.S;
    const int64_t n = nhw / HW, h = (nhw % HW) / c.W, wv = nhw % c.W;
    const int64_t ph = h + c.ph - r * c.dh, qw = wv + c.pw - s * c.dw;
    if (ph < 0 || qw < 0 || ph % c.sh != 0 || qw % c.sw != 0) return T(0);
    const int64_t p = ph / c.sh, q = qw / c.sw;
    if (p >= c.P || q >= c.Q) return T(0);
    return grad[((n * c.K + k) * c.P + p) * c.Q + q];
  };
  auto store = [=] __device__(int64_t ch, int64_t nhw, T v) { dx[((nhw / HW) * C + ch) * HW + nhw % HW] = v; };
  implicit_gemm<T>(g.C, g.N * HW, g.K * RS, load_w, load_g, store, stream, "conv2d_backward_input_implicit");
}

template <typename T>
void conv2d_backward_weight_implicit(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* work,
                                     Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (tiled_weight_grad_applies(g)) {
      with_tile_rows(g.K, [&](auto rows) {
        tiled_weight_grad<decltype(rows)::value>(g, grad, x, dw, work, stream, "conv2d_backward_weight_implicit");
      });
      return;
    }
  }
  const int64_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q, Kout = g.K;
  // A[k, (n, pq)] = g[n, k, pq];  B[(n, pq), crs] = X[crs, (n, pq)]
  auto load_g = [=] __device__(int64_t k, int64_t npq) { return grad[((npq / PQ) * Kout + k) * PQ + npq % PQ]; };
  const GatherX<T> gx{x, g};
  auto load_x = [=] __device__(int64_t npq, int64_t crs) { return gx(crs, npq); };
  auto store = [=] __device__(int64_t k, int64_t crs, T v) { dw[k * CRS + crs] = v; };
  // With no pixels (N = 0) the K loop runs zero times and dW is stored as 0.
  implicit_gemm<T>(g.K, CRS, g.N * PQ, load_g, load_x, store, stream, "conv2d_backward_weight_implicit");
}

#define CRFSEG_CONV_IMPLICIT(T)                                                                                  \
  template void conv2d_forward_implicit<T>(const ConvGeometry&, const T*, const T*, const T*, T*, Stream);      \
  template int64_t implicit_backward_input_workspace<T>(const ConvGeometry&);                                     \
  template void conv2d_backward_input_implicit<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);     \
  template int64_t implicit_backward_weight_workspace<T>(const ConvGeometry&);                                    \
  template void conv2d_backward_weight_implicit<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);
CRFSEG_CONV_IMPLICIT(float)
CRFSEG_CONV_IMPLICIT(double)
#undef CRFSEG_CONV_IMPLICIT

}  // namespace crfseg::kernels::cuda
