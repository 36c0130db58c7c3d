// fuzz_image: datasets/image_io.h decode_image() on arbitrary bytes: format
// detection by magic bytes, stb_image (PNG, JPEG, BMP, PGM/PPM, GIF) and our
// TIFF reader (first page), then channel conversion and the label-image path.
//
// Harness limit: headers claiming more than kHarnessPixels pixels are
// skipped after probe_image(). Such images are legal (up to kMaxImagePixels,
// which decode_image enforces itself) but decoding them only slows the run.
//
//   scripts/fuzz.sh 60 fuzz_image      corpus: fuzz/corpus/fuzz_image
#include <cstddef>
#include <cstdint>

#include "datasets/image_io.h"
#include "datasets/labels.h"
#include "fuzz/fuzz_check.h"
#include "tensor/error.h"

namespace {
constexpr int64_t kHarnessPixels = int64_t{1} << 20;

void check_image(const crfseg::data::Image& im, int64_t want_channels) {
  FUZZ_REQUIRE(im.height > 0 && im.width > 0, "decoded image is empty");
  FUZZ_REQUIRE(want_channels == 0 ? (im.channels >= 1 && im.channels <= 4) : im.channels == want_channels,
               "unexpected channel count");
  FUZZ_REQUIRE(im.bit_depth == 8 || im.bit_depth == 16, "bit depth not 8 or 16");
  FUZZ_REQUIRE(im.pixels.size() == static_cast<size_t>(im.height * im.width * im.channels), "pixel buffer size");
  FUZZ_REQUIRE(im.format != crfseg::data::ImageFormat::unknown, "decoded image without a format");
  if (im.bit_depth == 8) {
    for (uint16_t v : im.pixels) FUZZ_REQUIRE(v <= 255, "8-bit image holds a value above 255");
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfseg::data;
  try {
    const ImageInfo info = probe_image(data, size, "fuzz-input");
    if (info.width <= 0 || info.height <= 0 || info.height > kHarnessPixels / info.width) return 0;
    const Image image = decode_image(data, size, "fuzz-input");
    check_image(image, 0);
    FUZZ_REQUIRE(image.height == info.height && image.width == info.width, "probe_image and decode_image disagree");
    check_image(convert_channels(image, 1), 1);
    check_image(convert_channels(image, 3), 3);
    check_image(to_label_channel(image, "fuzz-input", "fuzz_image"), 1);
  } catch (const crfseg::Error&) {
    // A clear exception is the right answer to a malformed file.
  }
  return 0;
}
