// Tuned CPU pooling kernels. The design (row-parallel forward, interior fast
// path for max, one table-driven kernel for both average pools, deterministic
// backward: plane-owned scatter for max, row-owned for the averages) is
// explained in pool2d.h.
#include "kernels/cpu/pool2d.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace crfseg::kernels::cpu {

namespace {

// Below this many input elements a call runs on one thread: spawning the
// OpenMP team costs more than the work.
constexpr int64_t kParallelMin = 1 << 15;

// ---------------------------------------------------------------- max pool

// The taps j in [lo, hi) of a window starting at `start` (step `dil`, k taps)
// whose positions start + j*dil fall inside [0, n). lo >= hi: none do.
struct TapRange {
  int64_t lo, hi;
};

TapRange valid_taps(int64_t start, int64_t k, int64_t dil, int64_t n) {
  const int64_t lo = start >= 0 ? 0 : (-start + dil - 1) / dil;
  const int64_t hi = start >= n ? 0 : std::min(k, (n - 1 - start) / dil + 1);
  return {lo, hi};
}

// One output of a max pool with full bounds checks: used for the border
// columns, whose windows reach into the padding. `rows` are the valid row
// taps of this output row (non-empty).
template <typename T>
void max_window(const T* plane, const Pool2dGeometry& g, int64_t h_start, TapRange rows, int64_t w_start, T* y,
                int64_t* index) {
  const TapRange cols = valid_taps(w_start, g.kernel_w, g.dil_w, g.W);
  T best = -std::numeric_limits<T>::infinity();
  int64_t best_index = -1;
  if (cols.lo < cols.hi) {
    // torch starts from -inf at the first valid position, so an all -inf
    // window reports its first valid element.
    best_index = (h_start + rows.lo * g.dil_h) * g.W + w_start + cols.lo * g.dil_w;
    for (int64_t i = rows.lo; i < rows.hi; ++i) {
      const int64_t ih = h_start + i * g.dil_h;
      for (int64_t j = cols.lo; j < cols.hi; ++j) {
        const int64_t iw = w_start + j * g.dil_w;
        const T v = plane[ih * g.W + iw];
        if (v > best || v != v) {  // v != v: NaN wins and propagates
          best = v;
          best_index = ih * g.W + iw;
        }
      }
    }
  }
  *y = best;
  *index = best_index;
}

// Interior update for one window tap (ih, offset): for ow in [begin, end),
// y[ow] = max(y[ow], xrow[ow * stride + offset]). Written as selects, not
// branches, so it vectorises; `stride` is a literal 1 or 2 at the hot call
// sites (after inlining), which makes the loads contiguous or evenly strided.
template <typename T>
inline void max_update(const T* xrow, int64_t row_base, T* y, int64_t* index, int64_t begin, int64_t end,
                       int64_t stride, int64_t offset) {
  for (int64_t ow = begin; ow < end; ++ow) {
    const int64_t iw = ow * stride + offset;
    const T v = xrow[iw];
    const bool take = v > y[ow] || v != v;
    y[ow] = take ? v : y[ow];
    index[ow] = take ? row_base + iw : index[ow];
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g) {
  // Interior output columns: the whole window [ow*sw - pw, ow*sw - pw + (kw-1)*dw]
  // lies in [0, W), so no bounds checks are needed there.
  const int64_t reach = (g.kernel_w - 1) * g.dil_w;
  const int64_t ow_lo = std::min(g.Q, (g.pad_w + g.stride_w - 1) / g.stride_w);
  const int64_t last = g.W - 1 - reach + g.pad_w;  // largest interior ow * stride_w
  const int64_t ow_hi = std::max(ow_lo, last < 0 ? int64_t(0) : std::min(g.Q, last / g.stride_w + 1));
  const int64_t rows_total = g.planes * g.P;

#pragma omp parallel for schedule(static) if (g.planes * g.H * g.W > kParallelMin)
  for (int64_t r = 0; r < rows_total; ++r) {
    const int64_t p = r / g.P, oh = r % g.P;
    const T* plane = x + p * g.H * g.W;
    T* y_row = y + r * g.Q;
    int64_t* i_row = indices + r * g.Q;
    const int64_t h_start = oh * g.stride_h - g.pad_h;
    const TapRange rows = valid_taps(h_start, g.kernel_h, g.dil_h, g.H);
    if (rows.lo >= rows.hi) {  // every window of this row is padding (dilation only)
      std::fill(y_row, y_row + g.Q, -std::numeric_limits<T>::infinity());
      std::fill(i_row, i_row + g.Q, int64_t(-1));
      continue;
    }
    for (int64_t ow = 0; ow < ow_lo; ++ow)
      max_window(plane, g, h_start, rows, ow * g.stride_w - g.pad_w, y_row + ow, i_row + ow);
    for (int64_t ow = ow_hi; ow < g.Q; ++ow)
      max_window(plane, g, h_start, rows, ow * g.stride_w - g.pad_w, y_row + ow, i_row + ow);
    if (ow_lo >= ow_hi) continue;

    // Interior: start every output at -inf pointing at its first tap, then
    // visit the taps in row-major window order (the order ref uses).
    const int64_t first_row = h_start + rows.lo * g.dil_h;
    for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
      y_row[ow] = -std::numeric_limits<T>::infinity();
      i_row[ow] = first_row * g.W + ow * g.stride_w - g.pad_w;
    }
    for (int64_t i = rows.lo; i < rows.hi; ++i) {
      const int64_t ih = h_start + i * g.dil_h;
      const T* x_row = plane + ih * g.W;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t offset = j * g.dil_w - g.pad_w;
        if (g.stride_w == 1) max_update(x_row, ih * g.W, y_row, i_row, ow_lo, ow_hi, 1, offset);
        else if (g.stride_w == 2) max_update(x_row, ih * g.W, y_row, i_row, ow_lo, ow_hi, 2, offset);
        else max_update(x_row, ih * g.W, y_row, i_row, ow_lo, ow_hi, g.stride_w, offset);
      }
    }
  }
}

