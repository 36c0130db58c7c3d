// The GPU lattice build's launches (see kernels/cuda/lattice_build.h; the
// per-element rules and the algorithm are kernels/lattice_rules.h). Sorting
// and scanning are CUB's (the CUDA toolkit's CCCL headers): its radix sort
// is stable, so entries of one code keep their point order, as the splat
// lists need. One thread per point, entry or (direction, point), in
// grid-stride loops; no atomics but the bounds' min / max, which are exact,
// so every table is the same on every run.
//
// Napkin (16 noisy 256^2 RGB images, d = 5): E = 6.3M entries; the sort
// moves 12 bytes per entry per 8-bit pass over ~47 bits (6 passes), ~0.5 GB,
// and the links' 6 x 6M binary searches ~23 steps each, mostly L2 hits:
// a few ms in all on an H100, where the host build of the same batch took
// hundreds (bench/NOTES.md change 40).
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <climits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/for_each.cuh"
#include "kernels/cuda/lattice_build.h"
#include "kernels/lattice_rules.h"

namespace crfseg::kernels::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

struct Scale {
  double v[kLatticeBatchMaxDim];
};

__global__ void bounds_init_kernel(int32_t* bounds, int32_t* bad, int64_t d) {
  for (int64_t k = 0; k < d; ++k) {
    bounds[k] = INT_MAX;
    bounds[d + k] = INT_MIN;
  }
  *bad = 0;
}

// One point per thread (grid-stride); each thread's bounds are reduced over
// its warp with shuffles, then one atomic per warp and coordinate.
template <int kD>
__global__ void embed_kernel(const double* __restrict__ features, int64_t N, Scale scale, int32_t* __restrict__ keys,
                             float* __restrict__ barycentric, int32_t* bounds, int32_t* bad) {
  constexpr int64_t d1 = kD + 1;
  double elevated[kD + 1], bary[kD + 2];
  int64_t rem0[kD + 1], rank[kD + 1];
  int32_t lo[kD], hi[kD];
  for (int k = 0; k < kD; ++k) {
    lo[k] = INT_MAX;
    hi[k] = INT_MIN;
  }
  bool in_range = true;
  for (int64_t i = first_index(); i < N; i += grid_stride()) {
    int32_t* key = keys + i * d1 * kD;
    const bool ok = kernels::lattice_embed_point<kD>(features + i * kD, kD, scale.v, elevated, rem0, rank, bary, key,
                                                     barycentric + i * d1, nullptr);
    in_range = in_range && ok;
    if (!ok) continue;  // its keys were not written (the host throws on the flag)
    for (int64_t v = 0; v < d1; ++v) {
      for (int k = 0; k < kD; ++k) {
        lo[k] = min(lo[k], key[v * kD + k]);
        hi[k] = max(hi[k], key[v * kD + k]);
      }
    }
  }
  for (int k = 0; k < kD; ++k) {
    for (int offset = 16; offset > 0; offset /= 2) {
      lo[k] = min(lo[k], __shfl_xor_sync(0xffffffffu, lo[k], offset));
      hi[k] = max(hi[k], __shfl_xor_sync(0xffffffffu, hi[k], offset));
    }
  }
  if ((threadIdx.x & 31) == 0) {
    for (int k = 0; k < kD; ++k) {
      atomicMin(bounds + k, lo[k]);
      atomicMax(bounds + kD + k, hi[k]);
    }
  }
  if (!in_range) *bad = 1;  // every writer writes 1
}

template <int kD>
__global__ void code_kernel(const int32_t* __restrict__ keys, int64_t E, int64_t entries_per_image, LatticeBatchBox box,
                            uint64_t* __restrict__ code, uint32_t* __restrict__ entry) {
  for (int64_t e = first_index(); e < E; e += grid_stride()) {
    code[e] = kernels::lattice_batch_code<kD>(keys, e, entries_per_image, box);
    entry[e] = static_cast<uint32_t>(e);
  }
}

__global__ void head_kernel(const uint64_t* __restrict__ code, int64_t E, int32_t* __restrict__ head) {
  for (int64_t s = first_index(); s < E; s += grid_stride()) head[s] = kernels::lattice_is_head(code, s) ? 1 : 0;
}

__global__ void table_kernel(const uint64_t* __restrict__ code, const uint32_t* __restrict__ entry,
                             const int32_t* __restrict__ count, const float* __restrict__ barycentric, int64_t E,
                             int64_t d1, uint64_t* __restrict__ point_code, int64_t* __restrict__ splat_offsets,
                             int32_t* __restrict__ splat_points, float* __restrict__ splat_weights,
                             int32_t* __restrict__ vertices) {
  for (int64_t s = first_index(); s < E; s += grid_stride()) {
    kernels::lattice_table_entry(s, E, d1, code, entry, count, barycentric, point_code, splat_offsets, splat_points,
                                 splat_weights, vertices);
  }
}

__global__ void fill_kernel(int32_t* __restrict__ out, int64_t n, int32_t value) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = value;
}

// Direction-major: consecutive threads search for consecutive points'
// neighbours, whose codes (and so their searches' paths) are near.
__global__ void link_kernel(const uint64_t* __restrict__ point_code, int64_t M, int64_t d1, LatticeBatchBox box,
                            int32_t* __restrict__ neighbours) {
  for (int64_t idx = first_index(); idx < d1 * M; idx += grid_stride()) {
    const int64_t j = idx / M, p = idx - j * M;
    kernels::lattice_link(p, j, M, point_code, box.step[j], neighbours);
  }
}

