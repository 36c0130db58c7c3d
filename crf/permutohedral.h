// PermutohedralLattice: approximate high-dimensional Gaussian filtering in
// O(N d^2) build + O((N + M) d C) per filter call, after Adams, Baek and
// Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice",
// Eurographics 2010 (https://graphics.stanford.edu/papers/permutohedral/).
//
// Built once from the features of N points (d >= 1 dims, already divided by
// their thetas); every filter() call then reuses the lattice (the CRF calls
// it for every iteration and every class, forward and backward):
//
//   1. embed: each feature vector is scaled and elevated onto the hyperplane
//      H_d = {x in R^{d+1}: sum x = 0} tiled by the lattice A*_d, and the
//      enclosing simplex (d + 1 lattice points) and the point's barycentric
//      weights in it are found (build time, stored per point);
//   2. splat: each lattice point accumulates the barycentric-weighted values
//      of the points around it;
//   3. blur: along each of the d + 1 lattice directions u_j in turn,
//      v'[p] = v[p] + (v[p + u_j] + v[p - u_j]) / 2, i.e. the kernel
//      [1 2 1] / 4 times 2 (lattice points absent from the table count as 0);
//   4. slice: each point reads back the barycentric-weighted values of its
//      simplex, times alpha = sqrt(d + 1) (4 pi / 3)^(d/2) / 2^(d+1).
// The positions are scaled by sqrt(2/3) (d + 1) so that the effective kernel
// (splat, blur, slice) has unit variance per dimension like
// exp(-|f_i - f_j|^2 / 2), and alpha gives it the Gaussian's mass (derived
// in permutohedral.cpp), so on densely sampled features the raw output
// approximates the exact sum. The kernel is neither exactly Gaussian nor
// shift-invariant: for d = 5 a point's own weight varies in ~[0.55, 1]
// with its place in its simplex, a lone pair at distance 1 gets ~0.5x to
// 1.3x exp(-1/2), and 0 once the blur path between them crosses absent
// lattice points. Normalised outputs therefore differ from the exact
// filter's mostly at points with few close neighbours; tests/crf states
// the measured agreement.
//
// As a matrix: filter = alpha S^T B_d ... B_0 S, with S the splat matrix
// (lattice x points) and each B_j symmetric. The B_j do not commute exactly
// once absent lattice points are dropped, so the adjoint is alpha S^T B_0
// ... B_d S: filter(..., transpose = true) blurs in reverse order.
//
// The blur along chains: for each direction u_j the lattice points with a
// neighbour along u_j fall into disjoint chains p, p + u_j, p + 2 u_j, ...
// (p - u_j absent, ends where the next is absent). A point on no chain has
// both neighbours absent and the blur leaves it as it is, and along a chain
// the update needs only the old value of the previous point, kept in
// registers; so the blur walks the chains in place and skips the rest. On
// a noisy image's sparse lattice about half the points are on no chain in
// a given direction, and 89% of the chains have two points: those are
// walked from a list of pairs of their own, with no branch on a chain's
// length (mispredicted once per chain otherwise). Same sums in the same
// order as the plain blur.
//
// Determinism: splat is a gather per lattice point over a precomputed
// (point, weight) list sorted by point, blur and slice are gathers, and the
// lattice points' numbering depends on their keys alone: a sparse lattice
// from the sorted build is numbered in the order of its keys' codes (a
// stable radix sort); any other in first-seen order (the hash build's
// sequential insert, or the sorted build renumbered so), then, from 16384
// points, along a Z-order curve of the keys, which keeps blur neighbours
// near in memory. No numbering changes a sum. Results are therefore
// bit-identical for any OpenMP thread count, and between the two builds.
// The lattice is immutable once built; filter scratch is per calling
// thread, so apply() may run concurrently from several threads.
#pragma once

#include <cstdint>
#include <vector>

#include "crf/gaussian_filter.h"
#include "tensor/cpu_allocator.h"

namespace crfseg::crf {

// How a lattice is built. Every choice gives the same filter, bit for bit;
// the non-defaults exist so that tests can compare the tuned build with its
// plain form.
struct LatticeOptions {
  // Find the lattice points and their blur neighbours by sorting the
  // vertices' exact integer codes (the default; see "The sorted build" in
  // permutohedral.cpp), or through a hash table of the keys (false). The
  // sorted build needs the keys' bounding box to hold fewer than 2^64 codes;
  // when it does not (coordinates spanning more than about 2^12 lattice
  // steps each in d = 5), the lattice is hash-built whatever this says.
  bool sorted_build = true;
  // Number lattices of 16384 points or more along a Z-order curve of their
  // keys, for cache locality (false keeps first-seen order). A sparse
  // lattice from the sorted build keeps its code order either way.
  bool z_order = true;
  // Hash build only: find the blur neighbours the plain way, hashing every
  // candidate key and probing the table. The default screens candidates
  // through a Bloom filter of the lattice's keys first (most candidates are
  // absent on sparse lattices) and hashes them incrementally (see
  // permutohedral.cpp).
  bool plain_neighbour_search = false;
  // Blur in place along chains of present neighbours (the default, see
  // "The blur along chains" above) or the plain way: every lattice point, every direction, reading
  // its two neighbours (absent ones as a zero row) into a second buffer.
  bool chain_blur = true;
  // Build the CPU blur's structures (the chains, or the plain table). False
  // for a lattice whose tables only go to the GPU (lattice_tables, crf/
  // permutohedral_cuda.h), which blurs from the up neighbours: on a noisy
  // 256^2 image the chains are about a third of the build. apply() then
  // throws ValueError.
  bool cpu_blur = true;
};

// alpha, the factor the slice applies for lattices of dimension d (see permutohedral.cpp).
double lattice_slice_scale(int64_t d);

class PermutohedralLattice : public GaussianFilter {
 public:
  // features: [num_points x dim] row-major. Throws ValueError for dim < 1,
  // num_points < 1, non-finite features, or features so large that lattice
  // coordinates overflow 32-bit keys.
  PermutohedralLattice(const std::vector<double>& features, int64_t num_points, int64_t dim,
                       const LatticeOptions& options = {});

