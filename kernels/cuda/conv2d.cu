// CUDA convolution by im2col + GEMM (see conv2d.h).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"

namespace crfseg::kernels::cuda {

namespace {

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, Stream stream) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  } else {
    dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  }
}

std::atomic<int> g_conv_algorithm{-1};  // -1: not chosen yet (read CRFSEG_CUDA_CONV)

}  // namespace

ConvAlgorithm conv_algorithm() {
  int a = g_conv_algorithm.load();
  if (a < 0) {
    const char* env = std::getenv("CRFSEG_CUDA_CONV");
    const std::string v = env == nullptr ? "" : env;
    CRFSEG_CHECK(v.empty() || v == "im2col" || v == "implicit", ValueError,
                 "CRFSEG_CUDA_CONV: expected im2col or implicit, got '", v, "'");
    int expected = -1;
    g_conv_algorithm.compare_exchange_strong(
        expected, static_cast<int>(v == "implicit" ? ConvAlgorithm::implicit_gemm : ConvAlgorithm::im2col));
    a = g_conv_algorithm.load();
  }
  return static_cast<ConvAlgorithm>(a);
}
ConvAlgorithm set_conv_algorithm(ConvAlgorithm algorithm) {
  const ConvAlgorithm previous = conv_algorithm();
  g_conv_algorithm.store(static_cast<int>(algorithm));
  return previous;
}

// Both data movements index within one image in 32 bits, and split the
// column-matrix row (c, r, s) or the channel once per block row instead of
// per element: the first version did six 64-bit divisions per element, and
// its im2col took 35% of a U-Net training step's GPU time on an H200 (ncu;
// bench/NOTES.md, change 27).
namespace {

constexpr int kMoveThreads = 256;

// The sizes the im2col / col2im kernels index with, narrowed to 32 bits
// once on the host (narrow checks that they, and what the kernels compute
// from them, fit).
struct Geometry32 {
  int64_t C;  // channels stay 64-bit: the kernels' outer loops stride over them
  int H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw;
};

// 2^30: the grid-stride loops' int counters may step up to 2^18 past the end.
// The kernels' other int values (h = p sh + r dh - ph, hp = h + ph - r dh,
// r S + s, and each field) stay within H + 2 ph, W + 2 pw, R S and the
// strides and dilations, which are bounded too, for a geometry whose
// output size follows from the rest (checked first: im2col and col2im are
// callable without the ops' own checks).
Geometry32 narrow(const ConvGeometry& g, const char* what) {
  constexpr int64_t kLimit = int64_t{1} << 30;
  // (Empty outputs and kernels pass: the callers return before any launch.)
  const bool rows_follow = g.P == 0 || g.R == 0 || (g.P - 1) * g.sh + (g.R - 1) * g.dh < g.H + 2 * g.ph;
  const bool cols_follow = g.Q == 0 || g.S == 0 || (g.Q - 1) * g.sw + (g.S - 1) * g.dw < g.W + 2 * g.pw;
  CRFSEG_CHECK(g.ph >= 0 && g.pw >= 0 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && g.P >= 0 && g.Q >= 0 &&
                   g.R >= 0 && g.S >= 0 && rows_follow && cols_follow,
               ValueError, what, ": expected padding >= 0, stride and dilation >= 1 and a ", g.P, "x", g.Q,
               " output that a ", g.R, "x", g.S, " kernel with stride ", g.sh, "x", g.sw, ", padding ", g.ph, "x",
               g.pw, " and dilation ", g.dh, "x", g.dw, " can produce from ", g.H, "x", g.W, " inputs");
  CRFSEG_CHECK(g.pq() < kLimit && g.hw() < kLimit, NotImplementedError, what, ": a plane of ", g.hw(),
               " inputs or ", g.pq(), " outputs does not fit 32-bit indices");
  CRFSEG_CHECK(g.H + 2 * g.ph < kLimit && g.W + 2 * g.pw < kLimit && g.R * g.S < kLimit && g.sh < kLimit &&
                   g.sw < kLimit && g.dh < kLimit && g.dw < kLimit,
               NotImplementedError, what, ": a ", g.R, "x", g.S, " kernel, stride ", g.sh, "x", g.sw, ", padding ",
               g.ph, "x", g.pw, ", dilation ", g.dh, "x", g.dw, " on ", g.H, "x", g.W,
               " inputs does not fit 32-bit indices");
  const auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {g.C,       i32(g.H),  i32(g.W),  i32(g.P),  i32(g.Q),  i32(g.R), i32(g.S),
          i32(g.sh), i32(g.sw), i32(g.ph), i32(g.pw), i32(g.dh), i32(g.dw)};
}

// Grid: x over the P Q outputs of a row, y over the C R S rows (strided when
// there are more than 65535).
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, Geometry32 g) {
  const int PQ = g.P * g.Q;
  const int64_t rows = g.C * g.R * g.S;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int s = static_cast<int>(row % g.S), r = static_cast<int>((row / g.S) % g.R);
    const T* xc = x + row / (g.R * g.S) * g.H * g.W;  // R S < 2^30 (narrow)
    T* out = col + row * PQ;
    const int h0 = r * g.dh - g.ph, w0 = s * g.dw - g.pw;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < PQ; i += gridDim.x * blockDim.x) {
      const int p = i / g.Q, q = i - p * g.Q;
      const int h = p * g.sh + h0, w = q * g.sw + w0;
      const bool inside = static_cast<unsigned>(h) < static_cast<unsigned>(g.H) &&  // h >= 0 too
                          static_cast<unsigned>(w) < static_cast<unsigned>(g.W);
      out[i] = inside ? xc[h * g.W + w] : T(0);
    }
  }
}

