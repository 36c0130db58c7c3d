// Oxford-IIIT Pet and generic folder datasets on tiny folders built here.
#include <doctest/doctest.h>

#include <filesystem>

#include "datasets/folder.h"
#include "datasets/pets.h"
#include "fixtures.h"
#include "support/helpers.h"
#include "support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::data;
using crfseg::test::TempDir;
namespace fs = std::filesystem;

namespace {
struct Warnings {
  std::vector<std::string> lines;
  WarningSink sink() {
    return [this](const std::string& m) { lines.push_back(m); };
  }
};
PetsOptions quiet(Warnings& w) {
  PetsOptions o;
  o.warn = w.sink();
  return o;
}
}  // namespace

TEST_CASE("PetsDataset loads the trainval split: RGB images, trimap classes, gray/RGBA/mislabelled converted and counted") {
  TempDir dir;
  test::make_pets_folder(dir.path.string());
  Warnings w;
  const PetsDataset ds(dir.path.string(), quiet(w));
  REQUIRE(ds.size() == 3);
  CHECK(ds.num_classes() == 3);
  CHECK(ds.in_channels() == 3);
  CHECK(ds.class_names() == std::vector<std::string>{"pet", "background", "border"});
  CHECK(w.lines.empty());

  const Sample a = ds.get(0);
  CHECK(a.name == "pet_a");
  CHECK(a.image.shape() == Shape{3, 12, 16});
  CHECK(a.mask.shape() == Shape{12, 16});
  CHECK(a.mask.dtype() == DType::i64);
  // pet_trimap: 2 (background) outside the box [3, 8] x [4, 11], 3 (border) on its rim, 1 (pet) inside.
  CHECK(a.mask.at({0, 0}) == 1);  // background -> 1
  CHECK(a.mask.at({3, 6}) == 2);  // border -> 2
  CHECK(a.mask.at({5, 6}) == 0);  // pet -> 0
  // Pixel values: the JPEG of 40 + 10y + 5x + 30c, scaled to [0, 1].
  CHECK(a.image.at({1, 5, 6}) * 255 == doctest::Approx(40 + 50 + 30 + 30).epsilon(0.05));

  const Sample b = ds.get(1);  // grayscale JPEG: three equal channels
  CHECK(b.image.shape() == Shape{3, 8, 8});
  CHECK(b.image.at({0, 2, 3}) == b.image.at({2, 2, 3}));
  const Sample c = ds.get(2);  // RGBA PNG named .jpg: alpha dropped, exact values
  CHECK(c.image.shape() == Shape{3, 6, 6});
  CHECK(c.image.at({0, 0, 0}) * 255 == doctest::Approx(50));
  CHECK(c.image.at({2, 5, 5}) * 255 == doctest::Approx(150));
  const ConversionCounts counts = ds.conversions();
  CHECK(counts.gray_to_rgb == 1);
  CHECK(counts.alpha_dropped == 1);
  CHECK(counts.mislabelled == 1);
  CHECK(counts.summary() == "1 gray->RGB, 1 alpha dropped, 1 mislabelled format");
  ds.get(2);  // counted once per sample, however often read
  CHECK(ds.conversions().total() == 3);

  PetsOptions test_split = quiet(w);
  test_split.split = "test";
  CHECK(PetsDataset(dir.path.string(), test_split).size() == 1);
  test_split.split = "all";
  CHECK(PetsDataset(dir.path.string(), test_split).size() == 4);
}

TEST_CASE("PetsDataset border options: ignored or merged") {
  TempDir dir;
  test::make_pets_folder(dir.path.string());
  Warnings w;
  PetsOptions o = quiet(w);
  o.border = TrimapBorder::ignore;
  const PetsDataset ignore(dir.path.string(), o);
  CHECK(ignore.num_classes() == 2);
  CHECK(ignore.get(0).mask.at({3, 6}) == kIgnoreIndex);
  CHECK(ignore.get(0).mask.at({5, 6}) == 0);
  o.border = TrimapBorder::as_pet;
  CHECK(PetsDataset(dir.path.string(), o).get(0).mask.at({3, 6}) == 0);
  o.border = TrimapBorder::as_background;
  CHECK(PetsDataset(dir.path.string(), o).get(0).mask.at({3, 6}) == 1);
  o.normalization = Normalization::imagenet();
  const Sample s = PetsDataset(dir.path.string(), o).get(2);
  CHECK(s.image.at({0, 0, 0}) == doctest::Approx((50 / 255.0 - 0.485) / 0.229).epsilon(1e-5));
}

