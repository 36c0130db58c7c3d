// Reductions over an arbitrary set of dims on raw strided pointers.
//
// A ReducePlan splits the input's dims into kept dims (one output element per
// kept index) and reduced dims (the block summed/maxed into that element).
// Output elements are split over OpenMP threads; each element is reduced by
// one thread in a fixed order, so results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace crfseg::kernels::cpu {

struct ReducePlan {
  std::vector<int64_t> kept_shape, kept_strides;        // input strides of the kept dims
  std::vector<int64_t> reduced_shape, reduced_strides;  // input strides of the reduced dims
  int64_t outputs() const;
  int64_t block() const;  // elements per reduced block
  // Input offset of the first element of output o's block.
  int64_t base_offset(int64_t o) const;
};

ReducePlan make_reduce_plan(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                            const std::vector<int64_t>& sorted_dims);

// Visits the offsets of one block in row-major order of the reduced dims:
// visit(offset, j) for j = 0 .. block()-1. The last reduced dim is the inner loop.
template <typename Visit>
void for_each_in_block(const ReducePlan& p, int64_t base, Visit visit) {
  const int64_t nd = static_cast<int64_t>(p.reduced_shape.size());
  if (nd == 0) {
    visit(base, 0);
    return;
  }
  const int64_t inner = p.reduced_shape[nd - 1], inner_stride = p.reduced_strides[nd - 1];
  const int64_t outer = p.block() / (inner == 0 ? 1 : inner);
  std::vector<int64_t> idx(nd, 0);
  int64_t offset = base, j = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) visit(offset + i * inner_stride, j++);
    // Odometer increment over the outer reduced dims.
    for (int64_t d = nd - 2; d >= 0; --d) {
      offset += p.reduced_strides[d];
      if (++idx[d] < p.reduced_shape[d]) break;
      offset -= p.reduced_strides[d] * p.reduced_shape[d];
      idx[d] = 0;
    }
  }
}

// out[o] = sum over block o (accumulated in double), times `scale`.
template <typename T>
void sum_reduce(const ReducePlan& p, const T* in, T* out, double scale) {
  const int64_t n = p.outputs();
#pragma omp parallel for schedule(static) if (n > 1 && n * p.block() >= (1 << 15))
  for (int64_t o = 0; o < n; ++o) {
    double acc = 0.0;
    for_each_in_block(p, p.base_offset(o), [&](int64_t off, int64_t) { acc += static_cast<double>(in[off]); });
    out[o] = static_cast<T>(acc * scale);
  }
}

// out[o] = max over block o; index[o] = position of its first maximum in the
// block (row-major over the reduced dims). NaN propagates as the maximum.
template <typename T>
void max_reduce(const ReducePlan& p, const T* in, T* out, int64_t* index) {
  const int64_t n = p.outputs();
#pragma omp parallel for schedule(static) if (n > 1 && n * p.block() >= (1 << 15))
  for (int64_t o = 0; o < n; ++o) {
    T best = T(0);
    int64_t best_j = -1;
    for_each_in_block(p, p.base_offset(o), [&](int64_t off, int64_t j) {
      const T v = in[off];
      if (best_j < 0 || v > best || (v != v && best == best)) {
        best = v;
        best_j = j;
      }
    });
    out[o] = best;
    index[o] = best_j;
  }
}

}  // namespace crfseg::kernels::cpu
