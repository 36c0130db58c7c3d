// Synthetic shapes: determinism, seeds, classes and value ranges; subsets and splits.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "datasets/subset.h"
#include "datasets/synthetic.h"
#include "support/helpers.h"

using namespace crfseg;
using namespace crfseg::data;

TEST_CASE("SyntheticDataset: sample i is a pure function of (seed, i), whatever the access order or thread") {
  SyntheticOptions o;
  o.size = 20;
  const SyntheticDataset a(o), b(o);
  const std::vector<double> s7 = test::values(a.get(7).image);
  (void)b.get(3);
  CHECK(test::values(b.get(7).image) == s7);
  CHECK(test::values(b.get(7).mask) == test::values(a.get(7).mask));
  std::vector<double> from_thread;
  std::thread([&] { from_thread = test::values(a.get(7).image); }).join();
  CHECK(from_thread == s7);
  CHECK(test::values(a.get(8).image) != s7);
  o.seed = 1;
  CHECK(test::values(SyntheticDataset(o).get(7).image) != s7);
}

TEST_CASE("SyntheticDataset: shapes, value range, class balance and multi-class labels") {
  for (int64_t classes : {2, 3, 4}) {
    CAPTURE(classes);
    SyntheticOptions o;
    o.size = 40;
    o.num_classes = classes;
    o.channels = classes == 3 ? 1 : 3;
    o.height = 48;
    o.width = 40;
    const SyntheticDataset ds(o);
    CHECK(ds.class_names().size() == size_t(classes));
    std::set<int64_t> seen;
    double foreground = 0, pixels = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const Sample s = ds.get(i);
      REQUIRE(s.image.shape() == Shape{o.channels, 48, 40});
      REQUIRE(s.mask.shape() == Shape{48, 40});
      for (double v : test::values(s.image)) REQUIRE((v >= 0.0 && v <= 1.0));
      for (double m : test::values(s.mask)) {
        seen.insert(static_cast<int64_t>(m));
        foreground += m > 0;
        pixels += 1;
      }
    }
    CHECK(seen.size() == size_t(classes));  // every class appears
    CHECK(*seen.rbegin() == classes - 1);
    // Neither trivial nor empty: shapes cover a fair share of the pixels.
    CHECK(foreground / pixels > 0.05);
    CHECK(foreground / pixels < 0.6);
  }
}

TEST_CASE("SyntheticDataset: shapes are brighter than their surroundings on average (the task is learnable)") {
  SyntheticOptions o;
  o.size = 30;
  o.channels = 1;
  const SyntheticDataset ds(o);
  double fg = 0, bg = 0, nfg = 0, nbg = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const Sample s = ds.get(i);
    const auto img = test::values(s.image), mask = test::values(s.mask);
    for (size_t p = 0; p < img.size(); ++p) (mask[p] > 0 ? fg : bg) += img[p], (mask[p] > 0 ? nfg : nbg) += 1;
  }
  CHECK(fg / nfg - bg / nbg > 0.2);
}

TEST_CASE("SyntheticDataset rejects bad options") {
  SyntheticOptions o;
  o.num_classes = 5;
  test::check_throws_with<ValueError>([&] { SyntheticDataset{o}; }, "num_classes must be 2, 3 or 4, got 5");
  o = {};
  o.channels = 2;
  test::check_throws_with<ValueError>([&] { SyntheticDataset{o}; }, "channels must be 1 or 3");
  test::check_throws_with<ValueError>([&] { SyntheticDataset().get(1000); }, "index 1000 out of range");
}

TEST_CASE("random_split and range_subset are deterministic partitions") {
  SyntheticOptions o;
  o.size = 50;
  auto ds = std::make_shared<SyntheticDataset>(o);
  const TrainValSplit a = random_split(ds, 0.2, 7), b = random_split(ds, 0.2, 7), c = random_split(ds, 0.2, 8);
  auto indices = [](const std::shared_ptr<const Dataset>& d) { return dynamic_cast<const SubsetDataset&>(*d).indices(); };
  CHECK(a.val->size() == 10);
  CHECK(a.train->size() == 40);
  CHECK(indices(a.val) == indices(b.val));
  CHECK(indices(a.val) != indices(c.val));
  const std::vector<int64_t> val = indices(a.val), train = indices(a.train);
  std::set<int64_t> all(val.begin(), val.end());
  all.insert(train.begin(), train.end());
  CHECK(all.size() == 50);
  CHECK(test::values(a.val->get(0).image) == test::values(ds->get(indices(a.val)[0]).image));
  CHECK(random_permutation(5, 1) == random_permutation(5, 1));
  test::check_throws_with<ValueError>([&] { random_split(ds, 1.0, 0); }, "val_fraction in (0, 1)");
  test::check_throws_with<ValueError>([&] { range_subset(ds, 10, 5); }, "expected 0 <= begin < end <= 50");
}
