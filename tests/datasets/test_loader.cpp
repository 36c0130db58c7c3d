// DataLoader: batch shapes, determinism across worker counts, resumption
// mid-epoch, drop_last, size handling and exception propagation.
#include <doctest/doctest.h>

#include <set>

#include "datasets/loader.h"
#include "datasets/synthetic.h"
#include "support/helpers.h"

using namespace crfseg;
using namespace crfseg::data;

namespace {

std::shared_ptr<const Dataset> synthetic(int64_t n) {
  SyntheticOptions o;
  o.size = n;
  o.height = o.width = 20;
  return std::make_shared<SyntheticDataset>(o);
}

// Everything a batch holds, flattened, to compare runs.
struct Flat {
  std::vector<double> images, masks;
  std::vector<int64_t> indices;
  bool operator==(const Flat&) const = default;
};
std::vector<Flat> run_epoch(DataLoader& loader, int64_t epoch, int64_t first = 0) {
  std::vector<Flat> out;
  loader.start_epoch(epoch, first);
  while (auto b = loader.next()) out.push_back({test::values(b->images), test::values(b->masks), b->indices});
  return out;
}

// Sizes vary with the index (to test resizing), and one index can throw.
class OddDataset : public Dataset {
 public:
  explicit OddDataset(int64_t bad = -1) : bad_(bad) {}
  int64_t size() const override { return 10; }
  Sample get(int64_t i) const override {
    check_index(i, "OddDataset::get");
    CRFSEG_CHECK(i != bad_, IOError, "OddDataset: cannot decode 'sample_", i, ".jpg': corrupt");
    const int64_t h = 8 + i % 3;
    return {full({3, h, 8}, double(i)), zeros({h, 8}, {DType::i64}), "odd_" + std::to_string(i)};
  }
  int64_t num_classes() const override { return 2; }
  int64_t in_channels() const override { return 3; }
  std::vector<std::string> class_names() const override { return {"a", "b"}; }
  std::string description() const override { return "odd"; }

 private:
  int64_t bad_;
};

}  // namespace

