// Confusion-matrix metrics; definitions in metrics.h.
#include "tools/crfseg/metrics.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "tensor/ops.h"

namespace crfseg::app {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_index)
    : classes_(num_classes), ignore_index_(ignore_index) {
  CRFSEG_CHECK(num_classes >= 1, ValueError, "ConfusionMatrix: expected num_classes >= 1, got ", num_classes);
  counts_.assign(static_cast<size_t>(num_classes * num_classes), 0);
}

void ConfusionMatrix::add(const Tensor& predictions, const Tensor& targets) {
  const char* op = "ConfusionMatrix::add";
  CRFSEG_CHECK(predictions.defined() && targets.defined(), ValueError, op, ": undefined tensor");
  CRFSEG_CHECK(predictions.dtype() == DType::i64 && targets.dtype() == DType::i64, DTypeError, op,
               ": expected i64 predictions and targets, got ", dtype_name(predictions.dtype()), " and ",
               dtype_name(targets.dtype()));
  CRFSEG_CHECK(predictions.shape() == targets.shape(), ShapeError, op, ": predictions ",
               shape_str(predictions.shape()), " and targets ", shape_str(targets.shape()), " differ in shape");
  const Tensor p = ops::contiguous(ops::to_device(predictions, Device::cpu())),
               t = ops::contiguous(ops::to_device(targets, Device::cpu()));
  const int64_t* pp = p.data<int64_t>();
  const int64_t* tp = t.data<int64_t>();
  for (int64_t i = 0; i < p.numel(); ++i) {
    if (tp[i] == ignore_index_) continue;
    CRFSEG_CHECK(tp[i] >= 0 && tp[i] < classes_ && pp[i] >= 0 && pp[i] < classes_, ValueError, op,
                 ": class outside [0, ", classes_, ") at flat index ", i, ": target ", tp[i], ", prediction ", pp[i]);
    ++counts_[static_cast<size_t>(tp[i] * classes_ + pp[i])];
  }
}

void ConfusionMatrix::add_logits(const Tensor& logits, const Tensor& targets) {
  CRFSEG_CHECK(logits.defined() && logits.dim() >= 2 && logits.shape()[1] == classes_, ShapeError,
               "ConfusionMatrix::add_logits: expected logits [N, ", classes_, ", ...], got ",
               logits.defined() ? shape_str(logits.shape()) : std::string("an undefined tensor"));
  add(ops::argmax(logits, 1), targets);
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  CRFSEG_CHECK(other.classes_ == classes_, ValueError, "ConfusionMatrix::merge: ", other.classes_,
               " classes into ", classes_);
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
}

void ConfusionMatrix::set_counts(const std::vector<int64_t>& counts) {
  CRFSEG_CHECK(counts.size() == counts_.size(), ValueError, "ConfusionMatrix::set_counts: expected ",
               counts_.size(), " counts, got ", counts.size());
  counts_ = counts;
}

void ConfusionMatrix::reset() { std::fill(counts_.begin(), counts_.end(), 0); }

int64_t ConfusionMatrix::total() const {
  int64_t s = 0;
  for (int64_t v : counts_) s += v;
  return s;
}

double ConfusionMatrix::pixel_accuracy() const {
  int64_t diag = 0;
  for (int64_t c = 0; c < classes_; ++c) diag += count(c, c);
  const int64_t n = total();
  return n == 0 ? NAN : static_cast<double>(diag) / static_cast<double>(n);
}

namespace {
struct ClassCounts {
  int64_t tp = 0, fp = 0, fn = 0;
};
}  // namespace

static ClassCounts class_counts(const ConfusionMatrix& m, int64_t c) {
  ClassCounts k;
  k.tp = m.count(c, c);
  for (int64_t o = 0; o < m.num_classes(); ++o) {
    if (o == c) continue;
    k.fp += m.count(o, c);
    k.fn += m.count(c, o);
  }
  return k;
}

double ConfusionMatrix::iou(int64_t c) const {
  const ClassCounts k = class_counts(*this, c);
  const int64_t d = k.tp + k.fp + k.fn;
  return d == 0 ? NAN : static_cast<double>(k.tp) / static_cast<double>(d);
}

double ConfusionMatrix::dice(int64_t c) const {
  const ClassCounts k = class_counts(*this, c);
  const int64_t d = 2 * k.tp + k.fp + k.fn;
  return d == 0 ? NAN : 2.0 * static_cast<double>(k.tp) / static_cast<double>(d);
}

static double nan_mean(const ConfusionMatrix& m, double (ConfusionMatrix::*f)(int64_t) const) {
  double s = 0;
  int n = 0;
  for (int64_t c = 0; c < m.num_classes(); ++c) {
    const double v = (m.*f)(c);
    if (!std::isnan(v)) {
      s += v;
      ++n;
    }
  }
  return n == 0 ? NAN : s / n;
}

double ConfusionMatrix::mean_iou() const { return nan_mean(*this, &ConfusionMatrix::iou); }
double ConfusionMatrix::mean_dice() const { return nan_mean(*this, &ConfusionMatrix::dice); }

static std::string class_name(const std::vector<std::string>& names, int64_t c) {
  return c < static_cast<int64_t>(names.size()) ? names[c] : "class " + std::to_string(c);
}

std::string ConfusionMatrix::table(const std::vector<std::string>& names) const {
  std::ostringstream out;
  char buf[160];
  out << "| class | IoU | Dice | pixels |\n|---|---|---|---|\n";
  for (int64_t c = 0; c < classes_; ++c) {
    int64_t pixels = 0;
    for (int64_t p = 0; p < classes_; ++p) pixels += count(c, p);
    std::snprintf(buf, sizeof buf, "| %s | %.4f | %.4f | %lld |\n", class_name(names, c).c_str(), iou(c), dice(c),
                  static_cast<long long>(pixels));
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "| **mean** | %.4f | %.4f | %lld |\n\npixel accuracy %.4f\n", mean_iou(),
                mean_dice(), static_cast<long long>(total()), pixel_accuracy());
  out << buf;
  return out.str();
}

std::string ConfusionMatrix::csv(const std::vector<std::string>& names) const {
  std::ostringstream out;
  out << "truth\\predicted";
  for (int64_t c = 0; c < classes_; ++c) out << ',' << class_name(names, c);
  out << '\n';
  for (int64_t t = 0; t < classes_; ++t) {
    out << class_name(names, t);
    for (int64_t p = 0; p < classes_; ++p) out << ',' << count(t, p);
    out << '\n';
  }
  return out.str();
}

}  // namespace crfseg::app
