// Counting the conversions made while loading a dataset's images.
//
// Real datasets hold odd files: Oxford-IIIT Pet has grayscale JPEGs, RGBA
// PNGs and PNGs named .jpg. They are converted as they load (gray replicated
// to RGB, alpha dropped; see convert_channels) and counted here, once per
// sample however often it is read, so the totals are the same whether the
// files were checked at construction or as training reads them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "datasets/image_io.h"

namespace crfseg::data {

struct ConversionCounts {
  int64_t gray_to_rgb = 0;    // gray (or gray+alpha) images replicated to RGB
  int64_t rgb_to_gray = 0;    // colour images reduced to luma for 1-channel input
  int64_t alpha_dropped = 0;  // images whose alpha channel was dropped
  int64_t mislabelled = 0;    // files whose content is not the format their extension names
  int64_t total() const { return gray_to_rgb + rgb_to_gray + alpha_dropped + mislabelled; }
  std::string summary() const;  // "2 gray->RGB, 1 alpha dropped, 1 mislabelled format"
};

class ConversionLog {
 public:
  explicit ConversionLog(size_t samples);
  // Records how the image of sample `index`, loaded from `path` and
  // converted to `channels`, differed from the file. Thread-safe.
  void record(size_t index, const Image& image, int64_t channels, const std::string& path);
  ConversionCounts counts() const;

 private:
  size_t size_;
  std::unique_ptr<std::atomic<uint8_t>[]> flags_;
};

}  // namespace crfseg::data
