// The permutohedral lattice's build rules (the math is in
// crf/permutohedral.h), in host-device code. The CPU build
// (crf/permutohedral.cpp) embeds its points and codes its keys with them;
// the GPU build (kernels/cuda/lattice_build.cu, driven by
// crf/permutohedral_cuda.cpp) runs every per-element step with them, and
// its host twin (crf::lattice_tables_sorted) runs the same steps on the CPU,
// so tests check the GPU's algorithm on machines without one.
//
// The GPU build is the CPU's sorted build (crf/permutohedral.cpp, "The
// sorted build") over a whole batch at once:
//   1. embed: each point's d + 1 simplex vertices (keys of d stored
//      coordinates) and barycentric weights, and the keys' bounds;
//   2. code: each vertex entry e = i (d + 1) + k gets its key's exact
//      mixed-radix code in the bounds' box, with its image's number in the
//      bits above (so no two images share a lattice point);
//   3. sort the entries by code, stably (entries of one code stay in point
//      order), and number the distinct codes in code order: the lattice
//      points of the stack, image after image;
//   4. tables: each sorted entry gives its splat-list slot and its vertex;
//   5. links: p's up neighbour along u_j has the code code(p) + step_j (the
//      box leaves room for every candidate, so the sum never reaches
//      another image's codes), found by binary search in the sorted codes.
// Every table slot has one writer (the only atomics are the bounds' exact
// min / max), so the tables are the same on every run, and the filter over
// them is the per-image CPU lattices' own operator, bit for bit (the
// numbering changes no sum).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/hd.h"

namespace crfseg::kernels {

// Lattice coordinates beyond this magnitude are rejected (int32 keys with headroom for +-d).
constexpr double kLatticeMaxCoordinate = 1 << 30;

// The CRF's bilateral feature vector of pixel i = y W + x of one image
// (planes [C x H x W]): (x / theta_alpha, y / theta_alpha, c_0 / theta_beta,
// ..., c_{C-1} / theta_beta), written to f[0 .. 2 + C). Divisions only, so
// the host and the device give the same bits.
CRFSEG_HD inline void bilateral_feature(const double* image, int64_t C, int64_t H, int64_t W, int64_t i,
                                        double theta_alpha, double theta_beta, double* f) {
  const int64_t x = i % W, y = i / W, hw = H * W;
  f[0] = static_cast<double>(x) / theta_alpha;
  f[1] = static_cast<double>(y) / theta_alpha;
  for (int64_t c = 0; c < C; ++c) f[2 + c] = image[c * hw + i] / theta_beta;
}

// Round to nearest, ties to even (the CPU's std::nearbyint; rint on the device).
CRFSEG_HD inline double lattice_round(double x) {
#ifdef __CUDA_ARCH__
  return rint(x);
#else
  return std::nearbyint(x);
#endif
}

// a b, rounded as a product the compiler may not fuse into a neighbouring
// add or subtract. A fused multiply-add rounds once where a multiply and an
// add round twice, and compilers fuse by their own choice: nvcc by default,
// GCC with -march=native on FMA hardware (not in a portable build). The
// embedding below uses it for every product that meets an add, so the GPU's
// lattice (kernels/cuda/lattice_build.cu) is the CPU's bit for bit however
// either side was built: a one-ulp difference can move a point across a
// rounding boundary or swap two residuals' ranks, and the device test
// compares the index tables exactly.
CRFSEG_HD inline double unfused_product(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);  // never contracted into an FMA (CUDA's intrinsic)
#else
  double p = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(p));  // opaque to the optimiser: the add below cannot absorb the multiply
#elif defined(__GNUC__) && defined(__aarch64__)
  asm("" : "+w"(p));
#else
  volatile double barrier = p;
  p = barrier;
#endif
  return p;
#endif
}

// scale[i] for the elevation (see lattice_embed_point): sqrt(2/3) (d + 1) / sqrt((i + 1)(i + 2)).
inline void lattice_embed_scale(int64_t d, double* scale) {
  const double inv_std = std::sqrt(2.0 / 3.0) * static_cast<double>(d + 1);
  for (int64_t i = 0; i < d; ++i) scale[i] = inv_std / std::sqrt(static_cast<double>((i + 1) * (i + 2)));
}

