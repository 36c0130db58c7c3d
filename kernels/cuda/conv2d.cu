// CUDA convolution by im2col + GEMM (see conv2d.h).
//
// With BF16 GEMM inputs (MatmulPrecision::bf16 and the cuBLAS SGEMM) the
// float forward and weight gradient write their columns in BF16 directly
// (im2col_bf16_kernel), half the bytes, and hand them to the GEMM as they
// are: otherwise the GEMM would round an FP32 copy of them, one more pass
// over the largest array of the step.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/gemm/gemm.h"
#include "kernels/cuda/im2col_rules.h"

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

// An image group's GEMMs: C_i [M, N] = op(W) B_i, the weights W shared
// (batch stride 0), B_i and C_i row-major without padding.
template <typename T>
void gemm_shared_a(bool trans_a, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                   int64_t stride_b, T* C, int64_t stride_c, int64_t batch, Stream stream) {
  gemm_strided_batched<T>(trans_a, false, M, N, K, T(1), A, lda, 0, B, N, stride_b, T(0), C, N, stride_c, batch,
                          stream);
}

std::atomic<int> g_conv_algorithm{-1};  // -1: not chosen yet (read CRFSEG_CUDA_CONV)
std::atomic<int> g_flipped_backward_input{-1};  // -1: not read yet (CRFSEG_CUDA_CONV_FLIP)
std::atomic<int64_t> g_workspace_limit{int64_t{1} << 26};

}  // namespace

const char* conv_algorithm_name(ConvAlgorithm algorithm) {
  switch (algorithm) {
    case ConvAlgorithm::im2col: return "im2col";
    case ConvAlgorithm::implicit_gemm: return "implicit";
    case ConvAlgorithm::winograd: return "winograd";
    case ConvAlgorithm::winograd4: return "winograd4";
    case ConvAlgorithm::autotune: return "auto";
  }
  return "?";
}

ConvAlgorithm conv_algorithm() {
  int a = g_conv_algorithm.load();
  if (a < 0) {
    const char* env = std::getenv("CRFSEG_CUDA_CONV");
    const std::string v = env == nullptr ? "" : env;
    int chosen = v.empty() ? static_cast<int>(ConvAlgorithm::im2col) : -1;
    for (const ConvAlgorithm c : kConvAlgorithms) {
      if (v == conv_algorithm_name(c)) chosen = static_cast<int>(c);
    }
    if (v == conv_algorithm_name(ConvAlgorithm::autotune)) chosen = static_cast<int>(ConvAlgorithm::autotune);
    CRFSEG_CHECK(chosen >= 0, ValueError,
                 "CRFSEG_CUDA_CONV: expected im2col, implicit, winograd, winograd4 or auto, got '", v, "'");
    int expected = -1;
    g_conv_algorithm.compare_exchange_strong(expected, chosen);
    a = g_conv_algorithm.load();
  }
  return static_cast<ConvAlgorithm>(a);
}
ConvAlgorithm set_conv_algorithm(ConvAlgorithm algorithm) {
  const ConvAlgorithm previous = conv_algorithm();
  g_conv_algorithm.store(static_cast<int>(algorithm));
  return previous;
}

bool conv_flipped_backward_input() {
  int on = g_flipped_backward_input.load();
  if (on < 0) {
    const char* env = std::getenv("CRFSEG_CUDA_CONV_FLIP");
    const std::string v = env == nullptr ? "" : env;
    CRFSEG_CHECK(v.empty() || v == "0" || v == "1", ValueError, "CRFSEG_CUDA_CONV_FLIP: expected 0 or 1, got '", v,
                 "'");
    int expected = -1;
    g_flipped_backward_input.compare_exchange_strong(expected, v == "1" ? 1 : 0);
    on = g_flipped_backward_input.load();
  }
  return on == 1;
}
bool set_conv_flipped_backward_input(bool on) {
  const bool previous = conv_flipped_backward_input();
  g_flipped_backward_input.store(on ? 1 : 0);
  return previous;
}

