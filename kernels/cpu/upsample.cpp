// Tuned CPU upsampling kernels: per-dimension tap tables, row-parallel
// forward, and a row-parallel gather for the backward (see upsample.h).
#include "kernels/cpu/upsample.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace crfseg::kernels::cpu {

namespace {

// Below this many elements (input + output) a call runs on one thread.
constexpr int64_t kParallelMin = 1 << 15;

// Source index of every output position along one dimension for torch's
// 'nearest': min(floor(dst * (in / out)), in - 1), evaluated in float32 for
// every dtype because that is what torch does (see kernels/ref/upsample.h).
std::vector<int64_t> nearest_table(int64_t in, int64_t out) {
  std::vector<int64_t> src(static_cast<size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o)
    src[o] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
  return src;
}

// Linear taps along one dimension: output o reads i0[o] with weight w0[o]
// and i1[o] with w1[o] (i1 == i0 at the last input position).
template <typename T>
struct LinearTable {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;
};

template <typename T>
LinearTable<T> linear_table(int64_t in, int64_t out, bool align_corners) {
  LinearTable<T> t{std::vector<int64_t>(out), std::vector<int64_t>(out), std::vector<T>(out), std::vector<T>(out)};
  // align_corners maps the corner pixel centres onto each other; otherwise
  // pixel areas are aligned, so centres map through (o + 0.5) in/out - 0.5.
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  for (int64_t o = 0; o < out; ++o) {
    const T src = align_corners ? scale * static_cast<T>(o)
                                : std::max(scale * (static_cast<T>(o) + T(0.5)) - T(0.5), T(0));
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const T lambda = std::clamp(src - static_cast<T>(i0), T(0), T(1));
    t.i0[o] = i0;
    t.i1[o] = std::min(i0 + 1, in - 1);
    t.w0[o] = T(1) - lambda;
    t.w1[o] = lambda;
  }
  return t;
}

// The outputs that read input i through a non-decreasing index table `src`
// (every table above is one: floor, clamp and float rounding are all
// monotone) form one contiguous run [begin[i], end[i]), possibly empty.
// This turns the backward scatter into a gather.
struct Runs {
  std::vector<int64_t> begin, end;
};

Runs runs_of(const std::vector<int64_t>& src, int64_t in) {
  Runs r{std::vector<int64_t>(in), std::vector<int64_t>(in)};
  for (int64_t i = 0; i < in; ++i) {
    r.begin[i] = std::lower_bound(src.begin(), src.end(), i) - src.begin();
    r.end[i] = std::upper_bound(src.begin(), src.end(), i) - src.begin();
  }
  return r;
}

}  // namespace

template <typename T>
UpsampleTaps upsample_taps(int64_t in, int64_t out, bool bilinear, bool align_corners) {
  UpsampleTaps t;
  if (bilinear) {
    const LinearTable<T> lt = linear_table<T>(in, out, align_corners);
    t.i0 = lt.i0;
    t.i1 = lt.i1;
    t.w0.assign(lt.w0.begin(), lt.w0.end());
    t.w1.assign(lt.w1.begin(), lt.w1.end());
  } else {
    t.i0 = nearest_table(in, out);
    t.i1 = t.i0;
    t.w0.assign(static_cast<size_t>(out), 1.0);
    t.w1.assign(static_cast<size_t>(out), 0.0);
  }
  t.lo.assign(static_cast<size_t>(in), out);
  t.hi.assign(static_cast<size_t>(in), 0);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i : {t.i0[o], t.i1[o]}) {
      t.lo[i] = std::min(t.lo[i], o);
      t.hi[i] = std::max(t.hi[i], o + 1);
    }
  }
  for (int64_t i = 0; i < in; ++i) t.lo[i] = std::min(t.lo[i], t.hi[i]);  // unread: an empty run
  return t;
}
template UpsampleTaps upsample_taps<float>(int64_t, int64_t, bool, bool);
template UpsampleTaps upsample_taps<double>(int64_t, int64_t, bool, bool);

template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  const std::vector<int64_t> src_h = nearest_table(H, P), src_w = nearest_table(W, Q);
  const int64_t* col = src_w.data();
#pragma omp parallel for schedule(static) if (planes * (H * W + P * Q) > kParallelMin)
  for (int64_t r = 0; r < planes * P; ++r) {
    const int64_t p = r / P, oh = r % P;
    const T* x_row = x + (p * H + src_h[oh]) * W;
    T* y_row = y + r * Q;
    for (int64_t ow = 0; ow < Q; ++ow) y_row[ow] = x_row[col[ow]];
  }
}