TEST_CASE("PetsDataset: a corrupt JPEG fails at get() with the path, or is skipped and counted with validate") {
  TempDir dir;
  test::make_pets_folder(dir.path.string());
  const std::string bad = dir.file("images/pet_b.jpg");
  std::vector<uint8_t> bytes = read_file_bytes(bad, "test");
  bytes.resize(40);  // header only
  write_file_bytes(bad, bytes, "test");
  Warnings w;
  const PetsDataset lazy(dir.path.string(), quiet(w));
  CHECK(lazy.size() == 3);
  test::check_throws_with<IOError>([&] { lazy.get(1); }, "cannot decode '" + bad + "' (jpeg)");

  PetsOptions o = quiet(w);
  o.validate = true;
  const PetsDataset checked(dir.path.string(), o);
  CHECK(checked.size() == 2);
  CHECK(checked.skipped() == 1);
  CHECK(checked.get(1).name == "pet_c");
  REQUIRE(w.lines.size() == 2);
  CHECK(w.lines[0].find("skipping unreadable 'pet_b'") != std::string::npos);
  CHECK(w.lines[1].find("skipped 1 of 3 listed images") != std::string::npos);
}

TEST_CASE("PetsDataset errors: wrong-size trimap, missing split file, missing folders, empty split, bad trimap value") {
  TempDir dir;
  test::make_pets_folder(dir.path.string());
  Warnings w;
  const std::string root = dir.path.string();
  data::save_png(dir.file("annotations/trimaps/pet_a.png"), test::pet_trimap(12, 15));
  const PetsDataset ds(root, quiet(w));
  test::check_throws_with<ShapeError>([&] { ds.get(0); }, "is 12x16 but its trimap");
  PetsOptions o = quiet(w);
  o.validate = true;
  test::check_throws_with<ShapeError>([&] { PetsDataset(root, o); }, "pet_a.png' is 12x15 (HxW)");

  data::save_png(dir.file("annotations/trimaps/pet_a.png"),
                 test::make_image(12, 16, 1, 8, [](int64_t, int64_t, int64_t) { return 7; }));
  test::check_throws_with<ValueError>([&] { ds.get(0); }, "value 7 at (y=0, x=0) is not a known label; the mapping is 1->0, 2->1, 3->2");

  fs::remove(dir.file("annotations/test.txt"));
  o.validate = false;
  o.split = "test";
  test::check_throws_with<IOError>([&] { PetsDataset(root, o); }, "split file '" + dir.file("annotations/test.txt") + "' not found");
  test::write_text(dir.file("annotations/test.txt"), "\n# nothing\n");
  test::check_throws_with<ValueError>([&] { PetsDataset(root, o); }, "lists no images");
  o.split = "val";
  test::check_throws_with<ValueError>([&] { PetsDataset(root, o); }, "unknown split 'val'");
  test::check_throws_with<IOError>([&] { PetsDataset(dir.file("nowhere"), quiet(w)); }, "dataset folder");

  TempDir empty;
  fs::create_directories(empty.path / "images");
  test::check_throws_with<IOError>([&] { PetsDataset(empty.path.string(), quiet(w)); }, "trimap folder");
  fs::create_directories(empty.path / "annotations" / "trimaps");
  test::write_text(empty.file("annotations/trainval.txt"), "ghost 1 1 1\n");
  test::check_throws_with<ValueError>([&] { PetsDataset(empty.path.string(), quiet(w)); }, "none of them usable");
  REQUIRE(!w.lines.empty());
  CHECK(w.lines.back().find("skipping 'ghost': missing") != std::string::npos);
}