int64_t conv_workspace_limit() { return g_workspace_limit.load(); }
int64_t set_conv_workspace_limit(int64_t elems) {
  CRFSEG_CHECK(elems >= 1, ValueError, "set_conv_workspace_limit: expected at least 1 element, got ", elems);
  return g_workspace_limit.exchange(elems);
}

int64_t conv_images_within_limit(int64_t per_image, int64_t N) {
  return std::clamp<int64_t>(conv_workspace_limit() / per_image, 1, std::max<int64_t>(N, 1));
}

int64_t conv_weight_grad_images(const ConvGeometry& g) {
  if (g.N <= 1 || g.pq() >= 4096) return 1;
  const int64_t per_image = ((g.is_pointwise() ? g.C : g.crs()) + g.K) * g.pq();  // in a group of several
  if (per_image == 0) return 1;
  return conv_images_within_limit(per_image, g.N);
}

int64_t conv_group_images(const ConvGeometry& g) {
  if (g.N <= 1) return 1;
  const int64_t per_image = g.crs() * g.pq();
  if (g.is_pointwise() || per_image == 0) return g.N;  // no columns: the GEMM reads x
  return conv_images_within_limit(per_image, g.N);
}

int64_t conv_checked_group(const ConvGeometry& g, int64_t images, const char* op) {
  CRFSEG_CHECK(images >= 1, ValueError, op, ": expected a group of at least 1 image, got ", images);
  return std::min(images, std::max<int64_t>(g.N, 1));
}

// Both data movements index within one image in 32 bits (Geometry32 and
// the per-element rules: im2col_rules.h), and split the column-matrix row
// (c, r, s) or the channel once per block row instead of per element.
namespace {

constexpr int kMoveThreads = 256;

// Grid: x over the P Q outputs of a row, y over the C R S rows (strided when
// there are more than 65535).
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, Geometry32 g, ColumnPlacement place) {
  const int PQ = g.P * g.Q;
  const int64_t rows = g.C * g.R * g.S;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const ColumnRow cr = column_row(row, g);
    const T* xc = x + cr.c * g.H * g.W;
    T* out = col + place.offset(row);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < PQ; i += gridDim.x * blockDim.x)
      im2col_values(xc, g, cr.r, cr.s, i, 1, out + i);
  }
}

// As im2col_kernel, four consecutive outputs per thread stored as one
// 16-byte vector, for a P Q that is a multiple of 4, a 16-byte aligned col
// and placement strides that are multiples of 4 (every row then starts
// aligned): a quarter of the divisions and store instructions, and four
// loads in flight per thread.
__global__ void im2col4_kernel(const float* __restrict__ x, float* __restrict__ col, Geometry32 g,
                               ColumnPlacement place) {
  const int quads = g.P * g.Q / 4;
  const int64_t rows = g.C * g.R * g.S;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const ColumnRow cr = column_row(row, g);
    const float* xc = x + cr.c * g.H * g.W;
    float4* out = reinterpret_cast<float4*>(col + place.offset(row));
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < quads; v += gridDim.x * blockDim.x) {
      float e[4];
      im2col_values(xc, g, cr.r, cr.s, 4 * v, 4, e);
      out[v] = make_float4(e[0], e[1], e[2], e[3]);
    }
  }
}

// As im2col_kernel for float input, the columns stored as BF16 bit patterns
// (rounded to nearest even).
__global__ void im2col_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ col, Geometry32 g,
                                   ColumnPlacement place) {
  const int PQ = g.P * g.Q;
  const int64_t rows = g.C * g.R * g.S;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const ColumnRow cr = column_row(row, g);
    const float* xc = x + cr.c * g.H * g.W;
    uint16_t* out = col + place.offset(row);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < PQ; i += gridDim.x * blockDim.x) {
      float v;
      im2col_values(xc, g, cr.r, cr.s, i, 1, &v);
      out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
  }
}

// Grid: x over the H W inputs of a channel, y over the channels; each
// input gathers its column entries (col2im_value).
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, T* __restrict__ x, Geometry32 g) {
  const int HW = g.H * g.W;
  const int64_t PQ = static_cast<int64_t>(g.P) * g.Q;
  for (int64_t ch = blockIdx.y; ch < g.C; ch += gridDim.y) {
    const T* cc = col + ch * g.R * g.S * PQ;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
      const int h = i / g.W;
      x[ch * HW + i] = col2im_value(cc, g, h, i - h * g.W);
    }
  }
}

