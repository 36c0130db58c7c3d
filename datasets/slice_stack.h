// SliceStack: the slices of a volume stored as a folder of image files.
//
// The folder holds single-slice images (PNG, PGM, BMP or single-page TIFF)
// and/or multi-page TIFFs. Slices are ordered by file name in natural order
// (slice_2 before slice_10), and within a multi-page TIFF by page, so a
// volume may be one multi-page file, one file per slice, or several
// multi-page chunks. Pages are read on demand (TiffFile seeks), so a slice
// costs one slice of I/O; read() is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "datasets/image_io.h"
#include "datasets/tiff.h"

namespace crfseg::data {

class SliceStack {
 public:
  // Lists and indexes `dir`; `op` names the caller in errors. Throws IOError
  // for a missing folder, one without slice images, or a bad TIFF.
  SliceStack(const std::string& dir, const char* op);

  int64_t size() const { return static_cast<int64_t>(slices_.size()); }
  // Slice z as stored (channels and depth of its file).
  Image read(int64_t z) const;
  // "img_0003" for a single-slice file, "stack_p0003" for page 3 of stack.tif.
  std::string name(int64_t z) const;
  // The file (and page, for TIFF) of slice z, for error messages: "/d/stack.tif page 3"
  // (TIFF slices always name their page).
  std::string location(int64_t z) const;

 private:
  struct Slice {
    size_t file;
    int64_t page;  // -1 for a non-TIFF file
  };
  std::vector<std::string> files_;
  std::vector<std::shared_ptr<const TiffFile>> tiffs_;  // per file; null for non-TIFF
  std::vector<Slice> slices_;
};

}  // namespace crfseg::data
