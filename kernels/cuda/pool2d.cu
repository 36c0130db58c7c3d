// CUDA pooling (see pool2d.h). The average and adaptive window rules are
// kernels/ref/pool2d.h's (CRFSEG_HD), shared with the reference.
#include <cmath>

#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/pool2d.h"

namespace crfseg::kernels::cuda {

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g, Stream stream) {
  const Pool2dGeometry c = g;
  for_each(g.planes * g.P * g.Q, [=] __device__(int64_t o) {
    const int64_t row = quotient(o, c.Q), ow = o - row * c.Q, p = quotient(row, c.P), oh = row - p * c.P;
    const T* plane = x + p * c.H * c.W;
    T best = T(0);
    int64_t best_index = -1;
    for (int64_t i = 0; i < c.kernel_h; ++i) {
      const int64_t ih = oh * c.stride_h - c.pad_h + i * c.dil_h;
      if (ih < 0 || ih >= c.H) continue;  // -inf padding
      for (int64_t j = 0; j < c.kernel_w; ++j) {
        const int64_t iw = ow * c.stride_w - c.pad_w + j * c.dil_w;
        if (iw < 0 || iw >= c.W) continue;
        const T v = plane[ih * c.W + iw];
        if (best_index < 0 || v > best || v != v) {  // ties keep the first; NaN propagates
          best = v;
          best_index = ih * c.W + iw;
        }
      }
    }
    y[o] = best_index < 0 ? -INFINITY : best;
    indices[o] = best_index;
  }, stream, "max_pool2d_forward");
}

// A scatter by index, one thread per plane walking its outputs in order:
// no atomics, deterministic, and right for any index inside its plane (the
// CPU's rule), but parallel over planes only (N * C threads). The
// backward that knows the forward's geometry gathers instead (below).
template <typename T>
void max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g,
                         unsigned long long* first_bad, Stream stream) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  for_each(g.planes * plane_out, [=] __device__(int64_t o) {
    const int64_t idx = indices[o];
    if (idx != -1 && (idx < 0 || idx >= plane_in)) atomicMin(first_bad, static_cast<unsigned long long>(o));
  }, stream, "max_pool2d_check_indices");
  for_each(g.planes * plane_in, [=] __device__(int64_t k) { dx[k] = T(0); }, stream, "max_pool2d_backward_zero");
  for_each(g.planes, [=] __device__(int64_t p) {
    T* dp = dx + p * plane_in;
    for (int64_t o = p * plane_out; o < (p + 1) * plane_out; ++o) {
      const int64_t idx = indices[o];
      if (idx >= 0 && idx < plane_in) dp[idx] += grad[o];
    }
  }, stream, "max_pool2d_backward");
}

// One thread per input element sums the outputs that chose it
// (max_pool_gather, in the scatter's order, so the same bits): the scatter
// ran N * C threads, and on an H200 a U-Net step's four max-pool backwards
// took 34 ms of its profile that way (bench/NOTES.md, change 27).
template <typename T>
void max_pool2d_backward_gather(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g,
                                unsigned long long* first_bad, Stream stream) {
  const Pool2dGeometry c = g;
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  if (first_bad != nullptr) {
    for_each(g.planes * plane_out, [=] __device__(int64_t o) {
      const int64_t idx = indices[o];
      if (idx != -1 && !in_max_window(idx, (o / c.Q) % c.P, o % c.Q, c))
        atomicMin(first_bad, static_cast<unsigned long long>(o));
    }, stream, "max_pool2d_check_windows");
  }
  for_each(g.planes * plane_in, [=] __device__(int64_t k) {
    const int64_t row = quotient(k, c.W), iw = k - row * c.W, p = quotient(row, c.H), ih = row - p * c.H;
    dx[k] = max_pool_gather(grad + p * plane_out, indices + p * plane_out, ih, iw, c);
  }, stream, "max_pool2d_backward_gather");
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad, Stream stream) {
  const Pool2dGeometry c = g;
  for_each(g.planes * g.P * g.Q, [=] __device__(int64_t o) {
    const int64_t ow = o % c.Q, oh = (o / c.Q) % c.P, p = o / (c.P * c.Q);
    const AvgWindow h = avg_window(oh, c.H, c.kernel_h, c.stride_h, c.pad_h, count_include_pad);
    const AvgWindow w = avg_window(ow, c.W, c.kernel_w, c.stride_w, c.pad_w, count_include_pad);
    double sum = 0.0;
    for (int64_t ih = h.start; ih < h.end; ++ih)
      for (int64_t iw = w.start; iw < w.end; ++iw) sum += static_cast<double>(x[(p * c.H + ih) * c.W + iw]);
    const bool empty = h.start >= h.end || w.start >= w.end;
    y[o] = empty ? T(0) : static_cast<T>(sum / static_cast<double>(h.divisor * w.divisor));
  }, stream, "avg_pool2d_forward");
}

