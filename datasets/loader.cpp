// DataLoader (see loader.h for the determinism and threading contract).
#include "datasets/loader.h"

#include <cstring>

#include "datasets/seeding.h"
#include "datasets/subset.h"
#include "tensor/ops.h"

namespace crfseg::data {

namespace {

// Loads, augments and sizes the samples of one batch and copies them into
// the batch tensors.
Batch assemble(const Dataset& dataset, const LoaderOptions& o, const std::vector<int64_t>& order, int64_t epoch,
               int64_t index) {
  const int64_t n = static_cast<int64_t>(order.size());
  const int64_t global_begin = index * o.batch_size, global_end = std::min(global_begin + o.batch_size, n);
  const ShardRange mine = shard_range(global_end - global_begin, o.shard, o.num_shards);
  const int64_t begin = global_begin + mine.begin, end = global_begin + mine.end;
  Batch batch;
  batch.epoch = epoch;
  batch.index = index;
  batch.global_size = global_end - global_begin;
  std::vector<Sample> samples;
  for (int64_t p = begin; p < end; ++p) {
    const int64_t i = order[static_cast<size_t>(p)];
    Sample s = dataset.get(i);
    if (o.augment) {
      Generator gen(derive_seed(o.seed, SeedDomain::augment, {static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)}));
      s = augment(s, *o.augment, gen);
    }
    if (o.height > 0) s = resize(s, o.height, o.width);
    if (!samples.empty()) {
      const Sample& first = samples.front();
      CRFSEG_CHECK(s.image.shape() == first.image.shape(), ShapeError, "DataLoader: sample '", s.name, "' (index ", i,
                   ") has image shape ", shape_str(s.image.shape()), " but '", first.name, "' in the same batch has ",
                   shape_str(first.image.shape()), "; set LoaderOptions height/width to resize samples to one size");
    }
    batch.indices.push_back(i);
    batch.names.push_back(s.name);
    samples.push_back(std::move(s));
  }
  const Shape& img = samples.front().image.shape();
  const int64_t B = static_cast<int64_t>(samples.size()), image_numel = numel(img), mask_numel = img[1] * img[2];
  batch.images = Tensor::empty({B, img[0], img[1], img[2]});
  batch.masks = Tensor::empty({B, img[1], img[2]}, {DType::i64});
  for (int64_t b = 0; b < B; ++b) {
    const Sample& s = samples[static_cast<size_t>(b)];
    check_dtype("DataLoader", s.image, DType::f32);
    const Tensor image = ops::contiguous(s.image);
    CRFSEG_CHECK(image.is_contiguous() && s.mask.is_contiguous() && s.mask.dtype() == DType::i64 &&
                     s.mask.size(0) == img[1] && s.mask.size(1) == img[2],
                 ShapeError, "DataLoader: sample '", s.name, "' has mask ", shape_str(s.mask.shape()), " ",
                 dtype_name(s.mask.dtype()), ", expected a contiguous [", img[1], ", ", img[2], "] i64 mask");
    std::memcpy(batch.images.data<float>() + b * image_numel, image.data<float>(), sizeof(float) * image_numel);
    std::memcpy(batch.masks.data<int64_t>() + b * mask_numel, s.mask.data<int64_t>(), sizeof(int64_t) * mask_numel);
  }
  return batch;
}

}  // namespace

