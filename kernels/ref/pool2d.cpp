// Reference pooling kernels (see pool2d.h): one output element at a time,
// written as directly from torch's definitions as possible. Sums in double.
#include "kernels/ref/pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace crfseg::kernels::ref {

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g) {
  for (int64_t p = 0; p < g.planes; ++p) {
    const T* plane = x + p * g.H * g.W;
    for (int64_t oh = 0; oh < g.P; ++oh) {
      for (int64_t ow = 0; ow < g.Q; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t best_index = -1;
        for (int64_t i = 0; i < g.kernel_h; ++i) {
          const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
          if (ih < 0 || ih >= g.H) continue;  // -inf padding
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
            if (iw < 0 || iw >= g.W) continue;
            const double v = plane[ih * g.W + iw];
            if (best_index < 0 || v > best || std::isnan(v)) {
              best = v;
              best_index = ih * g.W + iw;
            }
          }
        }
        const int64_t o = (p * g.P + oh) * g.Q + ow;
        y[o] = static_cast<T>(best);
        indices[o] = best_index;
      }
    }
  }
}

template <typename T>
int64_t max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  for (int64_t o = 0; o < g.planes * plane_out; ++o) {
    if (indices[o] != -1 && (indices[o] < 0 || indices[o] >= plane_in)) return o;
  }
  std::vector<double> acc(static_cast<size_t>(g.planes * plane_in), 0.0);
  for (int64_t p = 0; p < g.planes; ++p) {
    for (int64_t k = 0; k < plane_out; ++k) {
      const int64_t o = p * plane_out + k;
      if (indices[o] != -1) acc[p * plane_in + indices[o]] += grad[o];
    }
  }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
  return -1;
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad) {
  for (int64_t p = 0; p < g.planes; ++p) {
    for (int64_t oh = 0; oh < g.P; ++oh) {
      const AvgWindow h = avg_window(oh, g.H, g.kernel_h, g.stride_h, g.pad_h, count_include_pad);
      for (int64_t ow = 0; ow < g.Q; ++ow) {
        const AvgWindow w = avg_window(ow, g.W, g.kernel_w, g.stride_w, g.pad_w, count_include_pad);
        double sum = 0;
        for (int64_t ih = h.start; ih < h.end; ++ih)
          for (int64_t iw = w.start; iw < w.end; ++iw) sum += x[(p * g.H + ih) * g.W + iw];
        const bool empty = h.start >= h.end || w.start >= w.end;
        y[(p * g.P + oh) * g.Q + ow] = empty ? T(0) : static_cast<T>(sum / double(h.divisor * w.divisor));
      }
    }
  }
}

template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad) {
  // Accumulate in a double copy, then round once.
  std::vector<double> acc(static_cast<size_t>(g.planes * g.H * g.W), 0.0);
  for (int64_t p = 0; p < g.planes; ++p) {
    for (int64_t oh = 0; oh < g.P; ++oh) {
      const AvgWindow h = avg_window(oh, g.H, g.kernel_h, g.stride_h, g.pad_h, count_include_pad);
      for (int64_t ow = 0; ow < g.Q; ++ow) {
        const AvgWindow w = avg_window(ow, g.W, g.kernel_w, g.stride_w, g.pad_w, count_include_pad);
        if (h.start >= h.end || w.start >= w.end) continue;
        const double share = grad[(p * g.P + oh) * g.Q + ow] / double(h.divisor * w.divisor);
        for (int64_t ih = h.start; ih < h.end; ++ih)
          for (int64_t iw = w.start; iw < w.end; ++iw) acc[(p * g.H + ih) * g.W + iw] += share;
      }
    }
  }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}


template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oh = 0; oh < P; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, P), h1 = adaptive_end(oh, H, P);
      for (int64_t ow = 0; ow < Q; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, Q), w1 = adaptive_end(ow, W, Q);
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += x[(p * H + ih) * W + iw];
        y[(p * P + oh) * Q + ow] = static_cast<T>(sum / double((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  std::vector<double> acc(static_cast<size_t>(planes * H * W), 0.0);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oh = 0; oh < P; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, P), h1 = adaptive_end(oh, H, P);
      for (int64_t ow = 0; ow < Q; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, Q), w1 = adaptive_end(ow, W, Q);
        const double share = grad[(p * P + oh) * Q + ow] / double((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) acc[(p * H + ih) * W + iw] += share;
      }
    }
  }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}

template void max_pool2d_forward<float>(const float*, float*, int64_t*, const Pool2dGeometry&);
template void max_pool2d_forward<double>(const double*, double*, int64_t*, const Pool2dGeometry&);
template int64_t max_pool2d_backward<float>(const float*, const int64_t*, float*, const Pool2dGeometry&);
template int64_t max_pool2d_backward<double>(const double*, const int64_t*, double*, const Pool2dGeometry&);
template void avg_pool2d_forward<float>(const float*, float*, const Pool2dGeometry&, bool);
template void avg_pool2d_forward<double>(const double*, double*, const Pool2dGeometry&, bool);
template void avg_pool2d_backward<float>(const float*, float*, const Pool2dGeometry&, bool);
template void avg_pool2d_backward<double>(const double*, double*, const Pool2dGeometry&, bool);
template void adaptive_avg_pool2d_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                  int64_t);
template void adaptive_avg_pool2d_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                   int64_t);

}  // namespace crfseg::kernels::ref