// with_batch_dim, for a d that is checked first.
template <typename F>
void with_build_dim(int64_t d, const char* op, const F& f) {
  CRFSEG_CHECK(d >= kLatticeBatchMinDim && d <= kLatticeBatchMaxDim, ValueError, op,
               ": expected a feature dimension in [", kLatticeBatchMinDim, ", ", kLatticeBatchMaxDim, "], got ", d);
  kernels::with_batch_dim(d, f);
}

}  // namespace

void bilateral_features(const double* image, int64_t B, int64_t C, int64_t H, int64_t W, double theta_alpha,
                        double theta_beta, double* features, cudaStream_t stream) {
  const int64_t hw = H * W, d = 2 + C;
  for_each(B * hw, [=] __device__(int64_t p) {
    const int64_t b = p / hw;
    kernels::bilateral_feature(image + b * C * hw, C, H, W, p - b * hw, theta_alpha, theta_beta, features + p * d);
  }, stream, "bilateral_features");
}

void lattice_embed(const double* features, int64_t N, int64_t d, const double* scale, int32_t* keys,
                   float* barycentric, int32_t* bounds, int32_t* bad, cudaStream_t stream) {
  Scale s{};
  with_build_dim(d, "lattice_embed", [&]<int kD>() {
    for (int k = 0; k < kD; ++k) s.v[k] = scale[k];
    bounds_init_kernel<<<1, 1, 0, stream>>>(bounds, bad, kD);
    launch_check("lattice_embed (bounds)");
    if (N == 0) return;
    embed_kernel<kD><<<grid_for(N, kThreads), kThreads, 0, stream>>>(features, N, s, keys, barycentric, bounds, bad);
    launch_check("lattice_embed");
  });
}

size_t lattice_sort_temp_bytes(int64_t E, const LatticeBatchBox& box) {
  CRFSEG_CHECK(E >= 1 && E < INT_MAX && box.end_bit >= 1 && box.end_bit <= 64, ValueError,
               "lattice_sort: expected 1 <= E < 2^31 entries and 1..64 code bits, got E = ", E, ", ", box.end_bit,
               " bits");
  // Size queries only: CUB reads no array here.
  const int n = static_cast<int>(E);
  size_t sort_bytes = 0, scan_bytes = 0;
  CRFSEG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr),
                                                    static_cast<uint64_t*>(nullptr),
                                                    static_cast<const uint32_t*>(nullptr),
                                                    static_cast<uint32_t*>(nullptr), n, 0, box.end_bit));
  CRFSEG_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), n));
  return sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
}

void lattice_sort(const int32_t* keys, int64_t E, int64_t d, int64_t entries_per_image, const LatticeBatchBox& box,
                  uint64_t* code, uint32_t* entry, uint64_t* code_sorted, uint32_t* entry_sorted, int32_t* count,
                  void* temp, size_t temp_bytes, cudaStream_t stream) {
  const size_t needed = lattice_sort_temp_bytes(E, box);
  CRFSEG_CHECK(entries_per_image >= 1 && temp_bytes >= needed, ValueError,
               "lattice_sort: expected images of at least one entry and ", needed, " bytes of scratch, got ",
               entries_per_image, " entries per image and ", temp_bytes, " bytes");
  with_build_dim(d, "lattice_sort", [&]<int kD>() {
    code_kernel<kD><<<grid_for(E, kThreads), kThreads, 0, stream>>>(keys, E, entries_per_image, box, code, entry);
    launch_check("lattice_sort (codes)");
  });
  const int n = static_cast<int>(E);
  size_t bytes = temp_bytes;
  CRFSEG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, bytes, code, code_sorted, entry, entry_sorted, n, 0,
                                                    box.end_bit, stream));
  int32_t* head = reinterpret_cast<int32_t*>(entry);  // the sort's input, free once it has run
  head_kernel<<<grid_for(E, kThreads), kThreads, 0, stream>>>(code_sorted, E, head);
  launch_check("lattice_sort (heads)");
  bytes = temp_bytes;
  CRFSEG_CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp, bytes, head, count, n, stream));
}

void lattice_tables(const uint64_t* code_sorted, const uint32_t* entry_sorted, const int32_t* count,
                    const float* barycentric, int64_t E, int64_t d1, uint64_t* point_code, int64_t* splat_offsets,
                    int32_t* splat_points, float* splat_weights, int32_t* vertices, cudaStream_t stream) {
  if (E == 0) return;
  table_kernel<<<grid_for(E, kThreads), kThreads, 0, stream>>>(code_sorted, entry_sorted, count, barycentric, E, d1,
                                                               point_code, splat_offsets, splat_points,
                                                               splat_weights, vertices);
  launch_check("lattice_tables");
}

void lattice_links(const uint64_t* point_code, int64_t M, int64_t d, const LatticeBatchBox& box, int32_t* neighbours,
                   cudaStream_t stream) {
  const int64_t d1 = d + 1, slots = d1 * M * 2;
  if (M == 0) return;
  fill_kernel<<<grid_for(slots, kThreads), kThreads, 0, stream>>>(neighbours, slots, static_cast<int32_t>(M));
  launch_check("lattice_links (fill)");
  link_kernel<<<grid_for(d1 * M, kThreads), kThreads, 0, stream>>>(point_code, M, d1, box, neighbours);
  launch_check("lattice_links");
}

}  // namespace crfseg::kernels::cuda