  int64_t num_points() const override { return num_points_; }
  int64_t feature_dim() const override { return dim_; }
  int64_t num_lattice_points() const { return num_lattice_; }
  // Whether the lattice was built by sorting (LatticeOptions::sorted_build).
  bool sorted_build() const { return sorted_build_; }

  void apply(const float* in, float* out, int64_t channels, bool transpose = false) const override;
  void apply(const double* in, double* out, int64_t channels, bool transpose = false) const override;

  struct SplatEntry {
    int32_t point;  // index of the input point
    float weight;   // its barycentric weight at this lattice point
  };

  // Read-only views of the built tables, for device backends that upload
  // them once and run the same splat / blur / slice (crf/permutohedral_cuda.h).
  // With N = num_points(), M = num_lattice_points(), d = feature_dim():
  //   vertices(), barycentric_weights(): [N x (d + 1)], point i's simplex
  //     vertices (lattice indices in [0, M)) and their weights;
  //   splat_offsets() [M + 1], splat_entries() [N (d + 1)]: the CSR
  //     transpose, lattice point p receives entries [offsets[p], offsets[p + 1]);
  //   blur_neighbours(): [(d + 1) x M x 2], for direction j the indices of
  //     p + u_j and p - u_j, or M (an always-zero row) when absent (built
  //     on each call from the stored up neighbours, in O(M d));
  //   slice_scale(): alpha, the factor applied after slicing.
  const CpuVector<int32_t>& vertices() const { return vertex_; }
  const CpuVector<float>& barycentric_weights() const { return barycentric_; }
  const CpuVector<int64_t>& splat_offsets() const { return splat_begin_; }
  const CpuVector<SplatEntry>& splat_entries() const { return splat_; }
  CpuVector<int32_t> blur_neighbours() const;
  // The same table written into a larger one: direction j's [M x 2] block
  // at out + 2 j row_stride (row_stride >= M), every index plus `offset`
  // and an absent neighbour as `absent` (lattice_tables stacks a batch's
  // lattices this way, without a table per lattice).
  void write_blur_neighbours(int32_t* out, int64_t row_stride, int32_t offset, int32_t absent) const;
  double slice_scale() const;

 private:
  template <typename T, int kC>
  void filter(const T* in, T* out, int64_t channels, bool transpose) const;
  template <typename T>
  void dispatch_filter(const T* in, T* out, int64_t channels, bool transpose) const;
  void build_chains();
  void check_cpu_blur() const;

  int64_t num_points_ = 0, dim_ = 0, num_lattice_ = 0;
  bool sorted_build_ = false;
  // Per input point, its d + 1 simplex vertices (lattice indices) and weights: [N x (d + 1)].
  CpuVector<int32_t> vertex_;
  CpuVector<float> barycentric_;
  // The transpose of (vertex_, barycentric_) in CSR form: lattice point p
  // receives splat_[splat_begin_[p] .. splat_begin_[p + 1]), sorted by point.
  CpuVector<int64_t> splat_begin_;
  CpuVector<SplatEntry> splat_;
  // Up neighbours: [j M + p] is the index of p + u_j, or M when absent.
  CpuVector<int32_t> up_;
  // The plain blur's table (empty with chain_blur): blur_neighbours().
  CpuVector<int32_t> neighbour_;
  // Blur chains (LatticeOptions::chain_blur): direction j's chains are
  // chain_begin_[j] .. chain_begin_[j + 1] - 1 (indices into chain_start_),
  // chain c's points chain_point_[chain_start_[c] .. chain_start_[c + 1]), ordered along +u_j.
  bool chain_blur_ = true;
  bool cpu_blur_ = true;  // LatticeOptions::cpu_blur
  // Chains of two points are kept apart: direction j's are pairs
  // pair_begin_[j] .. pair_begin_[j + 1] - 1, pair x the points pair_[2 x], pair_[2 x + 1].
  std::vector<int64_t> chain_begin_, pair_begin_;
  CpuVector<int64_t> chain_start_;
  CpuVector<int32_t> chain_point_, pair_;
};

}  // namespace crfseg::crf