dim3 move_grid(int64_t per_row, int64_t rows) {
  const int64_t bx = std::min<int64_t>((per_row + kMoveThreads - 1) / kMoveThreads, 1024);
  return dim3(static_cast<unsigned>(std::max<int64_t>(bx, 1)),
              static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535)));
}

}  // namespace

namespace {

// im2col of g's C channels (an image, or a block of images' channels) with
// the rows placed as `place` says.
template <typename T>
void im2col_placed(const ConvGeometry& g, const T* x, T* col, ColumnPlacement place, Stream stream) {
  const Geometry32 g32 = narrow(g, "im2col");
  if (g.crs() == 0 || g.pq() == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (g.pq() % 4 == 0 && place.image_stride % 4 == 0 && place.row_stride % 4 == 0 &&
        reinterpret_cast<uintptr_t>(col) % 16 == 0) {
      im2col4_kernel<<<move_grid(g.pq() / 4, g.crs()), kMoveThreads, 0, stream>>>(x, col, g32, place);
      launch_check("im2col");
      return;
    }
  }
  im2col_kernel<T><<<move_grid(g.pq(), g.crs()), kMoveThreads, 0, stream>>>(x, col, g32, place);
  launch_check("im2col");
}

// The same into BF16 columns (im2col_bf16_kernel).
void im2col_placed_bf16(const ConvGeometry& g, const float* x, uint16_t* col, ColumnPlacement place, Stream stream) {
  const Geometry32 g32 = narrow(g, "im2col");
  if (g.crs() == 0 || g.pq() == 0) return;
  im2col_bf16_kernel<<<move_grid(g.pq(), g.crs()), kMoveThreads, 0, stream>>>(x, col, g32, place);
  launch_check("im2col (bf16)");
}

// The plain [C R S, P Q] column matrix: row after row (im2col's placement).
ColumnPlacement consecutive_rows(const ConvGeometry& g) {
  return ColumnPlacement{std::max<int64_t>(g.crs(), 1), g.crs() * g.pq(), g.pq()};
}

// Whether a float convolution's columns go to the GEMM in BF16 (see the top).
template <typename T>
bool bf16_columns() {
  return std::is_same_v<T, float> && sgemm_takes_bf16();
}

}  // namespace

template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col, Stream stream) {
  im2col_placed(g, x, col, consecutive_rows(g), stream);
}

template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* x, Stream stream) {
  const Geometry32 g32 = narrow(g, "col2im");
  if (g.C == 0 || g.hw() == 0) return;
  col2im_kernel<T><<<move_grid(g.hw(), g.C), kMoveThreads, 0, stream>>>(col, x, g32);
  launch_check("col2im");
}

// dst [channels, images, plane] = src [images, channels, plane]: a block
// of images' planes regrouped channel by channel.
template <typename T>
void transpose_images(const T* src, T* dst, int64_t images, int64_t channels, int64_t plane, Stream stream) {
  const int64_t per_channel = images * plane;  // one channel's row of the result
  for_each(images * channels * plane, [=] __device__(int64_t o) {
    dst[o] = src[regrouped_source(o, per_channel, channels, plane)];
  }, stream, "conv2d_transpose_images");
}


