// Slice stacks (see slice_stack.h).
#include "datasets/slice_stack.h"

#include <cstdio>

#include "datasets/files.h"

namespace crfseg::data {

SliceStack::SliceStack(const std::string& dir, const char* op) {
  require_directory(dir, op, "slice folder", "");
  files_ = list_files(dir, {".png", ".tif", ".tiff", ".pgm", ".bmp"});
  CRFSEG_CHECK(!files_.empty(), IOError, op, ": slice folder '", dir,
               "' holds no slice images (.png, .tif, .tiff, .pgm or .bmp)");
  for (size_t f = 0; f < files_.size(); ++f) {
    const bool tiff = format_from_extension(files_[f]) == ImageFormat::tiff;
    tiffs_.push_back(tiff ? std::make_shared<const TiffFile>(files_[f]) : nullptr);
    const int64_t pages = tiff ? tiffs_.back()->num_pages() : 1;
    for (int64_t p = 0; p < pages; ++p) slices_.push_back({f, tiff ? p : -1});
  }
}

Image SliceStack::read(int64_t z) const {
  const Slice& s = slices_.at(static_cast<size_t>(z));
  if (s.page < 0) return load_image(files_[s.file]);
  return tiffs_[s.file]->read_page(s.page);
}

std::string SliceStack::name(int64_t z) const {
  const Slice& s = slices_.at(static_cast<size_t>(z));
  std::string name = stem_of(files_[s.file]);
  if (s.page >= 0 && tiffs_[s.file]->num_pages() > 1) {
    char page[32];
    std::snprintf(page, sizeof page, "_p%04lld", static_cast<long long>(s.page));
    name += page;
  }
  return name;
}

std::string SliceStack::location(int64_t z) const {
  const Slice& s = slices_.at(static_cast<size_t>(z));
  return files_[s.file] + (s.page >= 0 ? " page " + std::to_string(s.page) : "");
}

}  // namespace crfseg::data
