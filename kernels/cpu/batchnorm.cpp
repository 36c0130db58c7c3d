// Batch norm kernels (see batchnorm.h for the math and the design).
#include "kernels/cpu/batchnorm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/moments.h"

namespace crfseg::kernels::cpu {

namespace {

// All of these fix the summation order; none may depend on the thread count.
constexpr int64_t kChunk = 2048;         // elements of one channel per statistics chunk (L1-resident)
constexpr int64_t kSmallInner = 16;      // below this, use the column layout
constexpr int64_t kRowsPerChunk = 64;    // column layout: rows per partial sum
constexpr int64_t kFeatureBlock = 256;   // column layout: features per task
constexpr int64_t kLanes = 8;            // independent double accumulators per sum
constexpr int64_t kParallelMin = 1 << 15;  // fewer elements than this run on one thread

inline bool worth_threads(int64_t elements) { return elements >= kParallelMin; }

// ---- deterministic double sums ----

// lanes[j] += term(i) for i < len, with lane j = i mod kLanes.
template <typename Term>
inline void lane_sum(double* lanes, int64_t len, Term term) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  for (int64_t l = 0; i < len; ++i, ++l) lanes[l] += term(i);
}

inline double lanes_total(const double* lanes) {
  double total = 0.0;
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// Each channel's moments (kernels/moments.h) are extended one chunk at a
// time with Chan's pairwise update.
using kernels::Moments;

// Strip layout: channel c is the N strips x[(n C + c) inner + i], i < inner.
// A chunk is `rows` whole strips when strips are short, or one `cols`-long
// piece of one strip when they are long, so it never holds much more than
// kChunk elements. Chunks are numbered row block major.
struct StripChunks {
  int64_t N, C, inner, rows, cols, row_blocks, col_blocks;
  StripChunks(int64_t N_, int64_t C_, int64_t inner_) : N(N_), C(C_), inner(inner_) {
    rows = inner >= kChunk ? 1 : kChunk / inner;
    cols = std::min(inner, kChunk);
    row_blocks = (N + rows - 1) / rows;
    col_blocks = (inner + cols - 1) / cols;
  }
  int64_t per_channel() const { return row_blocks * col_blocks; }
  // Calls piece(offset, len) for each contiguous piece of chunk k of channel
  // c, in order; returns the chunk's element count.
  template <typename Piece>
  int64_t visit(int64_t c, int64_t k, Piece piece) const {
    const int64_t n0 = (k / col_blocks) * rows, n1 = std::min(N, n0 + rows);
    const int64_t i0 = (k % col_blocks) * cols, len = std::min(cols, inner - i0);
    for (int64_t n = n0; n < n1; ++n) piece((n * C + c) * inner + i0, len);
    return (n1 - n0) * len;
  }
};

// Column layout: x as a row-major [N, F = C inner] matrix; feature f belongs
// to channel f / inner. Partials cover kRowsPerChunk rows of one feature.
int64_t row_blocks_of(int64_t N) { return (N + kRowsPerChunk - 1) / kRowsPerChunk; }
int64_t rows_in_block(int64_t N, int64_t rb) { return std::min(kRowsPerChunk, N - rb * kRowsPerChunk); }

// Per-channel constants repeated for each of the channel's `inner` features.
template <typename T>
std::vector<T> per_feature(const std::vector<T>& per_channel, int64_t inner) {
  const int64_t F = static_cast<int64_t>(per_channel.size()) * inner;
  std::vector<T> out(F);
  for (int64_t f = 0; f < F; ++f) out[f] = per_channel[f / inner];
  return out;
}

// Work items of the elementwise passes in the strip layout: strips cut into
// pieces of at most kChunk elements, so that a few long strips (N C small,
// large images) still spread over all threads.
struct StripPieces {
  int64_t C, inner, per_strip, strips;
  StripPieces(int64_t N, int64_t C_, int64_t inner_)
      : C(C_), inner(inner_), per_strip((inner_ + kChunk - 1) / kChunk), strips(N * C_) {}
  int64_t count() const { return strips * per_strip; }
  struct Piece {
    int64_t channel, offset, len;
  };
  Piece piece(int64_t task) const {
    const int64_t strip = task / per_strip, i0 = (task % per_strip) * kChunk;
    return {strip % C, strip * inner + i0, std::min(kChunk, inner - i0)};
  }
};

// ---- forward ----

template <typename T>
std::vector<Moments> strip_moments(const T* x, int64_t N, int64_t C, int64_t inner) {
  const StripChunks chunks(N, C, inner);
  const int64_t K = chunks.per_channel();
  std::vector<double> count(C * K), mean(C * K), m2(C * K);
#pragma omp parallel for schedule(static) if (worth_threads(N * C * inner))
  for (int64_t task = 0; task < C * K; ++task) {
    const int64_t c = task / K, k = task % K;
    double sum[kLanes] = {};
    const int64_t n = chunks.visit(c, k, [&](int64_t offset, int64_t len) {
      const T* p = x + offset;
      lane_sum(sum, len, [p](int64_t i) { return static_cast<double>(p[i]); });
    });
    const double mu = lanes_total(sum) / static_cast<double>(n);
    double squares[kLanes] = {};
    chunks.visit(c, k, [&](int64_t offset, int64_t len) {
      const T* p = x + offset;
      lane_sum(squares, len, [p, mu](int64_t i) {
        const double d = static_cast<double>(p[i]) - mu;
        return d * d;
      });
    });
    count[task] = static_cast<double>(n);
    mean[task] = mu;
    m2[task] = lanes_total(squares);
  }
  std::vector<Moments> out(C);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) out[c].merge(count[c * K + k], mean[c * K + k], m2[c * K + k]);
  return out;
}

template <typename T>
std::vector<Moments> column_moments(const T* x, int64_t N, int64_t C, int64_t inner) {
  const int64_t F = C * inner, RB = row_blocks_of(N);
  const int64_t FB = (F + kFeatureBlock - 1) / kFeatureBlock;
  std::vector<double> mean(RB * F), m2(RB * F);
#pragma omp parallel for schedule(static) if (worth_threads(N * F))
  for (int64_t task = 0; task < RB * FB; ++task) {
    const int64_t rb = task / FB, f0 = (task % FB) * kFeatureBlock;
    const int64_t nf = std::min(kFeatureBlock, F - f0);
    const int64_t n0 = rb * kRowsPerChunk, n1 = n0 + rows_in_block(N, rb);
    double* mu = mean.data() + rb * F + f0;
    double* sq = m2.data() + rb * F + f0;
    for (int64_t n = n0; n < n1; ++n) {
      const T* row = x + n * F + f0;
      for (int64_t f = 0; f < nf; ++f) mu[f] += static_cast<double>(row[f]);
    }
    for (int64_t f = 0; f < nf; ++f) mu[f] /= static_cast<double>(n1 - n0);
    for (int64_t n = n0; n < n1; ++n) {
      const T* row = x + n * F + f0;
      for (int64_t f = 0; f < nf; ++f) {
        const double d = static_cast<double>(row[f]) - mu[f];
        sq[f] += d * d;
      }
    }
  }
  std::vector<Moments> out(C);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t rb = 0; rb < RB; ++rb) {
      const double rows = static_cast<double>(rows_in_block(N, rb));
      for (int64_t i = 0; i < inner; ++i) out[c].merge(rows, mean[rb * F + c * inner + i], m2[rb * F + c * inner + i]);
    }
  }
  return out;
}