// Embeds one feature vector f (d dims) and writes its d + 1 simplex vertices
// (d stored coordinates each; the (d+1)-th is minus their sum) and
// barycentric weights, and (when up_dir_out is not null) the directions of
// the simplex's own blur links. Returns false if a coordinate is out of range.
// Work arrays: elevated, rem0, rank (d + 1 each), bary (d + 2).
// kD > 0 fixes d = kD at compile time (the CRF's 2, 3, 4 and 5), so the
// O(d^2) loops unroll; kD = 0 reads d_any.
template <int kD>
CRFSEG_HD bool lattice_embed_point(const double* f, int64_t d_any, const double* scale, double* elevated,
                                   int64_t* rem0, int64_t* rank, double* bary, int32_t* keys_out, float* bary_out,
                                   uint8_t* up_dir_out) {
  const int64_t d = kD > 0 ? kD : d_any, d1 = d + 1;
  const double inv_d1 = 1.0 / static_cast<double>(d1);
  // Elevate: x = E f with E = sqrt(2/3) (d + 1) [e_0 .. e_{d-1}], where column
  // e_i = (1, ..., 1, -(i + 1), 0, ..., 0) / sqrt((i + 1)(i + 2)) (i + 1 ones)
  // is an orthonormal basis of H_d. Accumulated right to left in O(d).
  double suffix = 0;
  for (int64_t j = d; j > 0; --j) {
    const double cf = unfused_product(f[j - 1], scale[j - 1]);
    elevated[j] = suffix - unfused_product(static_cast<double>(j), cf);
    suffix += cf;
  }
  elevated[0] = suffix;
  // The nearest remainder-0 lattice point: round every coordinate to a
  // multiple of d + 1; `sum` (in units of d + 1) is how far off H_d it lands.
  int64_t sum = 0;
  for (int64_t i = 0; i < d1; ++i) {
    if (!(fabs(elevated[i]) < kLatticeMaxCoordinate)) return false;
    const int64_t r = static_cast<int64_t>(lattice_round(elevated[i] * inv_d1));
    rem0[i] = r * d1;
    sum += r;
  }
  // rank[i]: how many coordinates of the residual x - rem0 exceed coordinate
  // i (ties by index); the ordering identifies the simplex containing x.
  for (int64_t i = 0; i < d1; ++i) rank[i] = 0;
  for (int64_t i = 0; i < d; ++i) {
    const double di = elevated[i] - static_cast<double>(rem0[i]);
    for (int64_t j = i + 1; j < d1; ++j) {
      const bool below = di < elevated[j] - static_cast<double>(rem0[j]);  // a coin toss: no branch
      rank[i] += below;
      rank[j] += !below;
    }
  }
  // Bring rem0 back onto H_d: shifting all ranks by `sum` and wrapping moves
  // the |sum| coordinates with the largest (or smallest) residuals by d + 1.
  for (int64_t i = 0; i < d1; ++i) {
    rank[i] += sum;
    if (rank[i] < 0) {
      rank[i] += d1;
      rem0[i] += d1;
    } else if (rank[i] > d) {
      rank[i] -= d1;
      rem0[i] -= d1;
    }
  }
  // Barycentric weights (Adams et al., section 4.2): the sorted residuals'
  // successive differences, divided by d + 1; weight k belongs to vertex k.
  for (int64_t k = 0; k < d + 2; ++k) bary[k] = 0.0;
  for (int64_t i = 0; i < d1; ++i) {
    const double v = unfused_product(elevated[i] - static_cast<double>(rem0[i]), inv_d1);
    bary[d - rank[i]] += v;
    bary[d - rank[i] + 1] -= v;
  }
  bary[0] += 1.0 + bary[d + 1];
  // Vertex k of the simplex is rem0 + the canonical offset of remainder k:
  // coordinate i gets k when rank[i] <= d - k, else k - (d + 1).
  for (int64_t k = 0; k < d1; ++k) {
    for (int64_t i = 0; i < d; ++i) {
      const int64_t offset = rank[i] <= d - k ? k : k - d1;
      keys_out[k * d + i] = static_cast<int32_t>(rem0[i] + offset);
    }
    bary_out[k] = static_cast<float>(bary[k]);
  }
  // The simplex's vertices form a cycle of blur links. From the offsets
  // above, vertex k - 1 minus vertex k is -1 in every coordinate except +d
  // in the one of rank d + 1 - k, i.e. u_j for that coordinate j; and
  // vertex d minus vertex 0 is u_j for the coordinate of rank 0. So vertex
  // k's up neighbour along u_{up_dir[k]} is vertex (k - 1) mod (d + 1).
  // (Bytes: the build uses them only for d + 1 <= 255.)
  if (up_dir_out != nullptr) {
    for (int64_t i = 0; i < d1; ++i) {
      const int64_t k = (d1 - rank[i]) % d1;  // rank[i] = (d + 1 - k) mod (d + 1)
      up_dir_out[k] = static_cast<uint8_t>(i);
    }
  }
  return true;
}