template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* col, int64_t images_in,
                    Stream stream) {
  const int64_t group = conv_checked_group(g, images_in, "conv2d_forward");
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n);
    const T* xn = x + n * g.C * g.hw();
    T* yn = y + n * g.K * g.pq();
    if (g.is_pointwise()) {  // x_n is already the [C, PQ] column matrix
      gemm_shared_a<T>(false, g.K, g.pq(), g.C, w, g.C, xn, g.C * g.hw(), yn, g.K * g.pq(), images, stream);
    } else {
      // The images' channels in a row are one [images C, H, W] block, whose
      // columns are the images' [CRS, PQ] column matrices one after another.
      ConvGeometry block = g;
      block.C = images * g.C;
      if constexpr (std::is_same_v<T, float>) {
        if (bf16_columns<T>()) {  // the columns in BF16, in the first half of the workspace
          auto* col16 = reinterpret_cast<uint16_t*>(col);
          im2col_placed_bf16(block, xn, col16, consecutive_rows(block), stream);
          sgemm_strided_batched_b16(false, false, g.K, g.pq(), g.crs(), 1.0f, w, g.crs(), 0, col16, g.pq(),
                                    g.crs() * g.pq(), 0.0f, yn, g.pq(), g.K * g.pq(), images, stream);
          continue;
        }
      }
      im2col<T>(block, xn, col, stream);
      gemm_shared_a<T>(false, g.K, g.pq(), g.crs(), w, g.crs(), col, g.crs() * g.pq(), yn, g.K * g.pq(), images,
                       stream);
    }
  }
  if (bias != nullptr) {
    const int64_t K = g.K, PQ = g.pq();
    for_each(g.N * K * PQ, [=] __device__(int64_t i) { y[i] += bias[(i / PQ) % K]; }, stream, "conv2d_bias");
  }
}

namespace {
// The flipped filters' share of the flipped backward-input's workspace,
// rounded up to 64 elements so that the columns after them start 256-byte
// aligned (f32), as the vector im2col stores and cuBLAS prefer.
int64_t flipped_filters_elems(const ConvGeometry& g) { return (g.K * g.crs() + 63) / 64 * 64; }
}  // namespace

template <typename T>
BackwardInputPlan backward_input_plan(const ConvGeometry& g) {
  // Flipped where its columns take no more bytes than col2im's (which are
  // always T: the GEMM's output), BF16 ones at bf16 precision.
  bool flipped = conv_flipped_backward_input() && !g.is_pointwise() && g.hw() > 0 && g.pq() > 0 &&
                 backward_input_as_forward(g);
  const ConvGeometry b = backward_input_forward_geometry(g);
  if (flipped) {
    const int64_t bytes = bf16_columns<T>() ? 2 : static_cast<int64_t>(sizeof(T));
    flipped = b.crs() * b.pq() * bytes <= g.crs() * g.pq() * static_cast<int64_t>(sizeof(T));
  }
  if (!flipped) {
    const int64_t images = conv_group_images(g);
    return {false, images, col_elems(g, images)};
  }
  const int64_t images = conv_group_images(b);
  return {true, images, flipped_filters_elems(g) + col_elems(b, images)};
}

