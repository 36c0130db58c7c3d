// Reference upsampling kernels (see upsample.h for the coordinate maps):
// each output element computes its own source coordinates and weights.
#include "kernels/ref/upsample.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace crfseg::kernels::ref {

namespace {

// torch's 'nearest' source index, in float32 whatever the tensor dtype.
int64_t nearest_source(int64_t dst, int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t src = static_cast<int64_t>(std::floor(static_cast<float>(dst) * scale));
  return std::min(src, in - 1);
}

// The two source taps of a linear interpolation and their weights.
struct Taps {
  int64_t i0, i1;
  double w0, w1;
};

// Computed in T as torch does (its opmath type is T for f32 and f64).
template <typename T>
Taps linear_source(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  T src;
  if (align_corners) {
    const T scale = out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0);
    src = scale * static_cast<T>(dst);
  } else {
    const T scale = static_cast<T>(in) / static_cast<T>(out);
    src = std::max(scale * (static_cast<T>(dst) + T(0.5)) - T(0.5), T(0));
  }
  const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
  const T lambda = std::clamp(src - static_cast<T>(i0), T(0), T(1));
  return {i0, std::min(i0 + 1, in - 1), double(T(1) - lambda), double(lambda)};
}

}  // namespace

template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < P; ++oh)
      for (int64_t ow = 0; ow < Q; ++ow)
        y[(p * P + oh) * Q + ow] = x[(p * H + nearest_source(oh, H, P)) * W + nearest_source(ow, W, Q)];
}

template <typename T>
void upsample_nearest2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  std::vector<double> acc(static_cast<size_t>(planes * H * W), 0.0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < P; ++oh)
      for (int64_t ow = 0; ow < Q; ++ow)
        acc[(p * H + nearest_source(oh, H, P)) * W + nearest_source(ow, W, Q)] += grad[(p * P + oh) * Q + ow];
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}

template <typename T>
void upsample_bilinear2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 bool align_corners) {
  for (int64_t p = 0; p < planes; ++p) {
    const T* plane = x + p * H * W;
    for (int64_t oh = 0; oh < P; ++oh) {
      const Taps h = linear_source<T>(oh, H, P, align_corners);
      for (int64_t ow = 0; ow < Q; ++ow) {
        const Taps w = linear_source<T>(ow, W, Q, align_corners);
        const double top = w.w0 * plane[h.i0 * W + w.i0] + w.w1 * plane[h.i0 * W + w.i1];
        const double bottom = w.w0 * plane[h.i1 * W + w.i0] + w.w1 * plane[h.i1 * W + w.i1];
        y[(p * P + oh) * Q + ow] = static_cast<T>(h.w0 * top + h.w1 * bottom);
      }
    }
  }
}

template <typename T>
void upsample_bilinear2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                  bool align_corners) {
  std::vector<double> acc(static_cast<size_t>(planes * H * W), 0.0);
  for (int64_t p = 0; p < planes; ++p) {
    double* plane = acc.data() + p * H * W;
    for (int64_t oh = 0; oh < P; ++oh) {
      const Taps h = linear_source<T>(oh, H, P, align_corners);
      for (int64_t ow = 0; ow < Q; ++ow) {
        const Taps w = linear_source<T>(ow, W, Q, align_corners);
        const double g = grad[(p * P + oh) * Q + ow];
        plane[h.i0 * W + w.i0] += h.w0 * w.w0 * g;
        plane[h.i0 * W + w.i1] += h.w0 * w.w1 * g;
        plane[h.i1 * W + w.i0] += h.w1 * w.w0 * g;
        plane[h.i1 * W + w.i1] += h.w1 * w.w1 * g;
      }
    }
  }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}

template void upsample_nearest2d_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void upsample_nearest2d_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void upsample_nearest2d_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void upsample_nearest2d_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                  int64_t);
template void upsample_bilinear2d_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                 bool);
template void upsample_bilinear2d_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                  int64_t, bool);
template void upsample_bilinear2d_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                  bool);
template void upsample_bilinear2d_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                                   int64_t, bool);

}  // namespace crfseg::kernels::ref
