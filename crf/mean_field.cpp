// Mean-field CRF-RNN: raw forward and hand-written backward through all
// iterations (the model is documented in crf/mean_field.h).
//
// Backward. Write G = dLoss/dZ_{t+1} (G = grad for t = T-1) and, per pixel i
// (vectors over classes), M = W_s A_s + W_b A_b, Z_{t+1} = U - mu M:
//   dU     += G                              (U enters every iteration)
//   dM      = -mu^T G
//   dmu    += sum_i -G M^T
//   dW_s   += sum_i dM A_s^T,      dW_b += sum_i dM A_b^T
//   dA_s    = W_s^T dM,            dA_b  = W_b^T dM
//   A = K Q / n with n = K 1 a fixed per-pixel scale (the image is not
//   differentiated), so  dQ = K_s^T (dA_s / n_s) + K_b^T (dA_b / n_b)
//   dZ_t    = Q_t * (dQ - <Q_t, dQ>)        (softmax backward)
// and dZ_t is the G of the previous iteration; at t = 0, Z_0 = U so dU += dZ_0.
// K^T is the lattice with its blur order reversed (crf/permutohedral.h), or
// K itself for the dense filter.
//
// One class fewer through the filters. The softmax backward ignores a
// per-pixel constant added to dQ (<Q, 1> = 1), and K^T is linear, so the
// backward filters the L - 1 differences dA_l - dA_{L-1} (per kernel) and
// takes dQ_{L-1} = 0: dQ shifted by -(K_s^T (dA_s,{L-1} / n_s) + K_b^T ...),
// the same dZ_t. The forward does the same with the messages' sum (see
// normalised_messages).
//
// Layout: the filters take point-major [n x L] arrays, so each image's
// unaries are transposed once to that layout and the result back. The L x L
// gradients are summed per block of kReduceBlock pixels and the blocks added
// in order: the result does not depend on the thread count.
#include "crf/mean_field.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>
#include <type_traits>

#include "autograd/profiler.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg::crf {

namespace {

constexpr const char* kOp = "crf_mean_field";
constexpr int64_t kParallelGrain = 1 << 14;  // elements below which loops stay serial
constexpr int64_t kReduceBlock = 1024;       // pixels per partial sum of the L x L gradients

void check_matrix(const Tensor& m, const char* name, const Tensor& unaries) {
  check_defined(kOp, m, name);
  check_same_device(kOp, unaries, m);
  const int64_t L = unaries.size(1);
  CRFSEG_CHECK(m.dim() == 2 && m.size(0) == L && m.size(1) == L, ShapeError, kOp, ": expected ", name, " [", L,
               ", ", L, "] (L = the unaries' classes), got ", shape_str(m.shape()));
  CRFSEG_CHECK(m.dtype() == unaries.dtype(), DTypeError, kOp, ": expected ", name, " of the unaries' dtype ",
               dtype_name(unaries.dtype()), ", got ", dtype_name(m.dtype()));
}


// The three L x L matrices, row-major, in double.
struct Weights {
  int64_t L;
  std::vector<double> ws, wb, mu;
};

Weights read_weights(const Tensor& ws, const Tensor& wb, const Tensor& mu) {
  return {ws.size(0), ops::contiguous(ws).to_vector<double>(), ops::contiguous(wb).to_vector<double>(),
          ops::contiguous(mu).to_vector<double>()};
}

// dst[c * rows + r] = src[r * cols + c]: [rows x cols] -> [cols x rows].
template <typename T>
void transpose(const T* src, T* dst, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// q[i, :] = softmax(z[i, :]) for each of n rows of L.
template <typename T>
void softmax_rows(const T* z, T* q, int64_t n, int64_t L) {
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T* zi = z + i * L;
    T* qi = q + i * L;
    const T top = *std::max_element(zi, zi + L);
    T sum = 0;
    for (int64_t l = 0; l < L; ++l) sum += (qi[l] = std::exp(zi[l] - top));
    for (int64_t l = 0; l < L; ++l) qi[l] /= sum;
  }
}

// The forward's messages a = K q / n (row i times inv_norm[i] = 1 / n_i,
// n = K 1), [n x L], from a filter of L - 1 channels. Softmax rows sum to
// one and K is linear, so K q_{L-1} = K 1 - sum_{l < L-1} K q_l, and after
// the division by n = K 1 the last class's message is
//     a_{L-1} = 1 - sum_{l < L-1} a_l.
// A filter call's cost grows with its channels (on a noisy 256^2 lattice
// 1.7 ms for two, 2.2 for three, one thread), so this saves a channel of
// every forward call (the backward drops a class by another identity, at
// the top of this file). The reciprocals are taken once per image: a
// division per value and iteration was 1.5% of the layer's time.
template <typename T>
void last_class_from_rest(T* row, int64_t L) {
  T rest = 0;
  for (int64_t l = 0; l + 1 < L; ++l) rest += row[l];
  row[L - 1] = T(1) - rest;
}

template <typename T>
void normalised_messages(const GaussianFilter& k, const T* q, const T* inv_norm, T* out, int64_t n, int64_t L,
                         std::vector<T>& packed, std::vector<T>& filtered) {
  const int64_t R = L - 1;  // channels filtered
  packed.resize(static_cast<size_t>(n * R));
  filtered.resize(packed.size());
  if (R > 0) {
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) std::copy_n(q + i * L, R, packed.data() + i * R);
    k.apply(packed.data(), filtered.data(), R);
  }
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l < R; ++l) out[i * L + l] = filtered[i * R + l] * inv_norm[i];
    last_class_from_rest(out + i * L, L);
  }
}