template <typename T>
int64_t max_pool2d_backward(const T* grad, const int64_t* indices, T* dx, const Pool2dGeometry& g) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  int64_t first_bad = std::numeric_limits<int64_t>::max();
  // One thread per plane: overlapping windows (stride < kernel) add into the
  // same dx element, and a fixed per-plane order keeps the sums deterministic.
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (g.planes * plane_in > kParallelMin)
  for (int64_t p = 0; p < g.planes; ++p) {
    T* dx_plane = dx + p * plane_in;
    const T* g_plane = grad + p * plane_out;
    const int64_t* i_plane = indices + p * plane_out;
    std::fill(dx_plane, dx_plane + plane_in, T(0));
    for (int64_t k = 0; k < plane_out; ++k) {
      const int64_t idx = i_plane[k];
      if (idx >= 0 && idx < plane_in) dx_plane[idx] += g_plane[k];
      else if (idx != -1) first_bad = std::min(first_bad, p * plane_out + k);
    }
  }
  return first_bad == std::numeric_limits<int64_t>::max() ? -1 : first_bad;
}

int64_t max_pool2d_first_outside_window(const int64_t* indices, const Pool2dGeometry& g) {
  int64_t first_bad = std::numeric_limits<int64_t>::max();
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (g.planes * g.P * g.Q > kParallelMin)
  for (int64_t p = 0; p < g.planes; ++p) {
    const int64_t* i_plane = indices + p * g.P * g.Q;
    for (int64_t oh = 0; oh < g.P; ++oh)
      for (int64_t ow = 0; ow < g.Q; ++ow) {
        const int64_t idx = i_plane[oh * g.Q + ow];
        if (idx != -1 && !in_max_window(idx, oh, ow, g)) first_bad = std::min(first_bad, (p * g.P + oh) * g.Q + ow);
      }
  }
  return first_bad == std::numeric_limits<int64_t>::max() ? -1 : first_bad;
}

// ------------------------------------------------------- average pools

namespace {

// Windows of one dimension of an average pool: output o averages input
// positions [start[o], end[o]) (empty when start >= end) and contributes the
// factor divisor[o] to the divisor, which is div_h * div_w for both pools.
struct WindowTable {
  std::vector<int64_t> start, end, divisor;
  explicit WindowTable(int64_t out) : start(out), end(out), divisor(out) {}
};

// avg_pool2d: the window clipped to the padded input [-pad, in + pad) for
// the divisor (count_include_pad) and to [0, in) for the sum.
WindowTable avg_table(int64_t out, int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool count_include_pad) {
  WindowTable t(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t lo = o * stride - pad;
    const int64_t hi = std::min(lo + kernel, in + pad);
    t.start[o] = std::max<int64_t>(lo, 0);
    t.end[o] = std::min(hi, in);
    t.divisor[o] = count_include_pad ? hi - lo : t.end[o] - t.start[o];
  }
  return t;
}

// adaptive_avg_pool2d: [floor(o in / out), ceil((o + 1) in / out)).
WindowTable adaptive_table(int64_t out, int64_t in) {
  WindowTable t(out);
  for (int64_t o = 0; o < out; ++o) {
    t.start[o] = (o * in) / out;
    t.end[o] = ((o + 1) * in + out - 1) / out;
    t.divisor[o] = t.end[o] - t.start[o];
  }
  return t;
}

template <typename T>
void window_average_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, const WindowTable& rows,
                            const WindowTable& cols) {
  const int64_t P = static_cast<int64_t>(rows.start.size()), Q = static_cast<int64_t>(cols.start.size());
#pragma omp parallel if (planes * H * W > kParallelMin)
  {
    std::vector<T> column_sum(static_cast<size_t>(W));  // per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < planes * P; ++r) {
      const int64_t p = r / P, oh = r % P;
      const int64_t h0 = rows.start[oh], h1 = rows.end[oh];
      T* y_row = y + r * Q;
      if (h0 >= h1) {
        std::fill(y_row, y_row + Q, T(0));
        continue;
      }
      // column_sum[iw] = sum of x[ih][iw] over the window's rows: kh
      // contiguous row adds that vectorise.
      const T* plane = x + p * H * W;
      std::copy(plane + h0 * W, plane + (h0 + 1) * W, column_sum.begin());
      for (int64_t ih = h0 + 1; ih < h1; ++ih) {
        const T* x_row = plane + ih * W;
        for (int64_t iw = 0; iw < W; ++iw) column_sum[iw] += x_row[iw];
      }
      for (int64_t ow = 0; ow < Q; ++ow) {
        const int64_t w0 = cols.start[ow], w1 = cols.end[ow];
        T sum = T(0);
        for (int64_t iw = w0; iw < w1; ++iw) sum += column_sum[iw];
        y_row[ow] = w0 < w1 ? sum / static_cast<T>(rows.divisor[oh] * cols.divisor[ow]) : T(0);
      }
    }
  }
}