// y = (x - m_c) s_c + b_c, clamped at 0 when relu (NaN passes through, as in torch.relu).
template <typename T>
void affine_apply(const T* x, T* y, const std::vector<T>& m, const std::vector<T>& s, const std::vector<T>& b,
                  int64_t N, int64_t C, int64_t inner, bool relu) {
  if (inner >= kSmallInner) {
    const StripPieces pieces(N, C, inner);
#pragma omp parallel for schedule(static) if (worth_threads(N * C * inner))
    for (int64_t task = 0; task < pieces.count(); ++task) {
      const auto [c, offset, len] = pieces.piece(task);
      const T mc = m[c], sc = s[c], bc = b[c];
      const T* xs = x + offset;
      T* ys = y + offset;
      if (relu) {
        for (int64_t i = 0; i < len; ++i) {
          const T v = (xs[i] - mc) * sc + bc;
          ys[i] = v < T(0) ? T(0) : v;
        }
      } else {
        for (int64_t i = 0; i < len; ++i) ys[i] = (xs[i] - mc) * sc + bc;
      }
    }
    return;
  }
  const int64_t F = C * inner;
  const std::vector<T> mf = per_feature(m, inner), sf = per_feature(s, inner), bf = per_feature(b, inner);
#pragma omp parallel for schedule(static) if (worth_threads(N * F))
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * F;
    T* yr = y + n * F;
    if (relu) {
      for (int64_t f = 0; f < F; ++f) {
        const T v = (xr[f] - mf[f]) * sf[f] + bf[f];
        yr[f] = v < T(0) ? T(0) : v;
      }
    } else {
      for (int64_t f = 0; f < F; ++f) yr[f] = (xr[f] - mf[f]) * sf[f] + bf[f];
    }
  }
}