// Grid: x over the H W inputs of a channel, y over the channels. Tap (r, s)
// reads (h, w) from output (p, q) when h = p sh - ph + r dh, i.e.
// p = (h + ph - r dh) / sh exactly; likewise q.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, T* __restrict__ x, Geometry32 g) {
  const int HW = g.H * g.W;
  const int64_t PQ = static_cast<int64_t>(g.P) * g.Q;
  for (int64_t ch = blockIdx.y; ch < g.C; ch += gridDim.y) {
    const T* cc = col + ch * g.R * g.S * PQ;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
      const int h = i / g.W, w = i - h * g.W;
      T acc = T(0);
      for (int r = 0; r < g.R; ++r) {
        const int hp = h + g.ph - r * g.dh;
        if (hp < 0 || hp % g.sh != 0 || hp / g.sh >= g.P) continue;
        const int p = hp / g.sh;
        for (int s = 0; s < g.S; ++s) {
          const int wq = w + g.pw - s * g.dw;
          if (wq < 0 || wq % g.sw != 0 || wq / g.sw >= g.Q) continue;
          acc += cc[(r * g.S + s) * PQ + p * g.Q + wq / g.sw];
        }
      }
      x[ch * HW + i] = acc;
    }
  }
}

dim3 move_grid(int64_t per_row, int64_t rows) {
  const int64_t bx = std::min<int64_t>((per_row + kMoveThreads - 1) / kMoveThreads, 1024);
  return dim3(static_cast<unsigned>(std::max<int64_t>(bx, 1)),
              static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535)));
}

}  // namespace

template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col, Stream stream) {
  const Geometry32 g32 = narrow(g, "im2col");
  if (g.crs() == 0 || g.pq() == 0) return;
  im2col_kernel<T><<<move_grid(g.pq(), g.crs()), kMoveThreads, 0, stream>>>(x, col, g32);
  launch_check("im2col");
}

template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* x, Stream stream) {
  const Geometry32 g32 = narrow(g, "col2im");
  if (g.C == 0 || g.hw() == 0) return;
  col2im_kernel<T><<<move_grid(g.hw(), g.C), kMoveThreads, 0, stream>>>(col, x, g32);
  launch_check("col2im");
}

template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* xn = x + n * g.C * g.hw();
    T* yn = y + n * g.K * g.pq();
    if (g.is_pointwise()) {  // x_n is already the [C, PQ] column matrix
      gemm<T>(false, false, g.K, g.pq(), g.C, T(1), w, g.C, xn, g.pq(), T(0), yn, g.pq(), stream);
    } else {
      im2col<T>(g, xn, col, stream);
      gemm<T>(false, false, g.K, g.pq(), g.crs(), T(1), w, g.crs(), col, g.pq(), T(0), yn, g.pq(), stream);
    }
  }
  if (bias != nullptr) {
    const int64_t K = g.K, PQ = g.pq();
    for_each(g.N * K * PQ, [=] __device__(int64_t i) { y[i] += bias[(i / PQ) % K]; }, stream, "conv2d_bias");
  }
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* gn = grad + n * g.K * g.pq();
    T* dxn = dx + n * g.C * g.hw();
    if (g.is_pointwise()) {
      gemm<T>(true, false, g.C, g.pq(), g.K, T(1), w, g.C, gn, g.pq(), T(0), dxn, g.pq(), stream);
    } else {
      gemm<T>(true, false, g.crs(), g.pq(), g.K, T(1), w, g.crs(), gn, g.pq(), T(0), col, g.pq(), stream);
      col2im<T>(g, col, dxn, stream);
    }
  }
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* col, Stream stream) {
  for (int64_t n = 0; n < g.N; ++n) {
    const T* gn = grad + n * g.K * g.pq();
    const T* xn = x + n * g.C * g.hw();
    const T beta = n == 0 ? T(0) : T(1);  // the first image overwrites dw (it may hold garbage)
    if (g.is_pointwise()) {
      gemm<T>(false, true, g.K, g.C, g.pq(), T(1), gn, g.pq(), xn, g.pq(), beta, dw, g.C, stream);
    } else {
      im2col<T>(g, xn, col, stream);
      gemm<T>(false, true, g.K, g.crs(), g.pq(), T(1), gn, g.pq(), col, g.pq(), beta, dw, g.crs(), stream);
    }
  }
  if (g.N == 0) {
    const int64_t n = g.K * g.crs();
    for_each(n, [=] __device__(int64_t i) { dw[i] = T(0); }, stream, "conv2d_backward_weight_zero");
  }
}

#define CRFSEG_CONV(T)                                                                                    \
  template void im2col<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void col2im<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void conv2d_forward<T>(const ConvGeometry&, const T*, const T*, const T*, T*, T*, Stream);    \
  template void conv2d_backward_input<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);       \
  template void conv2d_backward_weight<T>(const ConvGeometry&, const T*, const T*, T*, T*, Stream);
CRFSEG_CONV(float)
CRFSEG_CONV(double)
#undef CRFSEG_CONV

}  // namespace crfseg::kernels::cuda
