// strided_rows: the one loop every strided CPU kernel is built on.
//
// An N-operand elementwise op over an ndim-dimensional index space is run as
// rows: all dims but the last are flattened into a row index (split across
// OpenMP threads), and the last dim is handed to `row(offsets, n, steps)` as a
// 1-D strided loop the compiler can vectorise when the steps are 1.
//
// Before looping, dims are coalesced: size-1 dims are dropped, and a dim is
// merged into its inner neighbour when every operand's stride allows it
// (stride[i] == stride[i+1] * shape[i+1]). A contiguous tensor becomes one
// long row, so the common case costs nothing extra.
//
// Strides are in elements; a broadcast operand has stride 0 in that dim.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace crfseg::kernels::cpu {

template <int N>
struct StridedGeometry {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, N> strides;
};

template <int N>
StridedGeometry<N> coalesce(const std::vector<int64_t>& shape,
                            const std::array<const int64_t*, N>& strides) {
  StridedGeometry<N> g;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!g.shape.empty()) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k) {
        mergeable = mergeable && g.strides[k].back() == strides[k][d] * shape[d];
      }
      if (mergeable) {
        g.shape.back() *= shape[d];
        for (int k = 0; k < N; ++k) g.strides[k].back() = strides[k][d];
        continue;
      }
    }
    g.shape.push_back(shape[d]);
    for (int k = 0; k < N; ++k) g.strides[k].push_back(strides[k][d]);
  }
  if (g.shape.empty()) {  // a scalar, or all dims of size 1
    g.shape.push_back(1);
    for (int k = 0; k < N; ++k) g.strides[k].push_back(0);
  }
  return g;
}

// Calls row(std::array<int64_t,N> offsets, int64_t n, std::array<int64_t,N> steps)
// once per row. Rows run in parallel when the total work is large enough.
template <int N, typename RowFn>
void strided_rows(const std::vector<int64_t>& shape, const std::array<const int64_t*, N>& strides,
                  RowFn row) {
  for (int64_t s : shape) {
    if (s == 0) return;
  }
  const StridedGeometry<N> g = coalesce<N>(shape, strides);
  const int64_t ndim = static_cast<int64_t>(g.shape.size());
  const int64_t inner = g.shape.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < ndim; ++d) rows *= g.shape[d];
  std::array<int64_t, N> steps;
  for (int k = 0; k < N; ++k) steps[k] = g.strides[k].back();

  // Below ~32K elements the thread start-up costs more than it saves.
  const bool parallel = rows > 1 && rows * inner >= (1 << 15);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<int64_t, N> offsets{};
    int64_t rest = r;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      const int64_t idx = rest % g.shape[d];
      rest /= g.shape[d];
      for (int k = 0; k < N; ++k) offsets[k] += idx * g.strides[k][d];
    }
    row(offsets, inner, steps);
  }
}

}  // namespace crfseg::kernels::cpu