// ---- backward ----

// The gradient reaching the normalisation: g, or 0 where the fused ReLU
// clipped (y <= 0), exactly `y > 0 ? g : 0` (a NaN g where y <= 0 gives 0,
// as torch's threshold_backward). It is written as a bit mask on g's bits
// rather than with ?: on purpose: half of a ReLU's outputs are zero in no
// predictable pattern, so a branch mispredicts constantly (8x slower), and
// when GCC 12.2 (-O3 -mavx2) vectorises the ?: form of the lane_sum loops
// with masked loads it miscompiles them (terms go missing; the
// cpu-vs-ref ReLU tests catch it). Compare and AND vectorise plainly.
template <bool Relu, typename T>
inline T masked(const T* g, const T* y, int64_t i) {
  if constexpr (Relu) {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    const Bits keep = Bits(0) - static_cast<Bits>(y[i] > T(0));  // all ones or all zeros
    return std::bit_cast<T>(static_cast<Bits>(std::bit_cast<Bits>(g[i]) & keep));
  }
  return g[i];
}

// Per channel: sum_g = sum gm and, when x is given, sum_gd = sum gm (x - mean).
template <bool Relu, typename T>
void strip_grad_sums(const T* g, const T* x, const T* y, const T* mean, int64_t N, int64_t C, int64_t inner,
                     std::vector<double>& sum_g, std::vector<double>& sum_gd) {
  const StripChunks chunks(N, C, inner);
  const int64_t K = chunks.per_channel();
  std::vector<double> part_g(C * K), part_gd(C * K);
#pragma omp parallel for schedule(static) if (worth_threads(N * C * inner))
  for (int64_t task = 0; task < C * K; ++task) {
    const int64_t c = task / K, k = task % K;
    const double mu = static_cast<double>(mean[c]);
    double lg[kLanes] = {}, lgd[kLanes] = {};
    chunks.visit(c, k, [&](int64_t offset, int64_t len) {
      const T* gp = g + offset;
      const T* yp = Relu ? y + offset : nullptr;
      lane_sum(lg, len, [gp, yp](int64_t i) { return static_cast<double>(masked<Relu>(gp, yp, i)); });
      if (x) {
        const T* xp = x + offset;
        lane_sum(lgd, len, [gp, yp, xp, mu](int64_t i) {
          return static_cast<double>(masked<Relu>(gp, yp, i)) * (static_cast<double>(xp[i]) - mu);
        });
      }
    });
    part_g[task] = lanes_total(lg);
    part_gd[task] = lanes_total(lgd);
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) {
      sum_g[c] += part_g[c * K + k];
      sum_gd[c] += part_gd[c * K + k];
    }
  }
}

