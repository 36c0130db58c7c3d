// fuzz_tiff: datasets/tiff.h read_tiff() on arbitrary bytes: header, the IFD
// chain (loops, thumbnails), tag decoding, strip geometry and every page's
// pixels, in both byte orders.
//
//   scripts/fuzz.sh 60 fuzz_tiff       corpus: fuzz/corpus/fuzz_tiff, dictionary fuzz/dict/tiff.dict
#include <cstddef>
#include <cstdint>

#include "datasets/tiff.h"
#include "fuzz/fuzz_check.h"
#include "tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfseg::data;
  try {
    const TiffFile file(data, size, "fuzz-input");
    FUZZ_REQUIRE(file.num_pages() >= 1, "TiffFile without pages did not throw");
    size_t samples = 0;
    for (int64_t i = 0; i < file.num_pages(); ++i) {
      const TiffPage& page = file.page(i);
      const Image image = file.read_page(i);
      FUZZ_REQUIRE(image.height == page.height && image.width == page.width && image.channels == page.channels,
                   "page geometry and decoded image disagree");
      FUZZ_REQUIRE(image.pixels.size() == static_cast<size_t>(page.height * page.width * page.channels),
                   "pixel buffer size");
      // The reader promises no page holds more samples than the file has bytes.
      FUZZ_REQUIRE(image.pixels.size() <= size, "a page decoded to more samples than the file has bytes");
      samples += image.pixels.size();
    }
    (void)samples;
    FUZZ_REQUIRE(read_tiff(data, size, "fuzz-input").size() == static_cast<size_t>(file.num_pages()),
                 "read_tiff and TiffFile disagree on the page count");
  } catch (const crfseg::Error&) {
  }
  return 0;
}