// inv[i] = 1 / norm[i] for n values.
template <typename T>
std::vector<T> reciprocals(const T* norm, int64_t n) {
  std::vector<T> inv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) inv[i] = T(1) / norm[i];
  return inv;
}

// The per-pixel loops below take the class count as a template argument
// kL (1..4, the common cases) or 0 (read from the weights): with L fixed,
// they unroll and the L x L gradient sums stay in registers. Same
// arithmetic, in the same order, either way.
constexpr int kMaxFixedClasses = 4;
// The most channels a filter call takes at a compile-time width (PermutohedralLattice::dispatch_filter).
constexpr int64_t kMaxFusedChannels = 4;

// m = W_s a_s + W_b a_b for one pixel (vectors of L).
template <int kL, typename T>
void mix(const Weights& w, const T* as, const T* ab, double* m) {
  const int64_t L = kL > 0 ? kL : w.L;
  for (int64_t l = 0; l < L; ++l) {
    double acc = 0;
    for (int64_t k = 0; k < L; ++k) acc += w.ws[l * L + k] * as[k] + w.wb[l * L + k] * ab[k];
    m[l] = acc;
  }
}

// Calls f(std::integral_constant<int, kL>) with kL = L for L <= kMaxFixedClasses, else kL = 0.
template <typename F>
void with_fixed_classes(int64_t L, F&& f) {
  switch (L) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case kMaxFixedClasses: return f(std::integral_constant<int, kMaxFixedClasses>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// Per-image views into the tape's [B, S, n, L] history tensors.
template <typename T>
struct History {
  T *q, *as, *ab;
  int64_t stride;  // n L, one iteration
};

template <typename T>
History<T> history(const MeanFieldTape& tape, int64_t b) {
  const int64_t slots = tape.q.size(1), stride = tape.q.size(2) * tape.q.size(3);
  return {tape.q.data<T>() + b * slots * stride, tape.msg_spatial.data<T>() + b * slots * stride,
          tape.msg_bilateral.data<T>() + b * slots * stride, stride};
}

// The bilateral norm K_b 1 -> norm_b and the first iteration's message
// ab (normalised_messages). For L <= kMaxFusedChannels in one filter call
// of L channels, [q_0 .. q_{L-2} | 1]: the lattice's index traffic, most of
// a call's time, is paid once instead of twice. Each channel is filtered
// by the same operations in the same order either way, so the results are
// the same, bit for bit.
template <typename T>
void first_bilateral(const GaussianFilter& kb, const T* q, T* norm_b, std::vector<T>& inv_b, T* ab, int64_t n,
                     int64_t L, std::vector<T>& packed, std::vector<T>& filtered) {
  if (L > kMaxFusedChannels) {
    const std::vector<T> ones(static_cast<size_t>(n), T(1));
    kb.apply(ones.data(), norm_b, 1);
    inv_b = reciprocals(norm_b, n);
    normalised_messages(kb, q, inv_b.data(), ab, n, L, packed, filtered);
    return;
  }
  const int64_t R = L - 1;  // q's channels filtered; channel R is the ones
  // In the scratch normalised_messages uses (x: packed, y: filtered).
  packed.resize(static_cast<size_t>(n * L));
  filtered.resize(packed.size());
  T* x = packed.data();
  const T* y = filtered.data();
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(q + i * L, R, x + i * L);
    x[i * L + R] = T(1);
  }
  kb.apply(x, filtered.data(), L);
  inv_b.resize(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    norm_b[i] = y[i * L + R];
    inv_b[i] = T(1) / norm_b[i];
    for (int64_t l = 0; l < R; ++l) ab[i * L + l] = y[i * L + l] * inv_b[i];
    last_class_from_rest(ab + i * L, L);
  }
}

// One image's forward: unary [L x n] -> out [L x n]. Iteration t's Q, A_s,
// A_b go to history slot t (record) or slot 0 (overwritten each time).
// norm_b (the bilateral filter of all ones) is computed here, with the
// first iteration's message.
template <typename T, int kL>
void forward_image(const Weights& w, const GaussianFilter& ks, const GaussianFilter& kb, const T* unary,
                   const T* norm_s, T* norm_b, const History<T>& h, int64_t iterations, bool record, int64_t n,
                   T* out) {
  const int64_t L = kL > 0 ? kL : w.L;
  std::vector<T> u(static_cast<size_t>(n * L)), z(static_cast<size_t>(n * L));
  const std::vector<T> inv_s = reciprocals(norm_s, n);
  std::vector<T> inv_b, packed, filtered;
  transpose(unary, u.data(), L, n);
  std::copy(u.begin(), u.end(), z.begin());
  for (int64_t t = 0; t < iterations; ++t) {
    const int64_t slot = record ? t : 0;
    T* q = h.q + slot * h.stride;
    T* as = h.as + slot * h.stride;
    T* ab = h.ab + slot * h.stride;
    softmax_rows(z.data(), q, n, L);
    normalised_messages(ks, q, inv_s.data(), as, n, L, packed, filtered);
    if (t == 0) {
      first_bilateral(kb, q, norm_b, inv_b, ab, n, L, packed, filtered);
    } else {
      normalised_messages(kb, q, inv_b.data(), ab, n, L, packed, filtered);
    }
#pragma omp parallel if (n * L > kParallelGrain)
    {
      double m_fixed[kL > 0 ? kL : 1];
      std::vector<double> m_any(kL > 0 ? 0 : static_cast<size_t>(L));
      double* m = kL > 0 ? m_fixed : m_any.data();
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        mix<kL>(w, as + i * L, ab + i * L, m);
        for (int64_t l = 0; l < L; ++l) {
          double pairwise = 0;
          for (int64_t k = 0; k < L; ++k) pairwise += w.mu[l * L + k] * m[k];
          z[i * L + l] = static_cast<T>(u[i * L + l] - pairwise);
        }
      }
    }
  }
  transpose(z.data(), out, n, L);
}

