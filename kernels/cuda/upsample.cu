// CUDA upsampling (see upsample.h). Nearest is bilinear with w1 = 0, so one
// pair of kernels serves both; the sums follow the CPU's order (horizontal
// taps first, in double).
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/upsample.h"

namespace crfseg::kernels::cuda {

template <typename T>
void upsample2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                        DeviceTaps rows, DeviceTaps cols, Stream stream) {
  for_each(planes * P * Q, [=] __device__(int64_t o) {
    const int64_t ow = o % Q, oh = (o / Q) % P, p = o / (P * Q);
    const T* plane = x + p * H * W;
    const int64_t h0 = rows.i0[oh], h1 = rows.i1[oh], w0 = cols.i0[ow], w1 = cols.i1[ow];
    const double top = cols.w0[ow] * plane[h0 * W + w0] + cols.w1[ow] * plane[h0 * W + w1];
    const double bottom = cols.w0[ow] * plane[h1 * W + w0] + cols.w1[ow] * plane[h1 * W + w1];
    y[o] = static_cast<T>(rows.w0[oh] * top + rows.w1[oh] * bottom);
  }, stream, "upsample2d_forward");
}

template <typename T>
void upsample2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                         DeviceTaps rows, DeviceTaps cols, Stream stream) {
  for_each(planes * H * W, [=] __device__(int64_t k) {
    const int64_t iw = k % W, ih = (k / W) % H, p = k / (H * W);
    double acc = 0.0;
    for (int64_t oh = rows.lo[ih]; oh < rows.hi[ih]; ++oh) {
      // The weight of input row ih in output row oh (both taps may be ih at the border).
      const double wh = (rows.i0[oh] == ih ? rows.w0[oh] : 0.0) + (rows.i1[oh] == ih ? rows.w1[oh] : 0.0);
      if (wh == 0.0) continue;
      for (int64_t ow = cols.lo[iw]; ow < cols.hi[iw]; ++ow) {
        const double ww = (cols.i0[ow] == iw ? cols.w0[ow] : 0.0) + (cols.i1[ow] == iw ? cols.w1[ow] : 0.0);
        acc += wh * ww * static_cast<double>(grad[(p * P + oh) * Q + ow]);
      }
    }
    dx[k] = static_cast<T>(acc);
  }, stream, "upsample2d_backward");
}

template void upsample2d_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, DeviceTaps,
                                        DeviceTaps, Stream);
template void upsample2d_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         DeviceTaps, DeviceTaps, Stream);
template void upsample2d_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         DeviceTaps, DeviceTaps, Stream);
template void upsample2d_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          DeviceTaps, DeviceTaps, Stream);

}  // namespace crfseg::kernels::cuda
