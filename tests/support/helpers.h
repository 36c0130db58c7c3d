// Test helpers: tolerant comparison with a useful report, random inputs,
// multi-index iteration for plain reference loops.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "crfseg.h"
#include "tensor/cuda_memory.h"

namespace crfseg::test {

// Compares element by element with |a - b| <= atol + rtol * |b| (b is the
// reference). Returns "" on success, else max errors and the first mismatch.
inline std::string compare(const std::vector<double>& got, const std::vector<double>& want, double atol,
                           double rtol) {
  if (got.size() != want.size()) {
    return "size mismatch: got " + std::to_string(got.size()) + ", want " + std::to_string(want.size());
  }
  double max_abs = 0, max_rel = 0;
  long first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    const bool same_nan = std::isnan(got[i]) && std::isnan(want[i]);
    max_abs = std::max(max_abs, err);
    if (want[i] != 0) max_rel = std::max(max_rel, err / std::abs(want[i]));
    if (!same_nan && !(err <= atol + rtol * std::abs(want[i])) && first_bad < 0) first_bad = static_cast<long>(i);
  }
  if (first_bad < 0) return "";
  std::ostringstream out;
  out.precision(9);
  out << "max abs err " << max_abs << ", max rel err " << max_rel << ", first mismatch at " << first_bad
      << ": got " << got[first_bad] << ", want " << want[first_bad];
  return out.str();
}

inline std::string compare(const Tensor& got, const std::vector<double>& want, double atol = 1e-5,
                           double rtol = 1e-5) {
  return compare(ops::contiguous(got).to_vector<double>(), want, atol, rtol);
}

#define CHECK_CLOSE(got, want, ...)                                             \
  do {                                                                          \
    const std::string crfseg_report_ = ::crfseg::test::compare(got, want, ##__VA_ARGS__); \
    CHECK_MESSAGE(crfseg_report_.empty(), crfseg_report_);                     \
  } while (0)

// Calls fn(index) for every multi-index of `shape` in row-major order.
inline void for_each_index(const Shape& shape, const std::function<void(const std::vector<int64_t>&)>& fn) {
  if (numel(shape) == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  while (true) {
    fn(idx);
    int64_t d = static_cast<int64_t>(shape.size()) - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// The index into an operand of shape `shape` broadcast to an output index.
inline std::vector<int64_t> broadcast_index(const std::vector<int64_t>& out_idx, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  const size_t lead = out_idx.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) idx[d] = shape[d] == 1 ? 0 : out_idx[lead + d];
  return idx;
}

// Random tensor with values in [lo, hi), reproducible per seed.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::f32, double lo = -1.0,
                            double hi = 1.0) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape, {dtype});
  uniform_(t, lo, hi, gen);
  return t;
}

// Values of a tensor (any layout) in row-major order.
inline std::vector<double> values(const Tensor& t) { return ops::contiguous(t).to_vector<double>(); }

// max |a - b| over two tensors of the same shape.
inline double max_abs_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> av = values(a), bv = values(b);
  double m = 0;
  for (size_t i = 0; i < av.size(); ++i) m = std::max(m, std::abs(av[i] - bv[i]));
  return m;
}

// Exception helper: runs fn, expects ErrorType whose what() contains `needle`.
template <typename ErrorType, typename Fn>
void check_throws_with(Fn fn, const std::string& needle) {
  bool thrown = false;
  try {
    fn();
  } catch (const ErrorType& e) {
    thrown = true;
    const std::string what = e.what();
    CHECK_MESSAGE(what.find(needle) != std::string::npos, (std::string("message \"") + what + "\" lacks \"" + needle + "\""));
  }
  CHECK_MESSAGE(thrown, (std::string("expected an exception containing \"") + needle + "\""));
}

}  // namespace crfseg::test