ShardRange shard_range(int64_t m, int64_t shard, int64_t num_shards) {
  CRFSEG_CHECK(m >= 0 && num_shards >= 1 && shard >= 0 && shard < num_shards, ValueError,
               "shard_range: expected m >= 0 and 0 <= shard < num_shards, got m = ", m, ", shard ", shard, " of ",
               num_shards);
  return {m * shard / num_shards, m * (shard + 1) / num_shards};
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  CRFSEG_CHECK(dataset_ != nullptr, ValueError, "DataLoader: dataset is null");
  CRFSEG_CHECK(dataset_->size() > 0, ValueError, "DataLoader: dataset is empty: ", dataset_->description());
  CRFSEG_CHECK(options_.batch_size >= 1, ValueError, "DataLoader: batch_size must be >= 1, got ", options_.batch_size);
  CRFSEG_CHECK(options_.num_workers >= 0, ValueError, "DataLoader: num_workers must be >= 0, got ",
               options_.num_workers);
  CRFSEG_CHECK(options_.prefetch >= 1, ValueError, "DataLoader: prefetch must be >= 1, got ", options_.prefetch);
  CRFSEG_CHECK(options_.height >= 0 && options_.width >= 0 && (options_.height > 0) == (options_.width > 0),
               ValueError, "DataLoader: height and width must be both positive or both 0, got ", options_.height, "x",
               options_.width);
  CRFSEG_CHECK(options_.num_shards >= 1 && options_.shard >= 0 && options_.shard < options_.num_shards, ValueError,
               "DataLoader: expected 0 <= shard < num_shards, got shard ", options_.shard, " of ", options_.num_shards);
  CRFSEG_CHECK(options_.batch_size >= options_.num_shards, ValueError, "DataLoader: the global batch_size ",
               options_.batch_size, " is smaller than num_shards ", options_.num_shards,
               ", which would leave a shard without samples");
  CRFSEG_CHECK(num_batches() > 0, ValueError, "DataLoader: drop_last with batch_size ", options_.batch_size,
               " leaves no batch of ", dataset_->size(), " samples");
}

DataLoader::~DataLoader() { stop_workers(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), b = options_.batch_size;
  // A final partial batch needs at least one sample per shard (see loader.h).
  const bool keep_partial = !options_.drop_last && n % b >= options_.num_shards;
  return n / b + (keep_partial ? 1 : 0);
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  const int64_t n = dataset_->size();
  if (options_.shuffle) return random_permutation(n, derive_seed(options_.seed, SeedDomain::shuffle, {static_cast<uint64_t>(epoch)}));
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  return order;
}

Batch DataLoader::load_batch(int64_t epoch, int64_t index) const {
  CRFSEG_CHECK(index >= 0 && index < num_batches(), ValueError, "DataLoader::load_batch: batch ", index,
               " out of range for ", num_batches(), " batches");
  return assemble(*dataset_, options_, epoch_order(epoch), epoch, index);
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  CRFSEG_CHECK(first_batch >= 0 && first_batch <= num_batches(), ValueError, "DataLoader::start_epoch: first batch ",
               first_batch, " out of range for an epoch of ", num_batches(), " batches");
  stop_workers();
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  next_claim_ = next_deliver_ = first_batch;
  end_ = num_batches();
  stopping_ = false;
  ready_.clear();
  for (int64_t w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  slot_free_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  ready_.clear();
}

void DataLoader::worker_loop() {
  const int64_t window = options_.num_workers * options_.prefetch;
  while (true) {
    int64_t index;
    {
      // Claim the next batch, but stay within `window` batches of the
      // consumer so memory stays bounded.
      std::unique_lock<std::mutex> lock(mutex_);
      slot_free_.wait(lock, [&] { return stopping_ || next_claim_ >= end_ || next_claim_ < next_deliver_ + window; });
      if (stopping_ || next_claim_ >= end_) return;
      index = next_claim_++;
    }
    Slot slot;
    try {
      slot.batch = assemble(*dataset_, options_, order_, epoch_, index);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[index] = std::move(slot);
    }
    batch_ready_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  if (workers_.empty()) {
    if (next_deliver_ >= end_) return std::nullopt;
    const int64_t index = next_deliver_++;
    try {
      return assemble(*dataset_, options_, order_, epoch_, index);
    } catch (...) {
      end_ = 0;  // the epoch ends with the error, as with workers
      throw;
    }
  }
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (next_deliver_ >= end_) return std::nullopt;
    batch_ready_.wait(lock, [&] { return ready_.count(next_deliver_) > 0; });
    auto it = ready_.find(next_deliver_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++next_deliver_;
  }
  slot_free_.notify_all();
  if (slot.error) {
    stop_workers();
    end_ = 0;
    std::rethrow_exception(slot.error);
  }
  return std::move(slot.batch);
}

}  // namespace crfseg::data
