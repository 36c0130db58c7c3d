// Label images and value-to-class maps (see labels.h).
#include "datasets/labels.h"

#include <limits>
#include <sstream>

namespace crfseg::data {

namespace {
constexpr int64_t kUnmapped = std::numeric_limits<int64_t>::min();
constexpr size_t kValues = 65536;

// True for a PNG file whose IHDR says colour type 3 (indexed colour); false
// for anything else, including a source that is not a readable file.
bool is_palette_png(const std::string& source) {
  try {
    const std::vector<uint8_t> bytes = read_file_bytes(source, "load_label_image");
    // signature (8) + IHDR length (4) + "IHDR" (4) + width, height (8) + depth (1), then colour type.
    return detect_format(bytes.data(), bytes.size()) == ImageFormat::png && bytes.size() > 25 && bytes[25] == 3;
  } catch (const Error&) {
    return false;
  }
}
}  // namespace

Image load_label_image(const std::string& path, const char* op) { return to_label_channel(load_image(path), path, op); }

Image to_label_channel(const Image& image, const std::string& path, const char* op) {
  if (image.channels == 1) return image;
  const int64_t colour = image.channels == 2 ? 1 : 3;  // gray+alpha or RGB(A): compare the non-alpha channels
  bool equal = true;
  for (int64_t p = 0; p < image.height * image.width && equal; ++p) {
    for (int64_t c = 1; c < colour; ++c) equal = equal && image.pixels[p * image.channels + c] == image.pixels[p * image.channels];
  }
  CRFSEG_CHECK(equal, IOError, op, ": label image '", path, "' has ", image.channels, " differing colour channels",
               is_palette_png(path) ? " (a palette PNG: its indices are lost when decoded)" : "",
               "; expected a single-channel image of class indices (save it as 8-bit grayscale)");
  Image gray = Image::zeros(image.height, image.width, 1, image.bit_depth);
  gray.format = image.format;
  gray.file_channels = image.channels;
  for (int64_t p = 0; p < image.height * image.width; ++p) gray.pixels[p] = image.pixels[p * image.channels];
  return gray;
}

LabelMap::LabelMap() : table_(kValues, kUnmapped) {}

LabelMap LabelMap::identity(int64_t num_classes) {
  LabelMap map;
  for (int64_t v = 0; v < num_classes && v < static_cast<int64_t>(kValues); ++v) map.set(v, v);
  return map;
}

LabelMap& LabelMap::set(int64_t value, int64_t class_index) {
  CRFSEG_CHECK(value >= 0 && value < static_cast<int64_t>(kValues), ValueError, "LabelMap::set: raw value ", value,
               " outside [0, 65535]");
  table_[static_cast<size_t>(value)] = class_index;
  return *this;
}

Tensor LabelMap::apply(const Image& labels, const std::string& source) const {
  CRFSEG_CHECK(labels.channels == 1, ShapeError, "LabelMap::apply: expected a 1-channel label image for '", source,
               "', got ", labels.channels, " channels");
  Tensor mask = Tensor::empty({labels.height, labels.width}, {DType::i64});
  int64_t* out = mask.data<int64_t>();
  for (int64_t p = 0; p < labels.height * labels.width; ++p) {
    const int64_t cls = table_[labels.pixels[p]];
    CRFSEG_CHECK(cls != kUnmapped, ValueError, "label image '", source, "': value ", labels.pixels[p], " at (y=",
                 p / labels.width, ", x=", p % labels.width, ") is not a known label; the mapping is ", describe());
    out[p] = cls;
  }
  return mask;
}

std::string LabelMap::describe() const {
  std::ostringstream out;
  bool first = true;
  for (size_t v = 0; v < kValues; ++v) {
    if (table_[v] == kUnmapped) continue;
    out << (first ? "" : ", ") << v << "->";
    if (table_[v] == kIgnoreIndex) {
      out << "ignore";
    } else {
      out << table_[v];
    }
    first = false;
  }
  return first ? "(empty)" : out.str();
}

void accumulate_histogram(const Image& image, std::vector<int64_t>& histogram) {
  histogram.resize(kValues, 0);
  for (uint16_t v : image.pixels) ++histogram[v];
}

LabelRule infer_label_rule(const std::vector<int64_t>& histogram, int64_t num_classes, int64_t ignore_value,
                           const std::string& what) {
  CRFSEG_CHECK(num_classes == 0 || num_classes >= 2, ValueError, what, ": num_classes must be 0 (infer) or >= 2, got ",
               num_classes);
  std::vector<int64_t> present;
  for (size_t v = 0; v < histogram.size(); ++v) {
    if (histogram[v] > 0 && static_cast<int64_t>(v) != ignore_value) present.push_back(static_cast<int64_t>(v));
  }
  CRFSEG_CHECK(!present.empty(), ValueError, what, ": the label images hold no labelled pixels");
  LabelRule rule;
  const bool only_0_255 = present.back() == 255 && (present.size() == 1 || (present.size() == 2 && present[0] == 0));
  if (only_0_255 && (num_classes == 0 || num_classes == 2)) {
    rule.num_classes = 2;
    rule.binary_255 = true;
    rule.map.set(0, 0).set(255, 1);
  } else {
    rule.num_classes = num_classes > 0 ? num_classes : std::max<int64_t>(present.back() + 1, 2);
    CRFSEG_CHECK(present.back() < rule.num_classes, ValueError, what, ": label value ", present.back(), " (",
                 histogram[present.back()], " pixels) is not a class index below num_classes = ", rule.num_classes,
                 "; set num_classes, or ignore_value if it marks unlabelled pixels");
    rule.map = LabelMap::identity(rule.num_classes);
  }
  if (ignore_value >= 0) rule.map.set(ignore_value, kIgnoreIndex);
  return rule;
}

}  // namespace crfseg::data
