// Prefetching a batch's bilateral lattices on a host thread, for CUDA
// forwards that build them on the host (the default, crf/mean_field_composed.h).
//
// Why: the host build needs the image on the host. Inline, the CRF layer
// copies it back from the device, which waits for the network's forward to
// finish, and then the GPU idles while the host builds each image's
// lattice, stacks the tables and uploads them (tens of ms for a batch of 16
// noisy 256^2 images, more than the network's forward on an H100). A loop
// that holds the batch on the host before uploading it can start the build
// earlier instead, so it runs while the GPU computes; crfseg train reads
// one batch ahead and starts the next batch's build right after queueing
// the current forward:
//
//   Tensor images = host_images.to(device);
//   crf->prefetch_lattices(host_images, images);  // crf::CrfRnn, or prefetch_bilateral
//   ...                                            // (the current step)
//   Tensor logits = net(images);                   // the CRF layer takes the prefetched lattices
//
// With a CUDA image the host thread also stacks the tables and uploads them
// on a stream of its own, so the upload, too, leaves the critical path; the
// price is device memory: one batch's tables (430 MB for 16 noisy 256^2
// images) are allocated while the current step's activations are live.
//
// The forward whose image is `image` (the same tensor: storage, offset,
// shape and strides, and not modified since: its version) and whose options
// give the same lattices (theta_alpha, theta_beta, mode) takes them; any
// other forward builds its own, as without a prefetch. The lattices are
// exactly the inline build's (the same code on the same values), so results
// do not change. One prefetch is pending at a time: a new one replaces it
// (after waiting for the old build). A build that fails (e.g. a NaN pixel)
// reports its error in the forward that takes it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "crf/gaussian_filter.h"
#include "crf/mean_field.h"
#include "crf/permutohedral_cuda.h"
#include "tensor/tensor.h"

namespace crfseg::crf {

// host_image: [B, C, H, W] on the CPU, the values of `image` (which may live
// on any device); it is read by the host thread, so it must not be modified
// until the forward has taken the result. Throws ShapeError/DeviceError for
// mismatched tensors.
void prefetch_bilateral(const Tensor& host_image, const Tensor& image, const MeanFieldOptions& options);

// A finished prefetch: the batch's host filter (a StackedFilter, one part
// per image) and, for a CUDA image in the lattice mode, its device filter:
// the stacked tables (lattice_tables) uploaded by the host thread too, on a
// stream of its own (so the copy overlaps the GPU's work as well) and from
// that stream's pool (null if that upload ran out of memory: the taker
// uploads the host filter's tables then). take_prefetched_bilateral marks
// it with record_stream for the taking thread's current stream, so the
// tables, once freed, wait for that stream's work before they are reused.
struct PrefetchedBilateral {
  std::shared_ptr<const GaussianFilter> host;
  std::shared_ptr<const CudaPermutohedralFilter> cuda;
};

// The pending prefetch if it is for this image and these options (waiting
// for it, rethrowing its error); nullopt otherwise (the prefetch stays pending).
std::optional<PrefetchedBilateral> take_prefetched_bilateral(const Tensor& image, const MeanFieldOptions& options);

// Drops the pending prefetch, if any (waiting for its build): for loops
// that end with one unclaimed, so that no host thread or device tensor
// outlives them.
void discard_prefetched_bilateral();

// Calls discard_prefetched_bilateral when the scope ends, however it ends.
struct PrefetchScope {
  PrefetchScope() = default;
  ~PrefetchScope() { discard_prefetched_bilateral(); }
  PrefetchScope(const PrefetchScope&) = delete;
  PrefetchScope& operator=(const PrefetchScope&) = delete;
};

// Forwards that took a prefetch so far (for tests and benchmarks).
int64_t prefetched_bilateral_hits();

}  // namespace crfseg::crf