// One image's backward: grad [L x n] -> dunary [L x n]. The L x L
// gradients' block sums go to `sums`, 3 L L values (ws, wb, mu) per block,
// iterations last to first and blocks in order: the caller adds them in
// that order, image by image, so the totals do not depend on which images
// ran side by side.
template <typename T, int kL>
void backward_image(const Weights& w, const GaussianFilter& ks, const GaussianFilter& kb, const T* grad,
                    const T* norm_s, const T* norm_b, const History<T>& h, int64_t iterations, int64_t n,
                    T* dunary, std::vector<double>& sums) {
  const int64_t L = kL > 0 ? kL : w.L, LL = L * L;
  std::vector<T> g(static_cast<size_t>(n * L)), du(static_cast<size_t>(n * L), T(0));
  const int64_t R = L - 1;  // channels filtered: dq is needed only up to a per-pixel constant (above)
  std::vector<T> rs(static_cast<size_t>(n * R)), rb(rs.size()), dq(rs.size()), dq_b(rs.size());
  transpose(grad, g.data(), L, n);
  const std::vector<T> inv_s = reciprocals(norm_s, n), inv_b = reciprocals(norm_b, n);
  const int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(static_cast<size_t>(blocks * 3 * LL));

  for (int64_t t = iterations - 1; t >= 0; --t) {
    const T* q = h.q + t * h.stride;
    const T* as = h.as + t * h.stride;
    const T* ab = h.ab + t * h.stride;
    std::fill(partial.begin(), partial.end(), 0.0);
#pragma omp parallel if (n * L > kParallelGrain)
    {
      double m_fixed[kL > 0 ? kL : 1], dm_fixed[kL > 0 ? kL : 1];
      std::vector<double> m_any(kL > 0 ? 0 : static_cast<size_t>(L)), dm_any(m_any.size());
      double* m = kL > 0 ? m_fixed : m_any.data();
      double* dm = kL > 0 ? dm_fixed : dm_any.data();
      // Class k of dA = W^T dM, for both kernels.
      const auto da = [&](int64_t k, double& s, double& b) {
        s = 0, b = 0;
        for (int64_t l = 0; l < L; ++l) {
          s += w.ws[l * L + k] * dm[l];
          b += w.wb[l * L + k] * dm[l];
        }
      };
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        // The block's sums: in registers for a fixed L (copied out below;
        // partial starts at 0, so the sums are the same), else in partial.
        double fixed[kL > 0 ? 3 * kL * kL : 1] = {};
        double* p_ws = kL > 0 ? fixed : partial.data() + blk * 3 * LL;
        double* p_wb = p_ws + LL;
        double* p_mu = p_wb + LL;
        for (int64_t i = blk * kReduceBlock; i < std::min(n, (blk + 1) * kReduceBlock); ++i) {
          const T* gi = g.data() + i * L;
          const T* asi = as + i * L;
          const T* abi = ab + i * L;
          for (int64_t l = 0; l < L; ++l) du[i * L + l] += gi[l];
          mix<kL>(w, asi, abi, m);
          for (int64_t k = 0; k < L; ++k) {  // dM = -mu^T G
            double acc = 0;
            for (int64_t l = 0; l < L; ++l) acc -= w.mu[l * L + k] * gi[l];
            dm[k] = acc;
          }
          for (int64_t l = 0; l < L; ++l) {
            for (int64_t k = 0; k < L; ++k) {
              p_mu[l * L + k] -= gi[l] * m[k];
              p_ws[l * L + k] += dm[l] * asi[k];
              p_wb[l * L + k] += dm[l] * abi[k];
            }
          }
          double s_last, b_last;
          da(R, s_last, b_last);
          for (int64_t k = 0; k < R; ++k) {  // less the last class's, then / n for the normalisation
            double s, b;
            da(k, s, b);
            rs[i * R + k] = static_cast<T>((s - s_last) * inv_s[i]);
            rb[i * R + k] = static_cast<T>((b - b_last) * inv_b[i]);
          }
        }
        if (kL > 0) std::copy(fixed, fixed + 3 * LL, partial.data() + blk * 3 * LL);
      }
    }
    sums.insert(sums.end(), partial.begin(), partial.end());
    if (R > 0) {
      ks.apply(rs.data(), dq.data(), R, /*transpose=*/true);
      kb.apply(rb.data(), dq_b.data(), R, /*transpose=*/true);
    }
    // Softmax backward into g, which becomes dLoss/dZ_t; the last class's dQ is 0 after the shift.
#pragma omp parallel for schedule(static) if (n * L > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      double dot = 0;
      for (int64_t l = 0; l < R; ++l) dot += static_cast<double>(q[i * L + l]) * (dq[i * R + l] + dq_b[i * R + l]);
      for (int64_t l = 0; l < R; ++l)
        g[i * L + l] = static_cast<T>(q[i * L + l] * (dq[i * R + l] + dq_b[i * R + l] - dot));
      g[i * L + R] = static_cast<T>(q[i * L + R] * -dot);
    }
  }
  for (size_t e = 0; e < du.size(); ++e) du[e] += g[e];  // Z_0 = U
  transpose(du.data(), dunary, n, L);
}

}  // namespace

