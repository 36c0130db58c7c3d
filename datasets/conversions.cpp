// Conversion counting (see conversions.h).
#include "datasets/conversions.h"

#include <sstream>

namespace crfseg::data {

namespace {
enum Flag : uint8_t { kGrayToRgb = 1, kRgbToGray = 2, kAlphaDropped = 4, kMislabelled = 8 };
}

std::string ConversionCounts::summary() const {
  std::ostringstream out;
  const char* sep = "";
  auto item = [&](int64_t n, const char* what) {
    if (n == 0) return;
    out << sep << n << ' ' << what;
    sep = ", ";
  };
  item(gray_to_rgb, "gray->RGB");
  item(rgb_to_gray, "RGB->gray");
  item(alpha_dropped, "alpha dropped");
  item(mislabelled, "mislabelled format");
  return total() == 0 ? "none" : out.str();
}

ConversionLog::ConversionLog(size_t samples) : size_(samples), flags_(new std::atomic<uint8_t>[samples]) {
  for (size_t i = 0; i < samples; ++i) flags_[i].store(0, std::memory_order_relaxed);
}

void ConversionLog::record(size_t index, const Image& image, int64_t channels, const std::string& path) {
  if (index >= size_) return;
  uint8_t flags = 0;
  const int64_t from = image.file_channels;
  if ((from == 1 || from == 2) && channels == 3) flags |= kGrayToRgb;
  if (from >= 3 && channels == 1) flags |= kRgbToGray;
  if ((from == 2 || from == 4) && channels != from) flags |= kAlphaDropped;
  if (extension_mismatch(path, image)) flags |= kMislabelled;
  flags_[index].fetch_or(flags, std::memory_order_relaxed);
}

ConversionCounts ConversionLog::counts() const {
  ConversionCounts c;
  for (size_t i = 0; i < size_; ++i) {
    const uint8_t f = flags_[i].load(std::memory_order_relaxed);
    c.gray_to_rgb += (f & kGrayToRgb) != 0;
    c.rgb_to_gray += (f & kRgbToGray) != 0;
    c.alpha_dropped += (f & kAlphaDropped) != 0;
    c.mislabelled += (f & kMislabelled) != 0;
  }
  return c;
}

}  // namespace crfseg::data