// The output rows whose windows contain input row i form one contiguous
// run [begin[i], end[i]): start[] and end[] are non-decreasing, so
// {o : end[o] > i} is a suffix and {o : start[o] <= i} a prefix of the
// outputs. Empty windows never satisfy both and drop out by themselves.
struct Runs {
  std::vector<int64_t> begin, end;
};

Runs covering_runs(const WindowTable& t, int64_t in) {
  Runs r{std::vector<int64_t>(in), std::vector<int64_t>(in)};
  for (int64_t i = 0; i < in; ++i) {
    r.begin[i] = std::upper_bound(t.end.begin(), t.end.end(), i) - t.end.begin();
    r.end[i] = std::max(r.begin[i], std::upper_bound(t.start.begin(), t.start.end(), i) - t.start.begin());
  }
  return r;
}

// Backward: dx[ih][iw] = sum over the windows (oh, ow) containing it of
// g[oh][ow] / (div_h[oh] div_w[ow]), the same per-output share torch
// computes. Threads own input rows: each gathers its run of covering output
// rows, then spreads the column shares within its own row, so every dx row
// is written by one thread in a fixed order.
template <typename T>
void window_average_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, const WindowTable& rows,
                             const WindowTable& cols) {
  const int64_t P = static_cast<int64_t>(rows.start.size()), Q = static_cast<int64_t>(cols.start.size());
  const Runs row_runs = covering_runs(rows, H);
  // Column divisors as T; an empty window's (possibly 0) divisor is never
  // used, but is set to 1 so no inf is computed for it.
  std::vector<T> col_div(static_cast<size_t>(Q));
  for (int64_t ow = 0; ow < Q; ++ow)
    col_div[ow] = cols.start[ow] < cols.end[ow] ? static_cast<T>(cols.divisor[ow]) : T(1);
#pragma omp parallel if (planes * H * W > kParallelMin)
  {
    std::vector<T> share_sum(static_cast<size_t>(Q));  // per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < planes * H; ++r) {
      const int64_t p = r / H, ih = r % H;
      T* dx_row = dx + r * W;
      const int64_t oh0 = row_runs.begin[ih], oh1 = row_runs.end[ih];
      if (oh0 == oh1) {  // in no window (stride > kernel leaves gaps)
        std::fill(dx_row, dx_row + W, T(0));
        continue;
      }
      // share_sum[ow] = sum over the output rows covering ih of each share
      // g / (div_h div_w): contiguous over Q, vectorised.
      std::fill(share_sum.begin(), share_sum.end(), T(0));
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const T* g_row = grad + (p * P + oh) * Q;
        const T div_h = static_cast<T>(rows.divisor[oh]);
        for (int64_t ow = 0; ow < Q; ++ow) share_sum[ow] += g_row[ow] / (div_h * col_div[ow]);
      }
      // Spread each column's share over its window's columns. (A gather over
      // the covering output columns per iw measured ~1.5x slower here: when
      // pooling, W > Q, and its short variable-length loops dominate.)
      std::fill(dx_row, dx_row + W, T(0));
      for (int64_t ow = 0; ow < Q; ++ow) {
        const T share = share_sum[ow];
        for (int64_t iw = cols.start[ow]; iw < cols.end[ow]; ++iw) dx_row[iw] += share;
      }
    }
  }
}

}  // namespace

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad) {
  window_average_forward(x, y, g.planes, g.H, g.W,
                         avg_table(g.P, g.H, g.kernel_h, g.stride_h, g.pad_h, count_include_pad),
                         avg_table(g.Q, g.W, g.kernel_w, g.stride_w, g.pad_w, count_include_pad));
}

template <typename T>
void avg_pool2d_backward(const T* grad, T* dx, const Pool2dGeometry& g, bool count_include_pad) {
  window_average_backward(grad, dx, g.planes, g.H, g.W,
                          avg_table(g.P, g.H, g.kernel_h, g.stride_h, g.pad_h, count_include_pad),
                          avg_table(g.Q, g.W, g.kernel_w, g.stride_w, g.pad_w, count_include_pad));
}

template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  window_average_forward(x, y, planes, H, W, adaptive_table(P, H), adaptive_table(Q, W));
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad, T* dx, int64_t planes, int64_t H, int64_t W, int64_t P, int64_t Q) {
  window_average_backward(grad, dx, planes, H, W, adaptive_table(P, H), adaptive_table(Q, W));
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

}  // namespace crfseg::kernels::cpu