void check_mean_field_inputs(const Tensor& unaries, const Tensor& image, const Tensor& ws, const Tensor& wb,
                             const Tensor& mu, const MeanFieldOptions& o) {
  check_defined(kOp, unaries, "unaries");
  check_defined(kOp, image, "image");
  CRFSEG_CHECK(unaries.dim() == 4 && unaries.numel() > 0, ShapeError, kOp,
               ": expected unaries [B, L, H, W] with every size >= 1, got ", shape_str(unaries.shape()));
  CRFSEG_CHECK(unaries.dtype() == DType::f32 || unaries.dtype() == DType::f64, DTypeError, kOp,
               ": expected unaries of dtype f32 or f64, got ", dtype_name(unaries.dtype()));
  CRFSEG_CHECK(image.dim() == 4 && image.size(0) == unaries.size(0) && image.size(1) >= 1 &&
                   image.size(2) == unaries.size(2) && image.size(3) == unaries.size(3),
               ShapeError, kOp, ": expected image [", unaries.size(0), ", C >= 1, ", unaries.size(2), ", ",
               unaries.size(3), "] to match unaries ", shape_str(unaries.shape()), ", got ",
               shape_str(image.shape()));
  CRFSEG_CHECK(image.dtype() != DType::f16 && image.dtype() != DType::bf16, DTypeError, kOp,
               ": expected an image of dtype f32, f64, i32, i64 or u8, got ", dtype_name(image.dtype()));
  // (On another device the image would get the other device's filters.)
  CRFSEG_CHECK(image.device() == unaries.device(), DeviceError, kOp, ": expected the image on the unaries' device ",
               unaries.device().str(), ", got it on ", image.device().str());
  check_matrix(ws, "spatial_weights", unaries);
  check_matrix(wb, "bilateral_weights", unaries);
  check_matrix(mu, "compatibility", unaries);
  CRFSEG_CHECK(o.iterations >= 1, ValueError, kOp, ": expected iterations >= 1, got ", o.iterations);
  CRFSEG_CHECK(o.theta_alpha > 0 && o.theta_beta > 0 && o.theta_gamma > 0, ValueError, kOp,
               ": expected positive thetas, got alpha ", o.theta_alpha, ", beta ", o.theta_beta, ", gamma ",
               o.theta_gamma);
}