template <bool Relu, typename T>
void column_grad_sums(const T* g, const T* x, const T* y, const T* mean, int64_t N, int64_t C, int64_t inner,
                      std::vector<double>& sum_g, std::vector<double>& sum_gd) {
  const int64_t F = C * inner, RB = row_blocks_of(N);
  const int64_t FB = (F + kFeatureBlock - 1) / kFeatureBlock;
  std::vector<double> mean_f(F);
  for (int64_t f = 0; f < F; ++f) mean_f[f] = static_cast<double>(mean[f / inner]);
  std::vector<double> part_g(RB * F), part_gd(RB * F);
#pragma omp parallel for schedule(static) if (worth_threads(N * F))
  for (int64_t task = 0; task < RB * FB; ++task) {
    const int64_t rb = task / FB, f0 = (task % FB) * kFeatureBlock;
    const int64_t nf = std::min(kFeatureBlock, F - f0);
    const int64_t n0 = rb * kRowsPerChunk, n1 = n0 + rows_in_block(N, rb);
    double* pg = part_g.data() + rb * F + f0;
    double* pgd = part_gd.data() + rb * F + f0;
    const double* mu = mean_f.data() + f0;
    for (int64_t n = n0; n < n1; ++n) {
      const T* gr = g + n * F + f0;
      const T* yr = Relu ? y + n * F + f0 : nullptr;
      for (int64_t f = 0; f < nf; ++f) pg[f] += static_cast<double>(masked<Relu>(gr, yr, f));
      if (x) {
        const T* xr = x + n * F + f0;
        for (int64_t f = 0; f < nf; ++f)
          pgd[f] += static_cast<double>(masked<Relu>(gr, yr, f)) * (static_cast<double>(xr[f]) - mu[f]);
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t rb = 0; rb < RB; ++rb) {
      for (int64_t i = 0; i < inner; ++i) {
        sum_g[c] += part_g[rb * F + c * inner + i];
        sum_gd[c] += part_gd[rb * F + c * inner + i];
      }
    }
  }
}

// dx = k1 gm + k2 (x - m) + k3 in training, dx = k1 gm in eval (x unused).
template <bool Relu, typename T>
void grad_apply(const T* g, const T* x, const T* y, T* dx, const std::vector<T>& m, const std::vector<T>& k1,
                const std::vector<T>& k2, const std::vector<T>& k3, int64_t N, int64_t C, int64_t inner,
                bool training) {
  if (inner >= kSmallInner) {
    const StripPieces pieces(N, C, inner);
#pragma omp parallel for schedule(static) if (worth_threads(N * C * inner))
    for (int64_t task = 0; task < pieces.count(); ++task) {
      const auto [c, offset, len] = pieces.piece(task);
      const T* gs = g + offset;
      const T* ys = Relu ? y + offset : nullptr;
      T* ds = dx + offset;
      const T a = k1[c];
      if (training) {
        const T* xs = x + offset;
        const T mc = m[c], bb = k2[c], cc = k3[c];
        for (int64_t i = 0; i < len; ++i) ds[i] = masked<Relu>(gs, ys, i) * a + (xs[i] - mc) * bb + cc;
      } else {
        for (int64_t i = 0; i < len; ++i) ds[i] = masked<Relu>(gs, ys, i) * a;
      }
    }
    return;
  }
  const int64_t F = C * inner;
  const std::vector<T> mf = per_feature(m, inner), af = per_feature(k1, inner);
  const std::vector<T> bf = per_feature(k2, inner), cf = per_feature(k3, inner);
#pragma omp parallel for schedule(static) if (worth_threads(N * F))
  for (int64_t n = 0; n < N; ++n) {
    const T* gr = g + n * F;
    const T* yr = Relu ? y + n * F : nullptr;
    T* dr = dx + n * F;
    if (training) {
      const T* xr = x + n * F;
      for (int64_t f = 0; f < F; ++f) dr[f] = masked<Relu>(gr, yr, f) * af[f] + (xr[f] - mf[f]) * bf[f] + cf[f];
    } else {
      for (int64_t f = 0; f < F; ++f) dr[f] = masked<Relu>(gr, yr, f) * af[f];
    }
  }
}

template <bool Relu, typename T>
void backward_impl(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                   T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training, ReplicaSync* sync) {
  std::vector<double> sum_g(C, 0.0), sum_gd(C, 0.0);
  if (inner >= kSmallInner) strip_grad_sums<Relu>(g, x, y, mean, N, C, inner, sum_g, sum_gd);
  else column_grad_sums<Relu>(g, x, y, mean, N, C, inner, sum_g, sum_gd);

  // This replica's sums give dweight and dbias; the training dx needs them
  // over every replica (the statistics came from all of them; weighted, see
  // kernels/replica_sync.h), and their element count: [sum_g, sum_gd, M].
  std::vector<double> total(2 * C + 1);
  std::copy(sum_g.begin(), sum_g.end(), total.begin());
  std::copy(sum_gd.begin(), sum_gd.end(), total.begin() + C);
  total[2 * C] = static_cast<double>(N * inner);
  if (sync && training) sum_over_replicas(*sync, total.data(), 2 * C + 1, 2 * C);
  const double M = total[2 * C];
  std::vector<T> m(C), k1(C), k2(C, T(0)), k3(C, T(0));
  for (int64_t c = 0; c < C; ++c) {
    const double is = static_cast<double>(invstd[c]);
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    m[c] = mean[c];
    k1[c] = static_cast<T>(w * is);
    if (training) {
      k2[c] = static_cast<T>(-w * is * is * (total[C + c] * is) / M);
      k3[c] = static_cast<T>(-w * is * total[c] / M);
    }
    if (dweight) dweight[c] = static_cast<T>(sum_gd[c] * is);  // sum gm xhat
    if (dbias) dbias[c] = static_cast<T>(sum_g[c]);
  }
  grad_apply<Relu>(g, x, y, dx, m, k1, k2, k3, N, C, inner, training);
}

}  // namespace

