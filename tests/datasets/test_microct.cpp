// Micro-CT slice folders: 16-bit PNG slices with single- and multi-page TIFF
// labels, intensity windows, 2.5D context, range splits and the errors.
#include <doctest/doctest.h>

#include <filesystem>

#include "datasets/microct.h"
#include "datasets/subset.h"
#include "datasets/tiff.h"
#include "fixtures.h"
#include "support/helpers.h"
#include "support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::data;
using crfseg::test::TempDir;
namespace fs = std::filesystem;

namespace {
constexpr int64_t kDepth = 5, kH = 6, kW = 7;

// Slice z: intensity 1000 + 1000 z + 10 y + x (16-bit, above 255 on purpose);
// label: class (x + z) % 3.
Image ct_slice(int64_t z) {
  return test::make_image(kH, kW, 1, 16, [&](int64_t y, int64_t x, int64_t) { return int(1000 + 1000 * z + 10 * y + x); });
}
Image ct_label(int64_t z) {
  return test::make_image(kH, kW, 1, 8, [&](int64_t, int64_t x, int64_t) { return int((x + z) % 3); });
}

// images/: slice_<z>.png (16-bit PNG, unpadded numbers to test natural order);
// labels/: labels_a.tif with pages 0..2 and labels_b.tif, a single page 3, and labels_c.tif with page 4.
void make_volume(const fs::path& root) {
  fs::create_directories(root / "images");
  fs::create_directories(root / "labels");
  for (int64_t z = 0; z < kDepth; ++z) save_png((root / "images" / ("slice_" + std::to_string(z) + ".png")).string(), ct_slice(z));
  write_tiff((root / "labels" / "labels_a.tif").string(), {ct_label(0), ct_label(1), ct_label(2)}, false);
  write_tiff((root / "labels" / "labels_b.tif").string(), {ct_label(3)}, true);
  write_tiff((root / "labels" / "labels_c.tif").string(), {ct_label(4)}, false, 2);
}
}  // namespace

TEST_CASE("MicroCtDataset: slices in order, window = volume min..max (16-bit), labels from multi-page TIFF") {
  TempDir dir;
  make_volume(dir.path);
  const MicroCtDataset ds(dir.path.string());
  REQUIRE(ds.size() == kDepth);
  CHECK(ds.in_channels() == 1);
  CHECK(ds.num_classes() == 3);
  const double lo = 1000, hi = 1000 + 1000 * (kDepth - 1) + 10 * (kH - 1) + (kW - 1);
  CHECK(ds.intensity_low() == lo);
  CHECK(ds.intensity_high() == hi);
  for (int64_t z = 0; z < kDepth; ++z) {
    CAPTURE(z);
    const Sample s = ds.get(z);
    CHECK(s.name == "slice_" + std::to_string(z));
    CHECK(s.image.shape() == Shape{1, kH, kW});
    CHECK(s.image.at({0, 2, 3}) == doctest::Approx((1000 + 1000 * z + 23 - lo) / (hi - lo)));
    CHECK(s.mask.at({4, 5}) == (5 + z) % 3);
  }
}

TEST_CASE("MicroCtDataset: 2.5D context clamps at the volume ends; range splits share the window") {
  TempDir dir;
  make_volume(dir.path);
  MicroCtOptions o;
  o.context = 1;
  o.intensity_low = 0;
  o.intensity_high = 10000;
  auto ds = std::make_shared<MicroCtDataset>(dir.path.string(), o);
  CHECK(ds->in_channels() == 3);
  const Sample first = ds->get(0);
  CHECK(first.image.shape() == Shape{3, kH, kW});
  CHECK(first.image.at({0, 0, 0}) == doctest::Approx(0.1));  // slice 0 (clamped)
  CHECK(first.image.at({1, 0, 0}) == doctest::Approx(0.1));  // slice 0
  CHECK(first.image.at({2, 0, 0}) == doctest::Approx(0.2));  // slice 1
  const Sample last = ds->get(kDepth - 1);
  CHECK(last.image.at({0, 0, 0}) == doctest::Approx(0.4));
  CHECK(last.image.at({2, 0, 0}) == doctest::Approx(0.5));   // slice 4 again (clamped)

  const auto train = range_subset(ds, 0, 3), val = range_subset(ds, 3);
  CHECK(train->size() == 3);
  CHECK(val->size() == 2);
  CHECK(val->get(0).name == "slice_3");
  CHECK(val->num_classes() == 3);

  MicroCtOptions p;
  p.low_percentile = 10;
  p.high_percentile = 90;
  const MicroCtDataset clipped(dir.path.string(), p);
  CHECK(clipped.intensity_low() > 1000);
  CHECK(clipped.intensity_high() < 5065);
  CHECK(clipped.get(0).image.at({0, 0, 0}) == 0.0);  // clamped below the window
}

TEST_CASE("MicroCtDataset: one multi-page TIFF volume with binary 0/255 labels as PNG slices") {
  TempDir dir;
  fs::create_directories(dir.path / "images");
  fs::create_directories(dir.path / "labels");
  std::vector<Image> pages;
  for (int64_t z = 0; z < 3; ++z) {
    pages.push_back(ct_slice(z));
    save_png(dir.file("labels/l" + std::to_string(z) + ".png"),
             test::make_image(kH, kW, 1, 8, [](int64_t y, int64_t, int64_t) { return y < 3 ? 0 : 255; }));
  }
  write_tiff(dir.file("images/volume.tif"), pages, true);
  const MicroCtDataset ds(dir.path.string());
  CHECK(ds.size() == 3);
  CHECK(ds.label_rule().binary_255);
  CHECK(ds.class_names() == std::vector<std::string>{"background", "foreground"});
  CHECK(ds.get(2).name == "volume_p0002");
  CHECK(ds.get(2).mask.at({4, 0}) == 1);
  CHECK(ds.get(2).mask.at({0, 0}) == 0);
}

TEST_CASE("MicroCtDataset errors: missing and empty folders, slice count and size mismatches") {
  TempDir dir;
  test::check_throws_with<IOError>([&] { MicroCtDataset(dir.file("none")); }, "volume folder");
  fs::create_directories(dir.path / "images");
  test::check_throws_with<IOError>([&] { MicroCtDataset(dir.path.string()); }, "holds no slice images");
  make_volume(dir.path);
  fs::remove(dir.file("labels/labels_c.tif"));
  test::check_throws_with<ShapeError>([&] { MicroCtDataset(dir.path.string()); }, "5 image slices in images/ but 4 label slices");
  write_tiff(dir.file("labels/labels_c.tif"), {test::make_image(kH, kW + 1, 1, 8, [](int64_t, int64_t, int64_t) { return 0; })});
  test::check_throws_with<ShapeError>([&] { MicroCtDataset(dir.path.string()); }, "labels_c.tif page 0 is 6x8 but image slice");
  save_png(dir.file("images/slice_2.png"), Image::zeros(3, 3, 1, 16));
  test::check_throws_with<ShapeError>([&] { MicroCtDataset(dir.path.string()); }, "slice_2.png is 3x3, slice 0 is 6x7");
}
