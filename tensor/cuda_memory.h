// CUDA device memory, streams and events for the tensor layer.
//
// Memory comes from a caching allocator per device (tensor/block_allocator.h):
// freed blocks are kept and reused on the stream they were used on, and an
// out-of-memory failure empties the cache and retries once before throwing
// OutOfMemoryError with the byte counts. CRFSEG_CUDA_CACHE=0 in the
// environment bypasses the cache (every block is a cudaMalloc, so
// compute-sanitizer sees every out-of-bounds access).
//
// Every op launches on the calling thread's current stream for the device
// (the legacy default stream unless a StreamGuard says otherwise), so work
// from one thread is ordered. Host <-> device copies wait for the stream
// (the _async ones, from and to pinned memory, do not).
//
// A freed block goes back to the pool of the stream it was allocated on and
// is reused in that stream's order. A tensor that kernels on *another*
// stream use must be marked with Tensor::record_stream(that stream) (or
// record_stream below): its block then waits, once freed, for an event on
// that stream before it is reused; otherwise its memory could be handed
// out and overwritten while they run. Blocks of a destroyed Stream return
// to the driver only on empty_cache() or an out-of-memory retry.
//
// When crfseg is built without CUDA every function throws DeviceError
// ("... built without CUDA"), so callers need no #ifdefs.
#pragma once

#include <cstddef>
#include <string>

#include "tensor/block_allocator.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace crfseg::cuda {

using StreamHandle = CUstream_st*;
using EventHandle = CUevent_st*;

// Whether code built for `archs` (meson's gpu_arch: "90a", "80,90a") runs on
// a GPU of compute capability major.minor: an "XYa" entry on X.Y alone, a
// plain "XY" entry on X.Y and any later capability (its SASS on X.*, the
// PTX it embeds, compiled by the driver, elsewhere). The CUDA entry points
// check the device they first touch against the build's list and throw a
// DeviceError that says what to rebuild with, instead of the runtime's
// "no kernel image" at the first launch. (A yes that rests on PTX still
// needs a driver as new as the toolkit, and no CUDA_DISABLE_PTX_JIT.)
bool arch_list_runs_on(const std::string& archs, int major, int minor);

// The build's list (meson's gpu_arch; "" without CUDA), and one line on a
// device: its name, compute capability and memory, and whether this build
// runs on it.
std::string built_archs();
std::string describe_device(int device);

bool is_compiled();           // built with the CUDA toolkit?
int device_count();           // 0 when not compiled or no driver/device
void* malloc_bytes(size_t bytes, int device);  // on the current stream's pool
void* malloc_bytes(size_t bytes, int device, StreamHandle stream);  // on `stream`'s pool
void free_bytes(void* ptr, int device) noexcept;
// ptr (from malloc_bytes) is also used by work on `stream`: see
// BlockAllocator::record_stream. A no-op when the cache is off (cudaFree
// waits for the device).
void record_stream(void* ptr, int device, StreamHandle stream);
void copy_to_device(void* dst, const void* src, size_t bytes, int device);
void copy_to_host(void* dst, const void* src, size_t bytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device);
// The host waits for the whole device, then reads this thread's deferred
// checks (tensor/cuda_deferred.h), which may throw; wait_idle reads none
// (for timing scopes, whose destructors must not throw an op's error).
void synchronize(int device);
void wait_idle(int device);

// ---- pinned host memory and asynchronous copies ----
// Page-locked host memory (cudaHostAlloc). The copy engines read and write
// it directly, so copies to and from it run at the link's full speed and
// can return before they finish; from ordinary (pageable) memory the driver
// copies through a pinned buffer of its own and the call returns only when
// done. Pinning is a scarce resource: for buffers reused many times (e.g.
// GradSync's host copies), not for one-off transfers. Throws DeviceError
// naming the byte count when the driver refuses.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(size_t bytes, int device);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};
// Queue a copy on `stream` and return at once. The host side must be pinned
// and left alone until an event recorded after the copy has completed.
void copy_to_host_async(void* dst, const void* src, size_t bytes, int device, StreamHandle stream);
void copy_to_device_async(void* dst, const void* src, size_t bytes, int device, StreamHandle stream);

