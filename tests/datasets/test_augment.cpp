// Augmentation: image and mask move together (image = f(mask) survives every
// transform), exact resize values, numpy rot90 semantics, determinism.
#include <doctest/doctest.h>

#include "datasets/augment.h"
#include "datasets/seeding.h"
#include "support/helpers.h"

using namespace crfseg;
using namespace crfseg::data;

namespace {

// A mask of distinct-ish labels and an image that is a known function of it:
// channel c = (label + 1) * (c + 1) / 10. Padding (ignore) pairs with 0.
Sample labelled_sample(int64_t h, int64_t w) {
  Sample s{Tensor::empty({2, h, w}), Tensor::empty({h, w}, {DType::i64}), "s"};
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t label = (y * 7 + x * 3) % 5;
      s.mask.data<int64_t>()[y * w + x] = label;
      for (int64_t c = 0; c < 2; ++c) s.image.data<float>()[(c * h + y) * w + x] = float((label + 1) * (c + 1)) / 10;
    }
  }
  return s;
}

// Checks image = f(mask) at every pixel.
void check_consistent(const Sample& s) {
  const int64_t h = s.mask.size(0), w = s.mask.size(1);
  REQUIRE(s.image.shape() == Shape{2, h, w});
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t label = s.mask.data<int64_t>()[y * w + x];
      for (int64_t c = 0; c < 2; ++c) {
        const float want = label == kIgnoreIndex ? 0.0f : float((label + 1) * (c + 1)) / 10;
        REQUIRE(s.image.data<float>()[(c * h + y) * w + x] == want);
      }
    }
  }
}

}  // namespace

TEST_CASE("flips, rotations, crops and random augmentation keep image = f(mask)") {
  const Sample s = labelled_sample(5, 8);
  check_consistent(s);
  check_consistent(hflip(s));
  check_consistent(vflip(s));
  for (int k = -1; k <= 4; ++k) check_consistent(rot90(s, k));
  check_consistent(crop(s, 1, 2, 3, 4));
  check_consistent(crop(s, -2, -3, 9, 12));  // padded on every side
  AugmentOptions o;
  o.crop_height = 4;
  o.crop_width = 4;
  o.hflip = o.vflip = o.rotate90 = true;
  Generator gen(3);
  for (int t = 0; t < 50; ++t) {
    const Sample a = augment(s, o, gen);
    check_consistent(a);
    CHECK(a.mask.shape() == Shape{4, 4});
  }
}

TEST_CASE("transforms move pixels where they should (numpy semantics)") {
  const Sample s = labelled_sample(3, 4);
  auto m = [](const Sample& x, int64_t y, int64_t c) { return x.mask.at({y, c}); };
  CHECK(m(hflip(s), 0, 0) == m(s, 0, 3));
  CHECK(m(vflip(s), 0, 1) == m(s, 2, 1));
  const Sample r = rot90(s, 1);  // counter-clockwise: the top-right corner becomes top-left
  CHECK(r.mask.shape() == Shape{4, 3});
  CHECK(m(r, 0, 0) == m(s, 0, 3));
  CHECK(m(r, 3, 0) == m(s, 0, 0));
  CHECK(m(r, 3, 2) == m(s, 2, 0));
  CHECK(test::values(rot90(rot90(s, 1), 3).mask) == test::values(s.mask));
  CHECK(test::values(rot90(s, 2).mask) == test::values(hflip(vflip(s)).mask));
  const Sample c = crop(s, 1, 1, 2, 2);
  CHECK(m(c, 0, 0) == m(s, 1, 1));
  CHECK(crop(s, -1, 0, 2, 2).mask.at({0, 0}) == kIgnoreIndex);
}

TEST_CASE("resize: bilinear image with half-pixel centres (torch align_corners=False), centred nearest mask") {
  Sample s{from_vector<float>({0, 1, 2, 3}, {1, 2, 2}), from_vector<int64_t>({0, 1, 2, 3}, {2, 2}), "r"};
  const Sample up = resize(s, 4, 4);
  // torch.nn.functional.interpolate(x, size=4, mode='bilinear', align_corners=False)
  CHECK_CLOSE(up.image, std::vector<double>({0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3}));
  CHECK(test::values(up.mask) == std::vector<double>({0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3}));
  Sample big{Tensor::empty({1, 4, 4}), Tensor::empty({4, 4}, {DType::i64}), "b"};
  for (int64_t i = 0; i < 16; ++i) {
    big.image.data<float>()[i] = float(i);
    big.mask.data<int64_t>()[i] = i;
  }
  const Sample down = resize(big, 2, 2);
  CHECK(test::values(down.mask) == std::vector<double>({5, 7, 13, 15}));  // centres (1.x, 1.x) and (3.x, 3.x)
  CHECK_CLOSE(down.image, std::vector<double>({2.5, 4.5, 10.5, 12.5}));  // means of 2x2 blocks
}

TEST_CASE("augment is deterministic given the generator, and validates its options") {
  const Sample s = labelled_sample(9, 9);
  AugmentOptions o;
  o.crop_height = o.crop_width = 6;
  o.scale_min = 0.8;
  o.scale_max = 1.3;
  o.rotate90 = o.vflip = true;
  Generator g1(derive_seed(5, SeedDomain::augment, {1, 2})), g2(derive_seed(5, SeedDomain::augment, {1, 2}));
  const Sample a = augment(s, o, g1), b = augment(s, o, g2);
  CHECK(test::values(a.image) == test::values(b.image));
  CHECK(test::values(a.mask) == test::values(b.mask));
  o.scale_min = 0;
  test::check_throws_with<ValueError>([&] { augment(s, o, g1); }, "expected 0 < scale_min <= scale_max");
  Sample bad = s;
  bad.mask = Tensor::empty({3, 3}, {DType::i64});
  test::check_throws_with<ShapeError>([&] { hflip(bad); }, "hflip: image [2, 9, 9] and mask [3, 3] differ in size");
}
