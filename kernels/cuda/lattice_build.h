// The permutohedral lattice built on the GPU, for a batch of images at once:
// the launches of the sorted build's steps (kernels/lattice_rules.h has the
// algorithm and the per-element rules; crf/permutohedral_cuda.cpp drives
// the steps, sizes the buffers and reads back the two numbers the host
// needs: the keys' bounds, for the code box, and the number of lattice
// points). Every pointer is device memory on the current device, every
// launch asynchronous on `stream`.
// Status: compiled for sm_90a; NOT yet run on a GPU when written (no device
// was lent). Its host twin (crf::lattice_tables_sorted) is tested on the
// CPU; test on a device: build/tests/test_cuda -tc='*lattice*'.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/lattice_rules.h"

namespace crfseg::kernels::cuda {

// The CRF's bilateral features of B images [B x C x H x W] (double) into
// features [B H W x (2 + C)] (kernels::bilateral_feature per pixel).
void bilateral_features(const double* image, int64_t B, int64_t C, int64_t H, int64_t W, double theta_alpha,
                        double theta_beta, double* features, cudaStream_t stream);

// Step 1: embeds N points (features [N x d], divided by their thetas)
// into keys [N (d + 1) x d] and barycentric [N (d + 1)]; bounds [2 d] gets
// the keys' smallest (bounds[k]) and largest (bounds[d + k]) coordinates,
// and *bad 1 when some coordinate is out of range (else 0). scale: d
// values (kernels::lattice_embed_scale), on the host.
void lattice_embed(const double* features, int64_t N, int64_t d, const double* scale, int32_t* keys,
                   float* barycentric, int32_t* bounds, int32_t* bad, cudaStream_t stream);

// Steps 2-3: codes the E entries (keys [E x d]), sorts them by code,
// stably, over bits [0, box.end_bit), into code_sorted / entry_sorted (code
// and entry are the sort's input buffers, overwritten), and writes count
// [E]: the distinct codes among the first s + 1 (count[E - 1] = M). temp:
// lattice_sort_temp_bytes(E, box) bytes of device scratch for CUB.
size_t lattice_sort_temp_bytes(int64_t E, const LatticeBatchBox& box);
void lattice_sort(const int32_t* keys, int64_t E, int64_t d, int64_t entries_per_image, const LatticeBatchBox& box,
                  uint64_t* code, uint32_t* entry, uint64_t* code_sorted, uint32_t* entry_sorted, int32_t* count,
                  void* temp, size_t temp_bytes, cudaStream_t stream);

// Step 4: point_code [M], splat_offsets [M + 1], splat_points and
// splat_weights [E], vertices [E] from the sorted entries (d1 = d + 1).
void lattice_tables(const uint64_t* code_sorted, const uint32_t* entry_sorted, const int32_t* count,
                    const float* barycentric, int64_t E, int64_t d1, uint64_t* point_code, int64_t* splat_offsets,
                    int32_t* splat_points, float* splat_weights, int32_t* vertices, cudaStream_t stream);

// Step 5: neighbours [(d + 1) x M x 2], every blur link of the M points.
void lattice_links(const uint64_t* point_code, int64_t M, int64_t d, const LatticeBatchBox& box, int32_t* neighbours,
                   cudaStream_t stream);

}  // namespace crfseg::kernels::cuda