// ---- memory statistics (PyTorch's torch.cuda.memory_stats / memory_summary) ----
DeviceMemoryStats memory_stats(int device);
std::string memory_summary(int device);
void reset_peak_memory_stats(int device);
void empty_cache(int device);  // returns cached, unused segments to the driver

// ---- matmul precision (mixed precision for GEMMs and convolutions) ----
// fp32 (the default): true FP32. tf32 / bf16: cuBLAS feeds the tensor
// cores A and B rounded to TF32 or BF16 and accumulates in FP32; tensors,
// weights and gradients stay FP32 in memory (so no loss scaling is needed:
// the rounding is per product, with FP32's exponent range). Applies to CUDA
// matmul and the CUDA convolutions' im2col path; process-wide.
enum class MatmulPrecision { fp32, tf32, bf16 };
MatmulPrecision matmul_precision();
// Returns the previous setting. Without CUDA only fp32 is accepted (DeviceError).
MatmulPrecision set_matmul_precision(MatmulPrecision precision);
// "fp32" / "tf32" / "bf16"; parse throws ValueError listing them.
const char* matmul_precision_name(MatmulPrecision precision);
MatmulPrecision parse_matmul_precision(const std::string& name);
// The precision a run asks for through a setting (`option`, e.g.
// "--precision", names it in the messages), checked for where it runs:
// ValueError for an unknown name, for a reduced precision off CUDA
// (`on_cuda` false), and on CUDA for one other than a hand-written
// production SGEMM's own (CRFSEG_CUDA_SGEMM; it multiplies at its own
// whatever the setting). One rule for crfseg's commands and the benchmarks.
MatmulPrecision parse_matmul_precision_for(const std::string& option, const std::string& name, bool on_cuda);

// Sets the precision for a scope (torch.autocast's role, for compute only).
class MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision p) : previous_(set_matmul_precision(p)) {}
  ~MatmulPrecisionGuard() { set_matmul_precision(previous_); }
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision previous_;
};

// ---- streams ----
// The calling thread's current stream on `device` (nullptr: the legacy default stream).
StreamHandle current_stream(int device);
// Makes `device` current for the CUDA runtime and returns its current stream:
// what every op calls before it launches a kernel.
StreamHandle launch_stream(int device);
// Sets it and also makes `device` current for the CUDA runtime.
void set_current_stream(int device, StreamHandle stream);

// An owned, non-blocking stream.
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  StreamHandle handle() const { return stream_; }
  int device() const { return device_; }
  void synchronize() const;

 private:
  StreamHandle stream_ = nullptr;
  int device_ = 0;
};

// Streams for host-to-device copies that must not wait for the work queued
// on the current stream, one per device and lane: the batches
// (ops::upload_ahead) and the CRF prefetch's lattice tables
// (crf/bilateral_prefetch.cpp), apart so that a batch's copy, which the host
// waits for, never waits behind a table upload (hundreds of MB). Created on
// first use and never destroyed: work may be queued on them until the
// process ends.
enum class UploadLane { batches, lattice_tables };
const Stream& upload_stream(int device, UploadLane lane);

// Makes a stream current for the scope, then restores the previous one.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  // Read only by the CUDA build's implementation ([[maybe_unused]] for CPU-only builds).
  [[maybe_unused]] int device_;
  [[maybe_unused]] StreamHandle previous_;
};

// An event: a point in a stream's work (cudaEventCreate). With timing
// (the default) two of them time the work between; without, recording and
// waiting are cheaper (for ordering streams only).
class Event {
 public:
  explicit Event(int device, bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(StreamHandle stream);  // on `stream` (e.g. current_stream(device))
  void synchronize() const;          // the host waits for it
  bool query() const;                // whether the work before it has completed (never recorded: true)
  // `stream`'s later work waits for it; the host does not (cudaStreamWaitEvent).
  // Never recorded: no wait.
  void block(StreamHandle stream) const;
  // Milliseconds from `start`'s record to this one's (both must have completed).
  float elapsed_ms_since(const Event& start) const;

 private:
  [[maybe_unused]] EventHandle event_ = nullptr;  // as above
  [[maybe_unused]] int device_ = 0;
};

}  // namespace crfseg::cuda