std::shared_ptr<const GaussianFilter> cached_spatial_filter(int64_t H, int64_t W, double theta_gamma, FilterMode mode) {
  struct Entry {
    int64_t H, W;
    double theta_gamma;
    FilterMode mode;
    std::shared_ptr<const GaussianFilter> filter;
  };
  constexpr size_t kSpatialCache = 4;  // the most recently used are kept
  static std::mutex mutex;
  static std::vector<Entry> cache;  // most recently used last
  std::lock_guard<std::mutex> lock(mutex);
  for (size_t e = 0; e < cache.size(); ++e) {
    if (cache[e].H == H && cache[e].W == W && cache[e].theta_gamma == theta_gamma && cache[e].mode == mode) {
      std::rotate(cache.begin() + static_cast<int64_t>(e), cache.begin() + static_cast<int64_t>(e) + 1, cache.end());
      return cache.back().filter;
    }
  }
  std::shared_ptr<const GaussianFilter> filter =
      make_gaussian_filter(mode, spatial_features(H, W, theta_gamma), H * W, 2);
  if (cache.size() == kSpatialCache) cache.erase(cache.begin());
  cache.push_back({H, W, theta_gamma, mode, filter});
  return filter;
}

namespace {

// Runs body(b) for each image b of a batch of B, images side by side, one
// per thread, each image's own parallel loops then on its thread (OpenMP
// does not nest by default). With ImageSplit::whole_rounds only the first
// B - B % T images (T threads) go side by side and the rest run one at a
// time with every thread, so that no thread idles through a last, lone
// image; ImageSplit::all sends every image side by side. Every image's
// result is the same for any thread count, so the split changes nothing.
// Errors are caught in the workers and rethrown here, the first image's
// first.
enum class ImageSplit { whole_rounds, all };
template <typename F>
void for_each_image(int64_t B, ImageSplit split, const F& body) {
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t side_by_side = 0;
  if (threads > 1 && B > 1) side_by_side = split == ImageSplit::all ? B : B / threads * threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(B));
  const auto run = [&](int64_t b) {
    try {
      body(b);
    } catch (...) {
      errors[b] = std::current_exception();
    }
  };
#pragma omp parallel for schedule(dynamic, 1) if (side_by_side > 0)
  for (int64_t b = 0; b < side_by_side; ++b) run(b);
  for (int64_t b = side_by_side; b < B; ++b) run(b);
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace

// A lattice build has serial steps (numbering the lattice points in
// first-seen order, which keeps every later sum independent of the thread
// count; the splat lists), so every image of a batch builds side by side
// (ImageSplit::all). The lattices are the same as built one at a time.
std::vector<std::unique_ptr<GaussianFilter>> build_bilateral_filters(const Tensor& image,
                                                                     const MeanFieldOptions& options, bool for_gpu) {
  const int64_t B = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3), n = H * W;
  std::vector<std::unique_ptr<GaussianFilter>> filters(static_cast<size_t>(B));
  for_each_image(B, ImageSplit::all, [&](int64_t b) {
    const double* planes = image.data<double>() + b * C * n;
    filters[b] = make_gaussian_filter(
        options.mode, bilateral_features(planes, C, H, W, options.theta_alpha, options.theta_beta), n, 2 + C,
        for_gpu);
  });
  return filters;
}

