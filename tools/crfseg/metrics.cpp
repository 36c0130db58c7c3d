// Confusion-matrix metrics; definitions in metrics.h.
#include "tools/crfseg/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "tensor/ops.h"

namespace crfseg::app {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_index)
    : classes_(num_classes), ignore_index_(ignore_index) {
  CRFSEG_CHECK(num_classes >= 1, ValueError, "ConfusionMatrix: expected num_classes >= 1, got ", num_classes);
  counts_.assign(static_cast<size_t>(num_classes * num_classes), 0);
}

void ConfusionMatrix::add(const Tensor& predictions, const Tensor& targets) {
  // Counted on the predictions' device (on a GPU the counts stay there
  // until read); targets elsewhere (evaluate's boundary bands are made on the
  // host) are moved there first. A bad pair throws before any count is
  // added (on a GPU at the read that raises it; its batch adds nothing).
  CRFSEG_CHECK(predictions.defined() && targets.defined(), ValueError, "ConfusionMatrix::add: undefined tensor");
  // Host targets go up on the upload stream (ops::upload_ahead): the host
  // waits for that copy alone, not for the predictions' work.
  const Tensor moved = targets.device() == predictions.device() ? targets
                       : targets.device().is_cpu()             ? ops::upload_ahead(targets, predictions.device())
                                                               : targets.to(predictions.device());
  if (predictions.device().is_cuda()) {
    if (on_device_.defined() && on_device_.device() != predictions.device()) fetch();  // (a model moved GPUs)
    on_device_ = ops::confusion_counts(predictions, moved, classes_, ignore_index_, on_device_);
    return;
  }
  const Tensor counts = ops::confusion_counts(predictions, moved, classes_, ignore_index_);
  const int64_t* c = counts.data<int64_t>();
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += c[i];
}

void ConfusionMatrix::fetch() const {
  // Read before it is dropped: a deferred error raised by this read leaves
  // the counts on the device, to be read again by the next call.
  const std::vector<int64_t> c = on_device_.to(Device::cpu()).to_vector<int64_t>();
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += c[i];
  on_device_ = Tensor();
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
  const std::vector<int64_t>& theirs = other.counts();
  counts();  // this one's device counts, if any, read first
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += theirs[i];
}

void ConfusionMatrix::set_counts(const std::vector<int64_t>& counts) {
  CRFSEG_CHECK(counts.size() == counts_.size(), ValueError, "ConfusionMatrix::set_counts: expected ",
               counts_.size(), " counts, got ", counts.size());
  counts_ = counts;
  on_device_ = Tensor();
}

void ConfusionMatrix::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  on_device_ = Tensor();
}

int64_t ConfusionMatrix::total() const {
  int64_t s = 0;
  for (int64_t v : counts()) s += v;
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

// The band test "the square holds a label other than mine" is "the square's
// smallest and largest labels differ" (the pixel itself is in its square), and
// a square's min and max are separable: a pass along each row, then one down
// each column of the row results. O(H W width) per image.
Tensor boundary_band_targets(const Tensor& targets, int64_t width, int64_t ignore_index) {
  const char* op = "boundary_band_targets";
  CRFSEG_CHECK(targets.defined() && targets.dtype() == DType::i64, DTypeError, op, ": expected i64 targets, got ",
               targets.defined() ? dtype_name(targets.dtype()) : "an undefined tensor");
  CRFSEG_CHECK(targets.dim() >= 2, ShapeError, op, ": expected targets [..., H, W], got ", shape_str(targets.shape()));
  CRFSEG_CHECK(width >= 0, ValueError, op, ": expected a band width >= 0, got ", width);
  Tensor out = ops::clone(ops::contiguous(ops::to_device(targets, Device::cpu())));
  const int64_t h = targets.shape()[targets.dim() - 2], w = targets.shape()[targets.dim() - 1];
  const int64_t planes = h * w == 0 ? 0 : out.numel() / (h * w);
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();  // min over no label
  std::vector<int64_t> row_min(static_cast<size_t>(h * w)), row_max(static_cast<size_t>(h * w));
  int64_t* t = out.data<int64_t>();
  for (int64_t n = 0; n < planes; ++n, t += h * w) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        int64_t lo = kNone, hi = -kNone;
        for (int64_t i = std::max<int64_t>(0, x - width); i <= std::min(w - 1, x + width); ++i) {
          const int64_t v = t[y * w + i];
          if (v == ignore_index) continue;
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        row_min[static_cast<size_t>(y * w + x)] = lo;
        row_max[static_cast<size_t>(y * w + x)] = hi;
      }
    }
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        int64_t lo = kNone, hi = -kNone;
        for (int64_t j = std::max<int64_t>(0, y - width); j <= std::min(h - 1, y + width); ++j) {
          lo = std::min(lo, row_min[static_cast<size_t>(j * w + x)]);
          hi = std::max(hi, row_max[static_cast<size_t>(j * w + x)]);
        }
        if (width == 0 || lo == hi) t[y * w + x] = ignore_index;
      }
    }
  }
  return out;
}

}  // namespace crfseg::app
