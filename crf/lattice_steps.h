// The CPU lattice build's first two steps (crf/permutohedral.cpp), also run
// by the GPU build's host twin (crf::lattice_tables_sorted in
// crf/permutohedral_cuda.cpp), so the twin embeds and bounds the keys with
// the very code the CPU lattices use. Internal to crf/.
#pragma once

#include <cstdint>
#include <vector>

namespace crfseg::crf::detail {

// Step 1 for all N points (OpenMP): keys [N (d + 1) x d], barycentric
// weights [N (d + 1)] and, unless up_dir is null, the directions of each
// simplex's own blur links [N (d + 1)] (kernels::lattice_embed_point).
// Returns false if some coordinate is out of range.
bool embed_points(const double* features, int64_t N, int64_t d, const double* scale, int32_t* keys,
                  float* barycentric, uint8_t* up_dir);

// The smallest and largest value of each stored coordinate over the
// vertex keys [count x d] (the lattice's keys are the same set).
struct KeyBounds {
  std::vector<int32_t> lo, hi;
};
KeyBounds key_bounds(const int32_t* keys, int64_t count, int64_t d);

}  // namespace crfseg::crf::detail
