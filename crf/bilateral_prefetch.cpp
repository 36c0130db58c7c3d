// The bilateral-lattice prefetch (see crf/bilateral_prefetch.h).
#include "crf/bilateral_prefetch.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <system_error>
#include <utility>

#include "crf/permutohedral.h"
#include "crf/stacked_filter.h"
#include "tensor/cuda_memory.h"
#include "tensor/ops.h"

namespace crfseg::crf {

namespace {

// What the pending prefetch is for. Holding `image` keeps its storage
// alive, so no later tensor can take its memory and pass for it.
struct Pending {
  Tensor image;
  uint64_t version = 0;
  double theta_alpha = 0, theta_beta = 0;
  FilterMode mode = FilterMode::lattice;
  std::future<PrefetchedBilateral> result;

  bool matches(const Tensor& t, const MeanFieldOptions& o) const {
    return &t.storage() == &image.storage() && t.raw_data() == image.raw_data() && t.shape() == image.shape() &&
           t.strides() == image.strides() && t.dtype() == image.dtype() && t.version() == version &&
           o.theta_alpha == theta_alpha && o.theta_beta == theta_beta && o.mode == mode;
  }
};

std::mutex g_mutex;
std::optional<Pending> g_pending;
std::atomic<int64_t> g_hits{0};

// upload_to: the CUDA device to upload the lattices' tables to, or -1.
// threads: the OpenMP team's size (OpenMP's setting is per thread, so a new
// thread would start from the process default, not the caller's --threads).
PrefetchedBilateral build(const Tensor& host_image, const MeanFieldOptions& o, int upload_to, int threads) {
  omp_set_num_threads(threads);
  const Tensor image = ops::contiguous(ops::to_dtype(host_image, DType::f64));
  auto stack = std::make_shared<const StackedFilter>(build_bilateral_filters(image, o, upload_to >= 0));
  PrefetchedBilateral p;
  if (upload_to >= 0) {
    try {
      p.cuda = std::make_shared<const CudaPermutohedralFilter>(
          lattice_tables(parts_of_type<PermutohedralLattice>(*stack)), upload_to,
          cuda::upload_stream(upload_to, cuda::UploadLane::lattice_tables).handle());
    } catch (const OutOfMemoryError&) {
      // The upload runs while the current step's activations are live;
      // the forward that takes this uploads the tables itself instead,
      // after that step's memory is free, as without a prefetch.
    }
  }
  p.host = std::move(stack);
  return p;
}

}  // namespace

void prefetch_bilateral(const Tensor& host_image, const Tensor& image, const MeanFieldOptions& options) {
  const char* op = "prefetch_bilateral";
  check_defined(op, host_image, "host_image");
  check_defined(op, image, "image");
  CRFSEG_CHECK(host_image.device().is_cpu(), DeviceError, op, ": expected host_image on the CPU, got ",
               host_image.device().str());
  CRFSEG_CHECK(host_image.dim() == 4 && host_image.shape() == image.shape(), ShapeError, op,
               ": expected host_image and image of one shape [B, C, H, W], got ", shape_str(host_image.shape()),
               " and ", shape_str(image.shape()));
  const int upload_to = image.device().is_cuda() && options.mode == FilterMode::lattice ? image.device().index : -1;
  std::future<PrefetchedBilateral> result;
  try {
    // The caller's team less one core, left to the thread that launches
    // the network's kernels meanwhile.
    const int threads = std::max(1, omp_get_max_threads() - 1);
    result = std::async(std::launch::async, build, host_image, options, upload_to, threads);
  } catch (const std::system_error&) {
    return;  // no thread to be had: the forward builds its lattices itself, as without a prefetch
  }
  Pending p{.image = image,
            .version = image.version(),
            .theta_alpha = options.theta_alpha,
            .theta_beta = options.theta_beta,
            .mode = options.mode,
            .result = std::move(result)};
  std::optional<Pending> old;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    old = std::exchange(g_pending, std::move(p));
  }
  // `old` (if any) waits for its build here, outside the lock; its error, unclaimed, is dropped.
}

std::optional<PrefetchedBilateral> take_prefetched_bilateral(const Tensor& image, const MeanFieldOptions& options) {
  std::future<PrefetchedBilateral> result;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_pending || !g_pending->matches(image, options)) return std::nullopt;
    result = std::move(g_pending->result);
    g_pending.reset();
  }
  ++g_hits;
  PrefetchedBilateral p = result.get();  // waits; rethrows the build's error
  // Uploaded on the upload stream, used on this thread's: once freed, the
  // tables wait for this stream's work (the upload itself is complete).
  if (p.cuda) p.cuda->record_stream(cuda::current_stream(image.device().index));
  return p;
}

void discard_prefetched_bilateral() {
  std::optional<Pending> old;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    old = std::exchange(g_pending, std::nullopt);
  }
  // `old` waits for its build here, outside the lock.
}

int64_t prefetched_bilateral_hits() { return g_hits.load(); }

}  // namespace crfseg::crf