MeanFieldForward mean_field_forward(const Tensor& unaries_in, const Tensor& image_in, const Tensor& ws,
                                    const Tensor& wb, const Tensor& mu, const MeanFieldOptions& options,
                                    bool record) {
  check_mean_field_inputs(unaries_in, image_in, ws, wb, mu, options);
  for (const Tensor* t : {&unaries_in, &image_in, &ws, &wb, &mu}) check_cpu(kOp, *t);  // the fused kernel is CPU code
  const Tensor unaries = ops::contiguous(unaries_in);
  const Tensor image = ops::contiguous(ops::to_dtype(image_in, DType::f64));
  const int64_t B = unaries.size(0), L = unaries.size(1), H = unaries.size(2), W = unaries.size(3);
  const int64_t n = H * W, slots = record ? options.iterations : 1;
  const Weights w = read_weights(ws, wb, mu);

  auto tape = std::make_shared<MeanFieldTape>();
  tape->options = options;
  tape->batch = B, tape->classes = L, tape->height = H, tape->width = W;
  const TensorOptions topt = unaries.options();
  tape->norm_spatial = Tensor::empty({B, n}, topt);
  tape->norm_bilateral = Tensor::empty({B, n}, topt);
  tape->q = Tensor::empty({B, slots, n, L}, topt);
  tape->msg_spatial = Tensor::empty({B, slots, n, L}, topt);
  tape->msg_bilateral = Tensor::empty({B, slots, n, L}, topt);
  tape->spatial = cached_spatial_filter(H, W, options.theta_gamma, options.mode);
  Tensor out = Tensor::empty(unaries.shape(), topt);

  dispatch_float(unaries.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<T> ones(static_cast<size_t>(n), T(1));
    T* norm_s = tape->norm_spatial.data<T>();
    T* norm_b = tape->norm_bilateral.data<T>();
    tape->spatial->apply(ones.data(), norm_s, 1);  // same for every image: computed once
    {
      const profiler::Scope scope("CRF bilateral lattices");
      tape->bilateral = build_bilateral_filters(image, options);
    }
    for (int64_t b = 1; b < B; ++b) std::copy(norm_s, norm_s + n, norm_s + b * n);
    const profiler::Scope scope("CRF mean-field iterations");
    for_each_image(B, ImageSplit::whole_rounds, [&](int64_t b) {
      const GaussianFilter& kb = *tape->bilateral[b];
      with_fixed_classes(L, [&](auto fixed) {
        forward_image<T, decltype(fixed)::value>(w, *tape->spatial, kb, unaries.data<T>() + b * L * n,
                                                 norm_s + b * n, norm_b + b * n, history<T>(*tape, b),
                                                 options.iterations, record, n, out.data<T>() + b * L * n);
      });
    });
  });
  return {out, record ? tape : nullptr};
}

