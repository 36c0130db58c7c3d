// Oxford-IIIT Pet (see pets.h).
#include "datasets/pets.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "datasets/files.h"

namespace crfseg::data {

namespace fs = std::filesystem;

namespace {
const char* kLayout =
    "expected the Oxford-IIIT Pet layout: images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt and "
    "annotations/test.txt";

// Trimap value -> class for each border rule (values 1 pet, 2 background, 3 border).
LabelMap trimap_map(TrimapBorder border) {
  LabelMap map;
  map.set(1, 0).set(2, 1);
  switch (border) {
    case TrimapBorder::as_class: map.set(3, 2); break;
    case TrimapBorder::ignore: map.set(3, kIgnoreIndex); break;
    case TrimapBorder::as_pet: map.set(3, 0); break;
    case TrimapBorder::as_background: map.set(3, 1); break;
  }
  return map;
}

// `s` with control bytes (a NUL would end the message) written as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7F) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    }
  }
  return out;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}
}  // namespace

PetsDataset::PetsDataset(std::string root, PetsOptions options)
    : root_(std::move(root)), options_(std::move(options)), trimap_map_(trimap_map(options_.border)) {
  if (!options_.warn) options_.warn = [](const std::string&) {};
  require_directory(root_, "PetsDataset", "dataset folder", kLayout);
  const std::string images = (fs::path(root_) / "images").string();
  const std::string trimaps = (fs::path(root_) / "annotations" / "trimaps").string();
  require_directory(images, "PetsDataset", "image folder", kLayout);
  require_directory(trimaps, "PetsDataset", "trimap folder", kLayout);

  std::vector<std::string> stems;
  if (options_.split == "all") {
    stems = read_split("trainval");
    for (std::string& s : read_split("test")) stems.push_back(std::move(s));
  } else {
    CRFSEG_CHECK(options_.split == "trainval" || options_.split == "test", ValueError,
                 "PetsDataset: unknown split '", options_.split, "'; expected trainval, test or all");
    stems = read_split(options_.split);
  }
  for (const std::string& stem : stems) {
    Entry e{stem, (fs::path(images) / (stem + ".jpg")).string(), (fs::path(trimaps) / (stem + ".png")).string()};
    const bool has_image = file_exists(e.image), has_trimap = file_exists(e.trimap);
    if (has_image && has_trimap) {
      entries_.push_back(std::move(e));
    } else {
      ++skipped_;
      options_.warn("PetsDataset: skipping '" + stem + "': missing " + (has_image ? e.trimap : e.image));
    }
  }
  if (options_.validate) validate_entries();
  CRFSEG_CHECK(!entries_.empty(), ValueError, "PetsDataset: the ", options_.split, " split of '", root_, "' lists ",
               stems.size(), " images, none of them usable (", skipped_, " skipped)");
  conversions_ = std::make_unique<ConversionLog>(entries_.size());
  if (skipped_ > 0) options_.warn("PetsDataset: skipped " + std::to_string(skipped_) + " of " +
                                  std::to_string(stems.size()) + " listed images in '" + root_ + "'");
}

std::vector<std::string> parse_pets_split(const std::string& text, const std::string& source) {
  std::vector<std::string> stems;
  std::istringstream in(text);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream tokens(line);
    std::string stem;
    if (!(tokens >> stem) || stem[0] == '#') continue;  // blank lines and comments (list.txt style)
    CRFSEG_CHECK(stem != "." && stem != ".." && stem.find_first_of(std::string("/\\\0", 3)) == std::string::npos,
                 ValueError, "PetsDataset: split file '", source, "' line ", number, ": '", printable(stem),
                 "' is not an image stem (expected a file name such as Abyssinian_100, without '/' or '\\')");
    stems.push_back(stem);
  }
  CRFSEG_CHECK(!stems.empty(), ValueError, "PetsDataset: split file '", source, "' lists no images");
  return stems;
}

std::vector<std::string> PetsDataset::read_split(const std::string& split) const {
  const std::string path = (fs::path(root_) / "annotations" / (split + ".txt")).string();
  CRFSEG_CHECK(file_exists(path), IOError, "PetsDataset: split file '", path, "' not found; ", kLayout);
  std::ifstream in(path, std::ios::binary);
  CRFSEG_CHECK(in.good(), IOError, "PetsDataset: cannot read split file '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  CRFSEG_CHECK(!in.bad(), IOError, "PetsDataset: read error on split file '", path, "'");
  return parse_pets_split(text.str(), path);
}

void PetsDataset::validate_entries() {
  // Decode everything once, in parallel; collect per-entry outcomes so the
  // warnings come out in file order whatever the thread schedule.
  const int64_t n = size();
  std::vector<std::string> problem(static_cast<size_t>(n));
  std::vector<std::string> mismatch(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < n; ++i) {
    const Entry& e = entries_[static_cast<size_t>(i)];
    try {
      const Image image = load_image(e.image, 3);
      const Image trimap = load_label_image(e.trimap, "PetsDataset");
      if (image.height != trimap.height || image.width != trimap.width) {
        mismatch[i] = "PetsDataset: image '" + e.image + "' is " + std::to_string(image.height) + "x" +
                      std::to_string(image.width) + " but its trimap '" + e.trimap + "' is " +
                      std::to_string(trimap.height) + "x" + std::to_string(trimap.width) + " (HxW)";
      }
      trimap_map_.apply(trimap, e.trimap);  // throws for values other than 1, 2, 3
    } catch (const Error& err) {
      problem[i] = err.what();
    }
  }
  std::vector<Entry> kept;
  for (int64_t i = 0; i < n; ++i) {
    CRFSEG_CHECK(mismatch[i].empty(), ShapeError, mismatch[i]);
    if (problem[i].empty()) {
      kept.push_back(std::move(entries_[i]));
    } else {
      ++skipped_;
      options_.warn("PetsDataset: skipping unreadable '" + entries_[i].stem + "': " + problem[i]);
    }
  }
  entries_ = std::move(kept);
}

Sample PetsDataset::get(int64_t index) const {
  check_index(index, "PetsDataset::get");
  const Entry& e = entries_[static_cast<size_t>(index)];
  const Image image = load_image(e.image, 3);
  conversions_->record(static_cast<size_t>(index), image, 3, e.image);
  const Image trimap = load_label_image(e.trimap, "PetsDataset");
  CRFSEG_CHECK(image.height == trimap.height && image.width == trimap.width, ShapeError, "PetsDataset: image '",
               e.image, "' is ", image.height, "x", image.width, " but its trimap '", e.trimap, "' is ", trimap.height,
               "x", trimap.width, " (HxW)");
  Sample s{image_to_tensor(image), trimap_map_.apply(trimap, e.trimap), e.stem};
  normalize_(s.image, options_.normalization);
  return s;
}

std::vector<std::string> PetsDataset::class_names() const {
  if (options_.border == TrimapBorder::as_class) return {"pet", "background", "border"};
  return {"pet", "background"};
}

std::string PetsDataset::description() const {
  return "pets '" + root_ + "' " + options_.split + ": " + std::to_string(size()) + " images, " +
         std::to_string(num_classes()) + " classes";
}

}  // namespace crfseg::data
