// Image/mask folders (see folder.h).
#include "datasets/folder.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "datasets/files.h"

namespace crfseg::data {

namespace fs = std::filesystem;

namespace {
const char* kLayout = "expected ROOT/images/ and ROOT/masks/ with matching file stems";

// stem -> path, rejecting two files with one stem (a.png and a.jpg).
std::map<std::string, std::string> by_stem(const std::vector<std::string>& files, const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const std::string& f : files) {
    auto [it, inserted] = out.emplace(stem_of(f), f);
    CRFSEG_CHECK(inserted, ValueError, "FolderDataset: '", it->second, "' and '", f, "' in '", dir,
                 "' share the stem '", it->first, "'; keep one");
  }
  return out;
}

std::string size_mismatch(const std::string& image, const Image& a, const std::string& mask, const Image& b) {
  return "FolderDataset: image '" + image + "' is " + std::to_string(a.height) + "x" + std::to_string(a.width) +
         " but its mask '" + mask + "' is " + std::to_string(b.height) + "x" + std::to_string(b.width) + " (HxW)";
}
}  // namespace

FolderDataset::FolderDataset(std::string root, FolderOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  if (!options_.warn) options_.warn = [](const std::string&) {};
  CRFSEG_CHECK(options_.channels == 1 || options_.channels == 3, ValueError,
               "FolderDataset: channels must be 1 or 3, got ", options_.channels);
  require_directory(root_, "FolderDataset", "dataset folder", kLayout);
  const std::string images_dir = (fs::path(root_) / options_.images_dir).string();
  const std::string masks_dir = (fs::path(root_) / options_.masks_dir).string();
  require_directory(images_dir, "FolderDataset", "image folder", kLayout);
  require_directory(masks_dir, "FolderDataset", "mask folder", kLayout);
  const auto images = by_stem(
      list_files(images_dir, {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".gif"}), images_dir);
  const auto masks = by_stem(list_files(masks_dir, {".png", ".tif", ".tiff", ".pgm", ".bmp"}), masks_dir);
  CRFSEG_CHECK(!images.empty(), IOError, "FolderDataset: image folder '", images_dir, "' holds no images");
  CRFSEG_CHECK(!masks.empty(), IOError, "FolderDataset: mask folder '", masks_dir, "' holds no masks");

  for (const auto& [stem, image] : images) {
    auto m = masks.find(stem);
    if (m == masks.end()) {
      ++skipped_;
      options_.warn("FolderDataset: skipping '" + image + "': no mask named '" + stem + ".*' in '" + masks_dir + "'");
      continue;
    }
    entries_.push_back({stem, image, m->second});
  }
  CRFSEG_CHECK(!entries_.empty(), ValueError, "FolderDataset: no image in '", images_dir, "' has a mask in '",
               masks_dir, "' (stems must match, e.g. images/a.jpg and masks/a.png)");
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return natural_less(a.stem, b.stem); });

  // Read every mask once: the label rule needs all values. With validate,
  // decode the images too and drop unreadable ones (in order, deterministically).
  const int64_t n = size();
  std::vector<std::vector<int64_t>> histograms(static_cast<size_t>(n));
  std::vector<std::string> mask_error(static_cast<size_t>(n)), image_error(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < n; ++i) {
    const Entry& e = entries_[static_cast<size_t>(i)];
    try {
      const Image mask = load_label_image(e.mask, "FolderDataset");
      accumulate_histogram(mask, histograms[i]);
      if (options_.validate) {
        try {
          const Image image = load_image(e.image, options_.channels);
          if (image.height != mask.height || image.width != mask.width) {
            mask_error[i] = size_mismatch(e.image, image, e.mask, mask);
          }
        } catch (const Error& err) {
          image_error[i] = err.what();
        }
      }
    } catch (const Error& err) {
      mask_error[i] = err.what();
    }
  }
  std::vector<int64_t> histogram(65536, 0);
  std::vector<Entry> kept;
  for (int64_t i = 0; i < n; ++i) {
    // A bad mask is an error, not a skip: silently training on fewer labels
    // than the user provided would hide a broken export.
    CRFSEG_CHECK(mask_error[i].empty(), IOError, mask_error[i]);
    if (!image_error[i].empty()) {
      ++skipped_;
      options_.warn("FolderDataset: skipping unreadable '" + entries_[i].image + "': " + image_error[i]);
      continue;
    }
    for (size_t v = 0; v < histograms[i].size(); ++v) histogram[v] += histograms[i][v];
    kept.push_back(std::move(entries_[i]));
  }
  entries_ = std::move(kept);
  CRFSEG_CHECK(!entries_.empty(), ValueError, "FolderDataset: no readable image in '", images_dir, "'");
  rule_ = infer_label_rule(histogram, options_.num_classes, options_.ignore_value, "FolderDataset '" + root_ + "'");
  conversions_ = std::make_unique<ConversionLog>(entries_.size());
}

Sample FolderDataset::get(int64_t index) const {
  check_index(index, "FolderDataset::get");
  const Entry& e = entries_[static_cast<size_t>(index)];
  const Image image = load_image(e.image, options_.channels);
  conversions_->record(static_cast<size_t>(index), image, options_.channels, e.image);
  const Image mask = load_label_image(e.mask, "FolderDataset");
  CRFSEG_CHECK(image.height == mask.height && image.width == mask.width, ShapeError,
               size_mismatch(e.image, image, e.mask, mask));
  Sample s{image_to_tensor(image), rule_.map.apply(mask, e.mask), e.stem};
  normalize_(s.image, options_.normalization);
  return s;
}

std::vector<std::string> FolderDataset::class_names() const {
  if (rule_.binary_255) return {"background", "foreground"};
  std::vector<std::string> names;
  for (int64_t c = 0; c < num_classes(); ++c) names.push_back("class_" + std::to_string(c));
  return names;
}

std::string FolderDataset::description() const {
  return "folder '" + root_ + "': " + std::to_string(size()) + " images, " + std::to_string(num_classes()) +
         " classes" + (rule_.binary_255 ? " (binary 0/255 masks)" : "");
}

}  // namespace crfseg::data
