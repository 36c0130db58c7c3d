// Strided elementwise maps on raw pointers: out[i] = f(a[i], b[i], ...).
//
// Each operand comes with its own strides (elements; 0 = broadcast) over a
// common index space `shape`. strided_rows() coalesces dims and splits rows
// over OpenMP threads; when every step in a row is 1 the inner loop is a plain
// contiguous loop that GCC vectorises (AVX2/AVX-512 with -march=native).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/strided_loop.h"

namespace crfseg::kernels::cpu {

template <typename TOut, typename TA, typename F>
void map1(const std::vector<int64_t>& shape, TOut* out, const int64_t* out_st, const TA* a,
          const int64_t* a_st, F f) {
  strided_rows<2>(shape, {out_st, a_st}, [&](std::array<int64_t, 2> o, int64_t n, std::array<int64_t, 2> s) {
    TOut* po = out + o[0];
    const TA* pa = a + o[1];
    if (s[0] == 1 && s[1] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * s[0]] = f(pa[i * s[1]]);
    }
  });
}

template <typename TOut, typename TA, typename TB, typename F>
void map2(const std::vector<int64_t>& shape, TOut* out, const int64_t* out_st, const TA* a,
          const int64_t* a_st, const TB* b, const int64_t* b_st, F f) {
  strided_rows<3>(shape, {out_st, a_st, b_st},
                  [&](std::array<int64_t, 3> o, int64_t n, std::array<int64_t, 3> s) {
                    TOut* po = out + o[0];
                    const TA* pa = a + o[1];
                    const TB* pb = b + o[2];
                    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
#pragma omp simd
                      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
                    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {  // row-broadcast b
                      const TB bv = *pb;
#pragma omp simd
                      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], bv);
                    } else {
                      for (int64_t i = 0; i < n; ++i) po[i * s[0]] = f(pa[i * s[1]], pb[i * s[2]]);
                    }
                  });
}

template <typename TOut, typename TA, typename TB, typename TC, typename F>
void map3(const std::vector<int64_t>& shape, TOut* out, const int64_t* out_st, const TA* a,
          const int64_t* a_st, const TB* b, const int64_t* b_st, const TC* c, const int64_t* c_st, F f) {
  strided_rows<4>(shape, {out_st, a_st, b_st, c_st},
                  [&](std::array<int64_t, 4> o, int64_t n, std::array<int64_t, 4> s) {
                    TOut* po = out + o[0];
                    const TA* pa = a + o[1];
                    const TB* pb = b + o[2];
                    const TC* pc = c + o[3];
                    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
#pragma omp simd
                      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i], pc[i]);
                    } else {
                      for (int64_t i = 0; i < n; ++i) {
                        po[i * s[0]] = f(pa[i * s[1]], pb[i * s[2]], pc[i * s[3]]);
                      }
                    }
                  });
}

}  // namespace crfseg::kernels::cpu