TEST_CASE("FolderDataset: stems matched, binary 0/255 masks read as 0/1, index masks, ignore value, errors") {
  TempDir dir;
  auto img = [](int64_t h, int64_t w) {
    return test::make_image(h, w, 3, 8, [](int64_t y, int64_t x, int64_t c) { return int(y * 20 + x + c); });
  };
  auto mask = [](int64_t h, int64_t w, int fg) {
    return test::make_image(h, w, 1, 8, [=](int64_t y, int64_t x, int64_t) { return y > x ? fg : 0; });
  };
  fs::create_directories(dir.path / "images");
  fs::create_directories(dir.path / "masks");
  save_png(dir.file("images/img_10.png"), img(5, 5));
  save_png(dir.file("images/img_2.png"), img(4, 6));
  save_png(dir.file("images/orphan.png"), img(4, 4));
  save_png(dir.file("masks/img_10.png"), mask(5, 5, 255));
  save_png(dir.file("masks/img_2.png"), mask(4, 6, 255));
  std::vector<std::string> warnings;
  FolderOptions o;
  o.warn = [&](const std::string& m) { warnings.push_back(m); };
  const FolderDataset ds(dir.path.string(), o);
  REQUIRE(ds.size() == 2);
  CHECK(ds.skipped() == 1);
  CHECK(warnings.size() == 1);
  CHECK(ds.label_rule().binary_255);
  CHECK(ds.num_classes() == 2);
  CHECK(ds.get(0).name == "img_2");  // natural order: 2 before 10
  CHECK(ds.get(0).mask.at({3, 1}) == 1);
  CHECK(ds.get(0).mask.at({1, 3}) == 0);

  save_png(dir.file("masks/img_10.png"), mask(5, 5, 2));  // now class indices 0..2, plus 255
  o.ignore_value = 255;
  const FolderDataset multi(dir.path.string(), o);
  CHECK_FALSE(multi.label_rule().binary_255);
  CHECK(multi.num_classes() == 3);
  CHECK(multi.get(0).mask.at({3, 1}) == kIgnoreIndex);
  CHECK(multi.get(1).mask.at({3, 1}) == 2);
  o.ignore_value = -1;
  o.num_classes = 2;
  test::check_throws_with<ValueError>([&] { FolderDataset(dir.path.string(), o); }, "label value 255");

  o.num_classes = 0;
  save_png(dir.file("masks/img_10.png"), mask(5, 4, 1));
  const FolderDataset mismatched(dir.path.string(), o);
  test::check_throws_with<ShapeError>([&] { mismatched.get(1); }, "is 5x5 but its mask");

  TempDir empty;
  fs::create_directories(empty.path / "images");
  fs::create_directories(empty.path / "masks");
  test::check_throws_with<IOError>([&] { FolderDataset(empty.path.string(), o); }, "holds no images");
  test::check_throws_with<IOError>([&] { FolderDataset(dir.file("none"), o); }, "dataset folder");
}

TEST_CASE("parse_pets_split takes the first token of each line and rejects stems that are paths") {
  CHECK(parse_pets_split("#Image CLASS-ID SPECIES BREED ID\nAbyssinian_100 1 1 1\r\n\n  \t\nboxer_2\t10 2 4\n", "s.txt") ==
        std::vector<std::string>{"Abyssinian_100", "boxer_2"});
  test::check_throws_with<ValueError>([] { parse_pets_split("a 1\n../../etc/passwd 1 1 1\n", "s.txt"); },
                                      "split file 's.txt' line 2: '../../etc/passwd' is not an image stem");
  test::check_throws_with<ValueError>([] { parse_pets_split("..\n", "s.txt"); }, "is not an image stem");
  test::check_throws_with<ValueError>([] { parse_pets_split(std::string("a\0b 1\n", 6), "s.txt"); },
                                      "line 1: 'a\\x00b' is not an image stem");
  test::check_throws_with<ValueError>([] { parse_pets_split("# only a comment\n", "s.txt"); }, "lists no images");
}