// The sorted build's code box (crf/permutohedral.cpp, "The sorted build"):
// from the stored coordinates' bounds lo[k] <= key[k] <= hi[k], the
// mixed-radix weights W_k (weight[d]) of
//   code(key) = sum_k (key[k] - lo[k] + 1) W_k,  W_0 = 1,  W_{k+1} = W_k R_k,
//   R_k = hi[k] - lo[k] + d + 2,
// whose radices leave room for every blur-neighbour candidate (a step u_j
// moves each stored coordinate by -1 or +d), the steps
// step[j] = code(key + u_j) - code(key) (mod 2^64, step[d + 1]) and the
// origin sum_k (lo[k] - 1) W_k (mod 2^64), so that code = sum_k key[k] W_k -
// origin. Returns the number of bits every code fits in, or -1 when the
// box holds 2^64 codes or more.
inline int lattice_code_box(const int32_t* lo, const int32_t* hi, int64_t d, uint64_t* weight, uint64_t* step,
                            uint64_t* origin) {
  uint64_t size = 1;  // prod R_k so far
  for (int64_t k = 0; k < d; ++k) {
    const uint64_t radix = static_cast<uint64_t>(static_cast<int64_t>(hi[k]) - lo[k] + d + 2);
    if (size > std::numeric_limits<uint64_t>::max() / radix) return -1;
    weight[k] = size;
    size *= radix;
  }
  int bits = 0;
  while (bits < 64 && (size - 1) >> bits != 0) ++bits;
  // u_j: -1 in every stored coordinate, + d in coordinate j (when j < d).
  for (int64_t j = 0; j <= d; ++j) {
    uint64_t s = 0;  // wraps for negative steps; the sums wrap back
    for (int64_t k = 0; k < d; ++k) s += (k == j ? static_cast<uint64_t>(d) : ~uint64_t(0)) * weight[k];
    step[j] = s;
  }
  *origin = 0;
  for (int64_t k = 0; k < d; ++k) *origin += static_cast<uint64_t>(static_cast<int64_t>(lo[k]) - 1) * weight[k];
  return bits;
}

// A key's code in the box: sum_k key[k] W_k - origin (mod 2^64). kD as in lattice_embed_point.
template <int kD>
CRFSEG_HD uint64_t lattice_code(const int32_t* key, int64_t d_any, const uint64_t* weight, uint64_t origin) {
  const int64_t d = kD > 0 ? kD : d_any;
  uint64_t code = 0;
  for (int64_t k = 0; k < d; ++k) code += static_cast<uint64_t>(static_cast<int64_t>(key[k])) * weight[k];
  return code - origin;
}

// The feature dimensions the batch build takes (the CRF's bilateral
// lattices: 2 + the image's channels); the others are built per image.
constexpr int64_t kLatticeBatchMinDim = 2, kLatticeBatchMaxDim = 5;