template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad, Stream stream) {
  const Pool2dGeometry c = g;
  for_each(g.planes * g.H * g.W, [=] __device__(int64_t k) {
    const int64_t iw = k % c.W, ih = (k / c.W) % c.H, p = k / (c.H * c.W);
    int64_t h0, h1, w0, w1;
    covering_outputs(ih, c.kernel_h, c.stride_h, c.pad_h, c.P, &h0, &h1);
    covering_outputs(iw, c.kernel_w, c.stride_w, c.pad_w, c.Q, &w0, &w1);
    double acc = 0.0;
    for (int64_t oh = h0; oh < h1; ++oh) {
      const AvgWindow h = avg_window(oh, c.H, c.kernel_h, c.stride_h, c.pad_h, count_include_pad);
      if (ih < h.start || ih >= h.end) continue;
      for (int64_t ow = w0; ow < w1; ++ow) {
        const AvgWindow w = avg_window(ow, c.W, c.kernel_w, c.stride_w, c.pad_w, count_include_pad);
        if (iw < w.start || iw >= w.end) continue;
        acc += static_cast<double>(grad[(p * c.P + oh) * c.Q + ow]) / static_cast<double>(h.divisor * w.divisor);
      }
    }
    dx[k] = static_cast<T>(acc);
  }, stream, "avg_pool2d_backward");
}

template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 Stream stream) {
  for_each(planes * P * Q, [=] __device__(int64_t o) {
    const int64_t ow = o % Q, oh = (o / Q) % P, p = o / (P * Q);
    const int64_t h0 = adaptive_start(oh, H, P), h1 = adaptive_end(oh, H, P);
    const int64_t w0 = adaptive_start(ow, W, Q), w1 = adaptive_end(ow, W, Q);
    double sum = 0.0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += static_cast<double>(x[(p * H + ih) * W + iw]);
    y[o] = static_cast<T>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
  }, stream, "adaptive_avg_pool2d_forward");
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                  Stream stream) {
  for_each(planes * H * W, [=] __device__(int64_t k) {
    const int64_t iw = k % W, ih = (k / W) % H, p = k / (H * W);
    double acc = 0.0;
    // Windows are at most ceil(H / P) + 1 long and advance monotonically:
    // scanning every output row is simple and P is small where this is used.
    for (int64_t oh = 0; oh < P; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, P), h1 = adaptive_end(oh, H, P);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = 0; ow < Q; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, Q), w1 = adaptive_end(ow, W, Q);
        if (iw < w0 || iw >= w1) continue;
        acc += static_cast<double>(grad[(p * P + oh) * Q + ow]) / static_cast<double>((h1 - h0) * (w1 - w0));
      }
    }
    dx[k] = static_cast<T>(acc);
  }, stream, "adaptive_avg_pool2d_backward");
}

#define CRFSEG_POOL(T)                                                                                         \
  template void max_pool2d_forward<T>(const T*, T*, int64_t*, const Pool2dGeometry&, Stream);                 \
  template void max_pool2d_backward<T>(const T*, const int64_t*, T*, const Pool2dGeometry&,                   \
                                       unsigned long long*, Stream);                                          \
  template void max_pool2d_backward_gather<T>(const T*, const int64_t*, T*, const Pool2dGeometry&,            \
                                              unsigned long long*, Stream);                                   \
  template void avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&, bool, Stream);                     \
  template void avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&, bool, Stream);                    \
  template void adaptive_avg_pool2d_forward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,     \
                                               Stream);                                                       \
  template void adaptive_avg_pool2d_backward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,    \
                                                Stream);
CRFSEG_POOL(float)
CRFSEG_POOL(double)
#undef CRFSEG_POOL

}  // namespace crfseg::kernels::cuda
