// A baseline TIFF reader and writer, enough for tomography slice stacks.
//
// Supported (TIFF 6.0 baseline, classic 32-bit offsets):
//   - little ("II*\0") and big ("MM\0*") endian files;
//   - several pages, following the IFD chain; pages flagged reduced-resolution
//     (NewSubfileType bit 0, i.e. thumbnails) are skipped;
//   - uncompressed (Compression = 1) strips, chunky (PlanarConfiguration = 1)
//     or any planar configuration with one sample per pixel;
//   - 8- or 16-bit unsigned samples, gray (BlackIsZero, or WhiteIsZero, which
//     is inverted on read) or RGB, with or without an extra (alpha) sample.
// Everything else is rejected with an IOError naming the path, the page and
// the feature, e.g. "TiffFile: '/d/s.tif' page 0: compression 5 (LZW) is not
// supported; save uncompressed". That includes compressed, tiled, palette,
// float or 32-bit files and BigTIFF.
//
// A TiffFile parses the directories once and reads a page's strips on demand
// (seeking, not reading the whole file), so slices of a large stack can be
// fetched one at a time, from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datasets/image_io.h"

namespace crfseg::data {

struct TiffPage {
  int64_t width = 0, height = 0, channels = 0;
  int bit_depth = 8;
  bool white_is_zero = false;
  int64_t rows_per_strip = 0;
  std::vector<uint64_t> strip_offsets, strip_byte_counts;
};

class TiffFile {
 public:
  // Reads the header and every directory; throws IOError (see above).
  explicit TiffFile(std::string path);
  // The same on a file's bytes in memory (copied); `source` stands for the
  // path in error messages and path().
  TiffFile(const uint8_t* bytes, size_t size, std::string source);

  const std::string& path() const { return path_; }
  bool big_endian() const { return big_endian_; }
  int64_t num_pages() const { return static_cast<int64_t>(pages_.size()); }
  const TiffPage& page(int64_t index) const;

  // Decodes one page (0-based); IOError if the file changed or is truncated,
  // ValueError for an index out of range.
  Image read_page(int64_t index) const;

 private:
  void parse_directories();
  std::string path_;
  std::shared_ptr<const std::vector<uint8_t>> bytes_;  // the file's bytes when built from memory, else null
  bool big_endian_ = false;
  uint64_t file_size_ = 0;
  std::vector<TiffPage> pages_;
};

// All pages of a TIFF file, or of one held in memory (`source` names it in errors).
std::vector<Image> read_tiff(const std::string& path);
std::vector<Image> read_tiff(const uint8_t* bytes, size_t size, const std::string& source);

// Writes pages (8/16-bit, 1 or 3 channels; sizes may differ) as an
// uncompressed TIFF, one strip of up to rows_per_strip rows per page strip
// (0: a single strip per page). For tests and for exporting stacks.
void write_tiff(const std::string& path, const std::vector<Image>& pages, bool big_endian = false,
                int64_t rows_per_strip = 0);

}  // namespace crfseg::data