MeanFieldGrads mean_field_backward(const Tensor& grad_in, const MeanFieldTape& tape, const Tensor& ws,
                                   const Tensor& wb, const Tensor& mu) {
  const int64_t B = tape.batch, L = tape.classes, n = tape.height * tape.width;
  const Shape shape{B, L, tape.height, tape.width};
  CRFSEG_CHECK(grad_in.shape() == shape && grad_in.dtype() == tape.q.dtype(), ShapeError, kOp,
               "_backward: expected grad ", shape_str(shape), " ", dtype_name(tape.q.dtype()), ", got ",
               grad_in.str());
  CRFSEG_CHECK(tape.q.size(1) == tape.options.iterations, ValueError, kOp,
               "_backward: the forward ran without record = true");
  const Tensor grad = ops::contiguous(grad_in);
  const Weights w = read_weights(ws, wb, mu);
  std::vector<double> dws(static_cast<size_t>(L * L), 0.0), dwb(dws), dmu(dws);
  MeanFieldGrads grads;
  grads.unaries = Tensor::empty(shape, grad.options());
  dispatch_float(grad.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    std::vector<std::vector<double>> sums(static_cast<size_t>(B));
    for_each_image(B, ImageSplit::whole_rounds, [&](int64_t b) {
      with_fixed_classes(L, [&](auto fixed) {
        backward_image<T, decltype(fixed)::value>(
            w, *tape.spatial, *tape.bilateral[b], grad.data<T>() + b * L * n, tape.norm_spatial.data<T>() + b * n,
            tape.norm_bilateral.data<T>() + b * n, history<T>(tape, b), tape.options.iterations, n,
            grads.unaries.data<T>() + b * L * n, sums[b]);
      });
    });
    for (const std::vector<double>& image_sums : sums) {  // image by image, in the order they were made
      for (size_t x = 0; x < image_sums.size(); x += static_cast<size_t>(3 * L * L)) {
        const double* p = image_sums.data() + x;
        for (int64_t e = 0; e < L * L; ++e) {
          dws[e] += p[e];
          dwb[e] += p[L * L + e];
          dmu[e] += p[2 * L * L + e];
        }
      }
    }
  });
  const DType dt = grad.dtype();
  grads.spatial_weights = ops::to_dtype(from_vector(dws, {L, L}), dt);
  grads.bilateral_weights = ops::to_dtype(from_vector(dwb, {L, L}), dt);
  grads.compatibility = ops::to_dtype(from_vector(dmu, {L, L}), dt);
  return grads;
}

}  // namespace crfseg::crf