TEST_CASE("DataLoader batches: shapes, counts, drop_last, every sample once per epoch") {
  LoaderOptions o;
  o.batch_size = 4;
  DataLoader loader(synthetic(10), o);
  CHECK(loader.num_batches() == 3);
  loader.start_epoch(0);
  std::multiset<int64_t> seen;
  std::vector<int64_t> sizes;
  while (auto b = loader.next()) {
    CHECK(b->images.shape() == Shape{int64_t(b->indices.size()), 3, 20, 20});
    CHECK(b->masks.shape() == Shape{int64_t(b->indices.size()), 20, 20});
    CHECK(b->masks.dtype() == DType::i64);
    sizes.push_back(int64_t(b->indices.size()));
    seen.insert(b->indices.begin(), b->indices.end());
  }
  CHECK(sizes == std::vector<int64_t>{4, 4, 2});
  CHECK(seen == std::multiset<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK_FALSE(loader.next().has_value());
  o.drop_last = true;
  CHECK(DataLoader(synthetic(10), o).num_batches() == 2);
  o.batch_size = 11;
  test::check_throws_with<ValueError>([&] { DataLoader(synthetic(10), o); }, "leaves no batch");
}

TEST_CASE("DataLoader: shuffles differ per epoch, are a pure function of (seed, epoch), batches match the samples") {
  LoaderOptions o;
  o.batch_size = 3;
  o.seed = 11;
  auto ds = synthetic(12);
  DataLoader a(ds, o), b(ds, o);
  CHECK(a.epoch_order(0) == b.epoch_order(0));
  CHECK(a.epoch_order(0) != a.epoch_order(1));
  o.seed = 12;
  CHECK(DataLoader(ds, o).epoch_order(0) != a.epoch_order(0));
  const Batch batch = a.load_batch(2, 1);
  const std::vector<int64_t> order = a.epoch_order(2);
  CHECK(batch.indices == std::vector<int64_t>(order.begin() + 3, order.begin() + 6));
  // Without augmentation, sample k of the batch is exactly dataset.get(index).
  const std::vector<double> images = test::values(batch.images);
  const std::vector<double> second = test::values(ds->get(batch.indices[1]).image);
  CHECK(std::vector<double>(images.begin() + 1200, images.begin() + 2400) == second);
}

TEST_CASE("DataLoader: identical batches with 0, 1 and 3 workers; resuming mid-epoch replays the rest") {
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 3;
  AugmentOptions aug;
  aug.crop_height = aug.crop_width = 16;
  aug.hflip = aug.vflip = aug.rotate90 = true;
  aug.scale_min = 0.75;
  aug.scale_max = 1.25;
  o.augment = aug;
  auto ds = synthetic(23);
  std::vector<std::vector<Flat>> per_workers;
  for (int64_t workers : {0, 1, 3}) {
    CAPTURE(workers);
    o.num_workers = workers;
    o.prefetch = 1 + workers % 2;
    DataLoader loader(ds, o);
    per_workers.push_back(run_epoch(loader, 1));
    CHECK(per_workers.back().size() == 6);
    const std::vector<Flat> resumed = run_epoch(loader, 1, 4);  // "killed" after 4 batches
    REQUIRE(resumed.size() == 2);
    CHECK(resumed[0] == per_workers.back()[4]);
    CHECK(resumed[1] == per_workers.back()[5]);
    CHECK(run_epoch(loader, 1, 6).empty());
    CHECK(run_epoch(loader, 2) != per_workers.back());  // a new epoch, new order and augmentation
  }
  CHECK(per_workers[0] == per_workers[1]);
  CHECK(per_workers[0] == per_workers[2]);
  CHECK(per_workers[0][0].images.size() == 4 * 3 * 16 * 16);
}

TEST_CASE("DataLoader: unequal sizes need a configured size; with one they are resized") {
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = false;
  DataLoader strict(std::make_shared<OddDataset>(), o);
  strict.start_epoch(0);
  test::check_throws_with<ShapeError>([&] { strict.next(); },
                                      "sample 'odd_1' (index 1) has image shape [3, 9, 8] but 'odd_0' in the same batch has [3, 8, 8]; set LoaderOptions height/width");
  CHECK_FALSE(strict.next().has_value());  // the epoch ended with the error
  o.height = 6;
  o.width = 7;
  DataLoader resized(std::make_shared<OddDataset>(), o);
  resized.start_epoch(0);
  const auto b = resized.next();
  REQUIRE(b.has_value());
  CHECK(b->images.shape() == Shape{5, 3, 6, 7});
  CHECK(b->images.at({4, 0, 5, 6}) == 4.0);  // constant images stay constant
}

TEST_CASE("DataLoader: a worker's exception reaches next() with its type and message, in order") {
  for (int64_t workers : {0, 2}) {
    CAPTURE(workers);
    LoaderOptions o;
    o.batch_size = 2;
    o.shuffle = false;
    o.num_workers = workers;
    o.height = o.width = 8;
    DataLoader loader(std::make_shared<OddDataset>(5), o);
    loader.start_epoch(0);
    CHECK(loader.next()->indices == std::vector<int64_t>{0, 1});
    CHECK(loader.next()->indices == std::vector<int64_t>{2, 3});
    test::check_throws_with<IOError>([&] { loader.next(); }, "OddDataset: cannot decode 'sample_5.jpg': corrupt");
    CHECK_FALSE(loader.next().has_value());
    loader.start_epoch(0, 3);  // skipping the bad batch works
    CHECK(loader.next()->indices == std::vector<int64_t>{6, 7});
  }
}

TEST_CASE("DataLoader rejects bad options") {
  LoaderOptions o;
  o.batch_size = 0;
  test::check_throws_with<ValueError>([&] { DataLoader(synthetic(4), o); }, "batch_size must be >= 1, got 0");
  o.batch_size = 2;
  o.height = 4;
  test::check_throws_with<ValueError>([&] { DataLoader(synthetic(4), o); }, "height and width must be both positive");
  o.height = 0;
  test::check_throws_with<ValueError>([&] { DataLoader(nullptr, o); }, "dataset is null");
  DataLoader loader(synthetic(4), o);
  test::check_throws_with<ValueError>([&] { loader.start_epoch(0, 3); }, "first batch 3 out of range");
}
