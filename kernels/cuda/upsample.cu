// CUDA upsampling (see upsample.h). Nearest's tables are bilinear's with
// i1 = i0 and w1 = 0, so one pair of kernels serves both; nearest copies
// (1 * v + 0 * v would turn an infinite v into NaN, which the CPU's copy
// does not), bilinear sums the four taps in the CPU's order, in double.
// The backward adds, for each output whose taps touch the input, the
// product of the touching taps' weights: the CPU's four scatters per output.
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/upsample.h"
#include "kernels/hd.h"

namespace crfseg::kernels::cuda {

template <typename T>
void upsample2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                        DeviceTaps rows, DeviceTaps cols, bool nearest, Stream stream) {
  for_each(planes * P * Q, [=] __device__(int64_t o) {
    const int64_t row = quotient(o, Q), ow = o - row * Q, p = quotient(row, P), oh = row - p * P;  // hd.h
    const T* plane = x + p * H * W;
    const int64_t h0 = rows.i0[oh], h1 = rows.i1[oh], w0 = cols.i0[ow], w1 = cols.i1[ow];
    if (nearest) {
      y[o] = plane[h0 * W + w0];
      return;
    }
    const double top = cols.w0[ow] * plane[h0 * W + w0] + cols.w1[ow] * plane[h0 * W + w1];
    const double bottom = cols.w0[ow] * plane[h1 * W + w0] + cols.w1[ow] * plane[h1 * W + w1];
    y[o] = static_cast<T>(rows.w0[oh] * top + rows.w1[oh] * bottom);
  }, stream, "upsample2d_forward");
}

template <typename T>
void upsample2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                         DeviceTaps rows, DeviceTaps cols, bool nearest, Stream stream) {
  for_each(planes * H * W, [=] __device__(int64_t k) {
    const int64_t row = quotient(k, W), iw = k - row * W, p = quotient(row, H), ih = row - p * H;
    double acc = 0.0;
    for (int64_t oh = rows.lo[ih]; oh < rows.hi[ih]; ++oh) {
      // The weight of input row ih in output row oh (both taps may be ih at the border).
      const bool th0 = rows.i0[oh] == ih, th1 = rows.i1[oh] == ih;
      if (!th0 && !th1) continue;
      const double wh = (th0 ? rows.w0[oh] : 0.0) + (th1 && !nearest ? rows.w1[oh] : 0.0);
      for (int64_t ow = cols.lo[iw]; ow < cols.hi[iw]; ++ow) {
        const bool tw0 = cols.i0[ow] == iw, tw1 = cols.i1[ow] == iw;
        if (!tw0 && !tw1) continue;
        const double ww = (tw0 ? cols.w0[ow] : 0.0) + (tw1 && !nearest ? cols.w1[ow] : 0.0);
        const double g = static_cast<double>(grad[(p * P + oh) * Q + ow]);
        acc += nearest ? g : wh * ww * g;
      }
    }
    dx[k] = static_cast<T>(acc);
  }, stream, "upsample2d_backward");
}

template void upsample2d_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, DeviceTaps,
                                        DeviceTaps, bool, Stream);
template void upsample2d_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         DeviceTaps, DeviceTaps, bool, Stream);
template void upsample2d_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         DeviceTaps, DeviceTaps, bool, Stream);
template void upsample2d_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          DeviceTaps, DeviceTaps, bool, Stream);

}  // namespace crfseg::kernels::cuda
