// DataLoader: batches of samples, shuffled per epoch, prefetched by worker threads.
//
// A batch is
//   images [B, C, H, W] f32    masks [B, H, W] i64
// built from B samples of the dataset, each optionally augmented and then
// brought to the configured size (resize(); see augment.h). Without a
// configured size every sample must already share one (ShapeError naming the
// two samples otherwise).
//
// Determinism: everything is a pure function of (seed, epoch, batch index):
//   - epoch e visits the samples in epoch_order(e), a permutation seeded with
//     derive_seed(seed, shuffle, {e}) (or 0..n-1 without shuffle);
//   - sample i of epoch e is augmented with a Generator seeded with
//     derive_seed(seed, augment, {e, i}).
// Batches are therefore identical whatever num_workers is, and a run resumed
// with start_epoch(e, k) sees exactly the batches k, k+1, ... an
// uninterrupted run saw. Nothing needs to go into a checkpoint but (epoch,
// batch index).
//
// Data parallelism (num_shards = P > 1): batch_size is the *global* batch G,
// and this loader delivers only shard s's slice of every global batch:
// positions shard_range(m, s, P) of a batch of m samples (G, or fewer for the
// last). Every shard walks the same seeded epoch order, so the union of the P
// shards' batch k is exactly batch k of the unsharded loader, and a run
// resumed at batch k with another P continues the same sequence. A final
// partial batch with fewer than P samples would leave a shard empty, so it
// is dropped (by every shard) when P > 1.
//
// Threads: with num_workers = 0 batches are loaded in next(). Otherwise
// workers claim batch indices in order and load them in parallel, at most
// num_workers * prefetch batches ahead of the consumer; next() returns them
// strictly in order. An exception thrown while loading (a corrupt file, a
// size mismatch) is caught in the worker and rethrown from next() for that
// batch, with its type and message; the epoch then ends (start_epoch again to
// continue). The dataset's get() must be thread-safe (see dataset.h).
#pragma once

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "datasets/augment.h"
#include "datasets/dataset.h"

namespace crfseg::data {

struct LoaderOptions {
  int64_t batch_size = 8;
  bool shuffle = true;
  bool drop_last = false;   // drop a final batch smaller than batch_size
  uint64_t seed = 0;
  int64_t num_workers = 0;  // background threads; 0 loads in the caller's thread
  int64_t prefetch = 2;     // batches in flight per worker
  int64_t height = 0, width = 0;  // output size (0, 0: samples must share a size)
  std::optional<AugmentOptions> augment;
  int64_t num_shards = 1;   // data-parallel ranks sharing every batch (see above)
  int64_t shard = 0;        // this rank, in [0, num_shards)
};

// The positions [begin, end) of shard s's slice of a batch of m samples split
// over P shards: [floor(s*m/P), floor((s+1)*m/P)), so slices differ by at most
// one sample and are in rank order.
struct ShardRange {
  int64_t begin = 0, end = 0;
};
ShardRange shard_range(int64_t m, int64_t shard, int64_t num_shards);

struct Batch {
  Tensor images;                  // [B, C, H, W] f32
  Tensor masks;                   // [B, H, W] i64
  std::vector<int64_t> indices;   // dataset indices of the samples
  std::vector<std::string> names;
  int64_t epoch = 0, index = 0;   // which epoch, and which batch within it
  int64_t global_size = 0;        // samples in the whole batch over all shards (= B unsharded)
};

class DataLoader {
 public:
  // Throws ValueError for a null or empty dataset, batch_size < 1,
  // num_workers < 0, prefetch < 1, a half-given size, num_shards < 1, a
  // shard outside [0, num_shards), or batch_size < num_shards.
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;  // per epoch
  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }

  // The order in which epoch `epoch` visits the dataset.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // Begins epoch `epoch` at batch `first_batch` (0 for a fresh epoch; k to
  // resume after k completed batches). Stops the previous epoch's workers.
  // Throws ValueError for first_batch outside [0, num_batches()].
  void start_epoch(int64_t epoch, int64_t first_batch = 0);

  // The next batch of the current epoch, or nullopt when it is done (or when
  // no epoch was started). Rethrows a worker's exception.
  std::optional<Batch> next();

  // Loads batch `index` of epoch `epoch` synchronously: what the workers run,
  // usable on its own (e.g. to inspect one batch).
  Batch load_batch(int64_t epoch, int64_t index) const;

 private:
  void stop_workers();
  void worker_loop();

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;

  // The running epoch. Guarded by mutex_ while workers exist.
  int64_t epoch_ = 0;
  int64_t next_claim_ = 0;    // next batch index a worker will load
  int64_t next_deliver_ = 0;  // next batch index next() returns
  int64_t end_ = 0;           // one past the last batch index (0: no epoch running)
  bool stopping_ = false;
  std::vector<int64_t> order_;
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Slot> ready_;  // loaded batches not yet delivered
  std::mutex mutex_;
  std::condition_variable batch_ready_, slot_free_;
  std::vector<std::thread> workers_;
};

}  // namespace crfseg::data