template <typename T>
void upsample_nearest2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  const Runs rows = runs_of(nearest_table(H, P), H), cols = runs_of(nearest_table(W, Q), W);
#pragma omp parallel if (planes * (H * W + P * Q) > kParallelMin)
  {
    std::vector<T> row_sum(static_cast<size_t>(Q));  // per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < planes * H; ++r) {
      const int64_t p = r / H, ih = r % H;
      T* dx_row = dx + r * W;
      const int64_t oh0 = rows.begin[ih], oh1 = rows.end[ih];
      if (oh0 == oh1) {  // no output reads this row (downsampling)
        std::fill(dx_row, dx_row + W, T(0));
        continue;
      }
      // Sum the output rows that read input row ih (contiguous, vectorised)...
      const T* g = grad + p * P * Q;
      std::copy(g + oh0 * Q, g + (oh0 + 1) * Q, row_sum.begin());
      for (int64_t oh = oh0 + 1; oh < oh1; ++oh)
        for (int64_t ow = 0; ow < Q; ++ow) row_sum[ow] += g[oh * Q + ow];
      // ...then each input column sums its run of output columns.
      for (int64_t iw = 0; iw < W; ++iw) {
        T sum = T(0);
        for (int64_t ow = cols.begin[iw]; ow < cols.end[iw]; ++ow) sum += row_sum[ow];
        dx_row[iw] = sum;
      }
    }
  }
}

template <typename T>
void upsample_bilinear2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 bool align_corners) {
  const LinearTable<T> th = linear_table<T>(H, P, align_corners), tw = linear_table<T>(W, Q, align_corners);
  const int64_t *i0 = tw.i0.data(), *i1 = tw.i1.data();
  const T *w0 = tw.w0.data(), *w1 = tw.w1.data();
#pragma omp parallel if (planes * (H * W + P * Q) > kParallelMin)
  {
    std::vector<T> blend(static_cast<size_t>(W));  // per thread: the two source rows blended vertically
#pragma omp for schedule(static)
    for (int64_t r = 0; r < planes * P; ++r) {
      const int64_t p = r / P, oh = r % P;
      const T* top = x + (p * H + th.i0[oh]) * W;
      const T* bottom = x + (p * H + th.i1[oh]) * W;
      const T a0 = th.w0[oh], a1 = th.w1[oh];
      // Vertical first: one contiguous pass that vectorises...
      for (int64_t iw = 0; iw < W; ++iw) blend[iw] = a0 * top[iw] + a1 * bottom[iw];
      // ...then two table-driven taps per output instead of four.
      T* y_row = y + r * Q;
      for (int64_t ow = 0; ow < Q; ++ow) y_row[ow] = w0[ow] * blend[i0[ow]] + w1[ow] * blend[i1[ow]];
    }
  }
}

template <typename T>
void upsample_bilinear2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q,
                                  bool align_corners) {
  const LinearTable<T> th = linear_table<T>(H, P, align_corners), tw = linear_table<T>(W, Q, align_corners);
  // Input row ih is tap 0 of the output rows in rows0 and tap 1 of those in
  // rows1 (likewise for columns); each tap table is non-decreasing.
  const Runs rows0 = runs_of(th.i0, H), rows1 = runs_of(th.i1, H);
  const Runs cols0 = runs_of(tw.i0, W), cols1 = runs_of(tw.i1, W);
  const T *w0 = tw.w0.data(), *w1 = tw.w1.data();
#pragma omp parallel if (planes * (H * W + P * Q) > kParallelMin)
  {
    std::vector<T> row_sum(static_cast<size_t>(Q));  // per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < planes * H; ++r) {
      const int64_t p = r / H, ih = r % H;
      const T* g = grad + p * P * Q;
      // Vertical adjoint: the weighted sum of the output rows that read ih
      // (contiguous, vectorised axpys over Q).
      std::fill(row_sum.begin(), row_sum.end(), T(0));
      for (int64_t oh = rows0.begin[ih]; oh < rows0.end[ih]; ++oh) {
        const T a = th.w0[oh];
        for (int64_t ow = 0; ow < Q; ++ow) row_sum[ow] += a * g[oh * Q + ow];
      }
      for (int64_t oh = rows1.begin[ih]; oh < rows1.end[ih]; ++oh) {
        const T a = th.w1[oh];
        for (int64_t ow = 0; ow < Q; ++ow) row_sum[ow] += a * g[oh * Q + ow];
      }
      // Horizontal adjoint: each input column gathers its two runs of outputs.
      T* dx_row = dx + r * W;
      for (int64_t iw = 0; iw < W; ++iw) {
        T sum = T(0);
        for (int64_t ow = cols0.begin[iw]; ow < cols0.end[iw]; ++ow) sum += w0[ow] * row_sum[ow];
        for (int64_t ow = cols1.begin[iw]; ow < cols1.end[iw]; ++ow) sum += w1[ow] * row_sum[ow];
        dx_row[iw] = sum;
      }
    }
  }
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

}  // namespace crfseg::kernels::cpu