template <typename T>
void flip_filters(const ConvGeometry& g, const T* w, T* flipped, Stream stream) {
  const int64_t C = g.C, K = g.K, R = g.R, S = g.S;
  for_each(K * g.crs(), [=] __device__(int64_t i) { flipped[i] = w[flipped_filter_source(i, C, K, R, S)]; }, stream,
           "conv2d: flip filters");
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* grad, const T* w, T* dx, T* col,
                           const BackwardInputPlan& plan, Stream stream) {
  if (plan.flipped) {
    // dx = the forward of g's output gradient through W' (the filters
    // flipped into the workspace's head, its columns after them).
    flip_filters<T>(g, w, col, stream);
    conv2d_forward<T>(backward_input_forward_geometry(g), grad, col, nullptr, dx, col + flipped_filters_elems(g),
                      plan.images, stream);
    return;
  }
  const int64_t group = conv_checked_group(g, plan.images, "conv2d_backward_input");
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n);
    const T* gn = grad + n * g.K * g.pq();
    T* dxn = dx + n * g.C * g.hw();
    if (g.is_pointwise()) {
      gemm_shared_a<T>(true, g.C, g.pq(), g.K, w, g.C, gn, g.K * g.pq(), dxn, g.C * g.hw(), images, stream);
    } else {
      gemm_shared_a<T>(true, g.crs(), g.pq(), g.K, w, g.crs(), gn, g.K * g.pq(), col, g.crs() * g.pq(), images,
                       stream);
      ConvGeometry block = g;  // the group's channels as one [images C, H, W] block, as in the forward
      block.C = images * g.C;
      col2im<T>(block, col, dxn, stream);
    }
  }
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* grad, const T* x, T* dw, T* col, int64_t images_in,
                            Stream stream) {
  const int64_t group = conv_checked_group(g, images_in, "conv2d_backward_weight");
  const int64_t PQ = g.pq(), rows = g.is_pointwise() ? g.C : g.crs();
  for (int64_t n = 0; n < g.N; n += group) {
    const int64_t images = std::min(group, g.N - n), depth = images * PQ;
    const T* gn = grad + n * g.K * PQ;
    const T* xn = x + n * g.C * g.hw();
    const T beta = n == 0 ? T(0) : T(1);  // the first group overwrites dw (it may hold garbage)
    if constexpr (std::is_same_v<T, float>) {
      if (!g.is_pointwise() && bf16_columns<T>()) {
        // dW (+)= G X^T with X's columns made in BF16: for one image its own
        // [rows, PQ] columns, for a group the images side by side in each row.
        auto* xt16 = reinterpret_cast<uint16_t*>(col);
        const T* a = gn;
        if (images > 1) {
          T* gt = col + weight_grad_g_offset(g, images);
          transpose_images(gn, gt, images, g.K, PQ, stream);
          a = gt;
        }
        ConvGeometry block = g;
        block.C = images * g.C;
        im2col_placed_bf16(block, xn, xt16, ColumnPlacement{g.crs(), PQ, depth}, stream);
        sgemm_strided_batched_b16(false, true, g.K, rows, depth, 1.0f, a, depth, 0, xt16, depth, 0, beta, dw, rows, 0,
                                  1, stream);
        continue;
      }
    }
    if (images == 1) {  // the operands as they lie: g_n [K, PQ], x_n or its columns [rows, PQ]
      const T* b = xn;
      if (!g.is_pointwise()) {
        im2col<T>(g, xn, col, stream);
        b = col;
      }
      gemm<T>(false, true, g.K, rows, PQ, T(1), gn, PQ, b, PQ, beta, dw, rows, stream);
      continue;
    }
    // Several images: dW += G [K, images PQ] X [rows, images PQ]^T, one GEMM
    // whose depth runs over the images' pixels. X's rows hold the images
    // side by side (the columns placed so, or x's channels transposed for a
    // pointwise layer), and G is g's block transposed likewise.
    T* xt = col;
    T* gt = col + weight_grad_g_offset(g, images);
    if (g.is_pointwise()) {
      transpose_images(xn, xt, images, g.C, PQ, stream);
    } else {
      ConvGeometry block = g;
      block.C = images * g.C;
      im2col_placed(block, xn, xt, ColumnPlacement{g.crs(), PQ, depth}, stream);
    }
    transpose_images(gn, gt, images, g.K, PQ, stream);
    gemm<T>(false, true, g.K, rows, depth, T(1), gt, depth, xt, depth, beta, dw, rows, stream);
  }
  if (g.N == 0) {
    const int64_t n = g.K * g.crs();
    for_each(n, [=] __device__(int64_t i) { dw[i] = T(0); }, stream, "conv2d_backward_weight_zero");
  }
}

#define CRFSEG_CONV(T)                                                                                    \
  template void im2col<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void col2im<T>(const ConvGeometry&, const T*, T*, Stream);                                    \
  template void conv2d_forward<T>(const ConvGeometry&, const T*, const T*, const T*, T*, T*, int64_t,   \
                                  Stream);                                                              \
  template BackwardInputPlan backward_input_plan<T>(const ConvGeometry&);                                 \
  template void flip_filters<T>(const ConvGeometry&, const T*, T*, Stream);                              \
  template void conv2d_backward_input<T>(const ConvGeometry&, const T*, const T*, T*, T*,               \
                                         const BackwardInputPlan&, Stream);                             \
  template void conv2d_backward_weight<T>(const ConvGeometry&, const T*, const T*, T*, T*, int64_t,     \
                                          Stream);
CRFSEG_CONV(float)
CRFSEG_CONV(double)
#undef CRFSEG_CONV

}  // namespace crfseg::kernels::cuda