// The batch build's code box: lattice_code_box over every image's keys,
// with the image's number in the bits above: entry e of image
// e / entries_per_image gets code = image << bits | lattice_code(key), and
// the codes fit in end_bit bits.
struct LatticeBatchBox {
  uint64_t weight[kLatticeBatchMaxDim] = {};
  uint64_t step[kLatticeBatchMaxDim + 1] = {};
  uint64_t origin = 0;
  int bits = 0, end_bit = 0;
};
// False when the codes with the image numbers need more than 64 bits. d <= kLatticeBatchMaxDim.
inline bool lattice_batch_box(const int32_t* lo, const int32_t* hi, int64_t d, int64_t images, LatticeBatchBox* box) {
  box->bits = lattice_code_box(lo, hi, d, box->weight, box->step, &box->origin);
  int image_bits = 0;
  while (image_bits < 64 && (static_cast<uint64_t>(images) - 1) >> image_bits != 0) ++image_bits;
  if (box->bits < 0 || box->bits + image_bits > 64) return false;
  box->end_bit = box->bits + image_bits > 0 ? box->bits + image_bits : 1;
  return true;
}
// f.template operator()<kD>() with kD = d; d must lie in
// [kLatticeBatchMinDim, kLatticeBatchMaxDim] (callers check).
template <typename F>
decltype(auto) with_batch_dim(int64_t d, const F& f) {
  switch (d) {
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    default: return f.template operator()<5>();
  }
}

template <int kD>
CRFSEG_HD uint64_t lattice_batch_code(const int32_t* keys, int64_t e, int64_t entries_per_image,
                                      const LatticeBatchBox& box) {
  const uint64_t image = static_cast<uint64_t>(e / entries_per_image);
  const uint64_t prefix = box.bits < 64 ? image << box.bits : 0;  // bits = 64 only for a single image
  return prefix | lattice_code<kD>(keys + e * kD, kD, box.weight, box.origin);
}

// Steps 3-5 of the batch build, per element, over the E vertex entries
// sorted by code (code[s], the entry entry[s]) and count[s], the number of
// distinct codes among code[0 .. s] (an inclusive scan of lattice_is_head),
// so that entry s belongs to lattice point count[s] - 1.
CRFSEG_HD inline bool lattice_is_head(const uint64_t* code, int64_t s) { return s == 0 || code[s] != code[s - 1]; }

// Sorted entry s's part of the tables (layouts in crf/permutohedral_cuda.h):
// its lattice point's code (point_code [M]) and splat-list start, when s is
// the first of its point; its splat slot (point, weight); and its vertex.
CRFSEG_HD inline void lattice_table_entry(int64_t s, int64_t E, int64_t d1, const uint64_t* code,
                                          const uint32_t* entry, const int32_t* count, const float* barycentric,
                                          uint64_t* point_code, int64_t* splat_offsets, int32_t* splat_points,
                                          float* splat_weights, int32_t* vertices) {
  const int32_t p = count[s] - 1;
  const uint32_t e = entry[s];
  if (lattice_is_head(code, s)) {
    point_code[p] = code[s];
    splat_offsets[p] = s;
  }
  if (s == E - 1) splat_offsets[p + 1] = E;
  splat_points[s] = static_cast<int32_t>(e / static_cast<uint32_t>(d1));
  splat_weights[s] = barycentric[e];
  vertices[e] = p;
}

// The index of `code` among the M ascending point codes, or M when absent.
CRFSEG_HD inline int64_t lattice_find(const uint64_t* point_code, int64_t M, uint64_t code) {
  int64_t lo = 0, hi = M;  // lower bound in [lo, hi)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (point_code[mid] < code) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < M && point_code[lo] == code ? lo : M;
}

// Point p's blur link along u_j: neighbours [(d + 1) x M x 2] gets
// [j][p][0] = p + u_j and [j][p + u_j][1] = p when p + u_j is present (the
// table starts all M, the absent row). Each slot has one writer: q = p + u_j
// has one p = q - u_j.
CRFSEG_HD inline void lattice_link(int64_t p, int64_t j, int64_t M, const uint64_t* point_code, uint64_t step_j,
                                   int32_t* neighbours) {
  const int64_t q = lattice_find(point_code, M, point_code[p] + step_j);
  if (q < M) {
    neighbours[(j * M + p) * 2] = static_cast<int32_t>(q);
    neighbours[(j * M + q) * 2 + 1] = static_cast<int32_t>(p);
  }
}

}  // namespace crfseg::kernels
