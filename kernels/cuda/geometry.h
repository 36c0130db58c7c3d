// The index space of a strided CUDA elementwise kernel, shared by host code
// (built with g++) and kernels (nvcc).
//
// A Geometry holds up to kMaxDims coalesced dims (kernels/cpu/strided_loop.h
// merges and drops them exactly as the CPU loops do) and, for each of up to
// kMaxOperands operands, its strides in elements (0 in a broadcast dim).
// Thread i handles the i-th element in row-major order of the output and
// finds each operand's element with offset(), one division per dim but the
// outermost (32-bit where the values fit).
//
// offset() is CRFSEG_HD (kernels/hd.h): the same index math runs in the CPU
// tests (tests/kernels/test_cuda_geometry.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/strided_loop.h"
#include "kernels/hd.h"
#include "tensor/error.h"


struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace crfseg::kernels::cuda {

using Stream = CUstream_st*;

constexpr int kMaxDims = 8;
constexpr int kMaxOperands = 4;

struct Geometry {
  int ndim = 1;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};

  // Element offset of operand k for the i-th element (row-major over
  // sizes), 0 <= i < numel. The outermost dim needs no division (what is
  // left of i is its index), so a contiguous operand (one dim) needs none.
  CRFSEG_HD int64_t offset(int k, int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d > 0; --d) {
      const int64_t q = kernels::quotient(i, sizes[d]);  // 32-bit where it fits (hd.h)
      off += (i - q * sizes[d]) * strides[k][d];
      i = q;
    }
    return off + i * strides[k][0];
  }
};

// ---- four elements at a time (for_each.cuh's maps) ----
// Whether the output's elements can go four at a time: innermost dim
// contiguous in the output and a multiple of 4 long (so no four straddle
// two rows).
inline bool quad_shape(const Geometry& g) {
  return g.numel > 0 && g.sizes[g.ndim - 1] % 4 == 0 && g.strides[0][g.ndim - 1] == 1;
}

// Whether p may be read as a Quad (for_each.cuh): four elements of `bytes`
// at an address aligned to the four.
inline bool quad_aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % (4 * bytes) == 0; }

// Whether operand k (base p, elements of `bytes`) can be read four at a
// time from every multiple-of-4 element: contiguous along the innermost dim
// with its base and outer strides aligned to four elements, or broadcast
// along it (stride 0: one value for the four).
inline bool quad_operand(const Geometry& g, int k, const void* p, size_t bytes) {
  const int inner = g.ndim - 1;
  const int64_t step = g.strides[k][inner];
  if (step == 0) return true;
  if (step != 1 || !quad_aligned(p, bytes)) return false;
  for (int d = 0; d < inner; ++d) {
    if (g.strides[k][d] % 4 != 0) return false;
  }
  return true;
}

// Operand k's stride along the innermost dim: 1 (a vector) or 0 (one value).
inline int64_t inner_step(const Geometry& g, int k) { return g.strides[k][g.ndim - 1]; }

// Builds the Geometry of `shape` for N operands with the given strides.
// Throws NotImplementedError (naming `op`) if more than kMaxDims dims remain
// after coalescing.
template <int N>
Geometry make_geometry(const char* op, const std::vector<int64_t>& shape,
                       const std::array<const int64_t*, N>& strides) {
  static_assert(N >= 1 && N <= kMaxOperands);
  Geometry g;
  g.numel = 1;
  for (int64_t s : shape) g.numel *= s;
  if (g.numel == 0) return g;
  const cpu::StridedGeometry<N> c = cpu::coalesce<N>(shape, strides);
  CRFSEG_CHECK(c.shape.size() <= static_cast<size_t>(kMaxDims), NotImplementedError, op,
               ": CUDA elementwise kernels take at most ", kMaxDims, " non-mergeable dims, got ",
               c.shape.size());
  g.ndim = static_cast<int>(c.shape.size());
  for (int d = 0; d < g.ndim; ++d) {
    g.sizes[d] = c.shape[static_cast<size_t>(d)];
    for (int k = 0; k < N; ++k) g.strides[k][d] = c.strides[static_cast<size_t>(k)][static_cast<size_t>(d)];
  }
  return g;
}

}  // namespace crfseg::kernels::cuda