template <typename T>
double batchnorm_forward_train(const T* x, const T* weight, const T* bias, T* y, T* mean, T* invstd,
                               T* running_mean, T* running_var, int64_t N, int64_t C, int64_t inner,
                               double momentum, double eps, bool relu, ReplicaSync* sync) {
  std::vector<Moments> stats = inner >= kSmallInner ? strip_moments(x, N, C, inner) : column_moments(x, N, C, inner);
  double M = static_cast<double>(N * inner);
  if (sync) {
    merge_moments_over_replicas(*sync, stats.data(), C);  // every replica's values, merged in replica order
    M = C > 0 ? stats[0].count : 0.0;  // every channel has the same count
  }
  if (M < 2.0) return M;  // no spread to normalise by; the caller refuses this
  std::vector<T> m(C), s(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    const double is = 1.0 / std::sqrt(stats[c].m2 / M + eps);
    mean[c] = m[c] = static_cast<T>(stats[c].mean);
    invstd[c] = static_cast<T>(is);
    s[c] = static_cast<T>((weight ? static_cast<double>(weight[c]) : 1.0) * is);
    b[c] = bias ? bias[c] : T(0);
    if (running_mean) {
      running_mean[c] =
          static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * stats[c].mean);
    }
    if (running_var) {
      const double unbiased = stats[c].m2 / (M - 1.0);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
  }
  affine_apply(x, y, m, s, b, N, C, inner, relu);
  return M;
}

template <typename T>
void batchnorm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean, const T* running_var,
                            T* y, T* invstd, int64_t N, int64_t C, int64_t inner, double eps, bool relu) {
  std::vector<T> m(C), s(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    const double is = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    invstd[c] = static_cast<T>(is);
    m[c] = running_mean[c];
    s[c] = static_cast<T>((weight ? static_cast<double>(weight[c]) : 1.0) * is);
    b[c] = bias ? bias[c] : T(0);
  }
  affine_apply(x, y, m, s, b, N, C, inner, relu);
}

template <typename T>
void batchnorm_backward(const T* g, const T* x, const T* y, const T* weight, const T* mean, const T* invstd, T* dx,
                        T* dweight, T* dbias, int64_t N, int64_t C, int64_t inner, bool training,
                        ReplicaSync* sync) {
  if (y) backward_impl<true>(g, x, y, weight, mean, invstd, dx, dweight, dbias, N, C, inner, training, sync);
  else backward_impl<false>(g, x, y, weight, mean, invstd, dx, dweight, dbias, N, C, inner, training, sync);
}

template double batchnorm_forward_train<float>(const float*, const float*, const float*, float*, float*, float*,
                                               float*, float*, int64_t, int64_t, int64_t, double, double, bool,
                                               ReplicaSync*);
template double batchnorm_forward_train<double>(const double*, const double*, const double*, double*, double*,
                                                double*, double*, double*, int64_t, int64_t, int64_t, double, double,
                                                bool, ReplicaSync*);
template void batchnorm_forward_eval<float>(const float*, const float*, const float*, const float*, const float*,
                                            float*, float*, int64_t, int64_t, int64_t, double, bool);
template void batchnorm_forward_eval<double>(const double*, const double*, const double*, const double*,
                                             const double*, double*, double*, int64_t, int64_t, int64_t, double, bool);
template void batchnorm_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, int64_t, int64_t, int64_t, bool,
                                        ReplicaSync*);
template void batchnorm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                         const double*, double*, double*, double*, int64_t, int64_t, int64_t, bool,
                                         ReplicaSync*);

}  // namespace crfseg::kernels::cpu
