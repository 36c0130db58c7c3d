// CUDA runtime wrappers for the tensor layer (see cuda_memory.h).
//
// Compiled with CRFSEG_WITH_CUDA when the toolkit is found; otherwise every
// entry point throws a DeviceError that says crfseg was built without CUDA.
#include "tensor/cuda_memory.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "tensor/cuda_deferred.h"
#include "tensor/error.h"

#ifdef CRFSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm/gemm.h"
#endif

namespace crfseg::cuda {

const char* matmul_precision_name(MatmulPrecision p) {
  switch (p) {
    case MatmulPrecision::fp32: return "fp32";
    case MatmulPrecision::tf32: return "tf32";
    case MatmulPrecision::bf16: return "bf16";
  }
  return "?";
}

MatmulPrecision parse_matmul_precision(const std::string& name) {
  for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::tf32, MatmulPrecision::bf16}) {
    if (name == matmul_precision_name(p)) return p;
  }
  throw ValueError("matmul precision: expected fp32, tf32 or bf16, got '" + name + "'");
}

MatmulPrecision parse_matmul_precision_for(const std::string& option, const std::string& name, bool on_cuda) {
  MatmulPrecision p = MatmulPrecision::fp32;
  try {
    p = parse_matmul_precision(name);
  } catch (const ValueError& e) {
    throw ValueError(option + ": " + e.what());
  }
  if (p != MatmulPrecision::fp32 && !on_cuda) {
    throw ValueError(option + " " + name + " applies to CUDA GEMMs; use it with --device cuda");
  }
#ifdef CRFSEG_WITH_CUDA
  if (on_cuda) kernels::cuda::check_production_precision(static_cast<kernels::cuda::GemmPrecision>(p), option);
#endif
  return p;
}

bool arch_list_runs_on(const std::string& archs, int major, int minor) {
  const int cc = 10 * major + minor;
  size_t begin = 0;
  while (begin <= archs.size()) {
    const size_t end = std::min(archs.find(',', begin), archs.size());
    std::string entry = archs.substr(begin, end - begin);
    entry.erase(0, entry.find_first_not_of(' '));
    entry.erase(entry.find_last_not_of(' ') + 1);
    const bool specific = !entry.empty() && entry.back() == 'a';
    if (specific) entry.pop_back();
    if (!entry.empty() && entry.size() <= 4 && entry.find_first_not_of("0123456789") == std::string::npos) {
      const int built = std::stoi(entry);
      if (specific ? cc == built : cc >= built) return true;
    }
    begin = end + 1;
  }
  return false;
}

#ifdef CRFSEG_WITH_CUDA

bool is_compiled() { return true; }
std::string built_archs() { return CRFSEG_CUDA_ARCHS; }

int device_count() {
  // Asked once: every allocation and copy checks its device index against it.
  static const int count = [] {
    int n = 0;
    // No driver or no device is not an error here: it just means zero devices.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error
      return 0;
    }
    return n;
  }();
  return count;
}

namespace {
constexpr int kMaxDevices = 64;

// What to do about a GPU the build does not run on.
std::string arch_advice(int major, int minor) {
  const int cc = 10 * major + minor;
  if (cc < 80) return "crfseg's CUDA backend needs compute capability 8.0 or later";
  return detail::concat_message("rebuild with -Dgpu_arch=", cc, cc == 90 ? "a" : "", " or a list that includes it");
}

// A device index crfseg can use: one of the devices present, within the
// devices it keeps state for.
void check_index(int device, const char* op) {
  const int count = device_count();
  CRFSEG_CHECK(device >= 0 && device < count, DeviceError, op, ": expected a CUDA device index in [0, ",
               count, "), got cuda:", device, count == 0 ? " (no CUDA device present)" : "");
  CRFSEG_CHECK(device < kMaxDevices, DeviceError, op, ": cuda:", device, " is past the ", kMaxDevices,
               " devices crfseg keeps state for");
}

// The build's compute capabilities (meson's gpu_arch) against the device's,
// once per device that passes.
void check_arch(int device, const char* op) {
  static std::array<std::atomic<bool>, kMaxDevices> ok{};
  if (ok[static_cast<size_t>(device)].load(std::memory_order_acquire)) return;
  cudaDeviceProp prop{};
  CRFSEG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  CRFSEG_CHECK(arch_list_runs_on(CRFSEG_CUDA_ARCHS, prop.major, prop.minor), DeviceError, op, ": cuda:", device,
               " is ", prop.name, " (compute capability ", prop.major, ".", prop.minor,
               "), which code built for compute capabilities ", CRFSEG_CUDA_ARCHS,
               " (meson's gpu_arch) does not run on; ", arch_advice(prop.major, prop.minor));
  ok[static_cast<size_t>(device)].store(true, std::memory_order_release);
}

void select(int device, const char* op) {
  check_index(device, op);
  CRFSEG_CUDA_CHECK(cudaSetDevice(device));
  check_arch(device, op);
}

// Whether the work before `e` has completed. cudaEventQuery's "not ready"
// is no error, but the runtime may keep it as the last error, which the
// next launch check would then report: cleared here (as PyTorch does).
bool event_complete(cudaEvent_t e) {
  const cudaError_t err = cudaEventQuery(e);
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  CRFSEG_CUDA_CHECK(err);
  return true;
}

// Every allocation goes through the device's BlockAllocator unless
// CRFSEG_CUDA_CACHE=0. Allocators are never destroyed: Storages may be freed
// during static destruction.
bool caching_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("CRFSEG_CUDA_CACHE");
    return env == nullptr || env[0] != '0';
  }();
  return on;
}

BlockAllocator& allocator(int device);

// The kernels' stream-ordered scratch (kernels/cuda/cuda_check.h,
// scratch_malloc) comes from the driver's pool, which cannot take the
// segments this cache holds: when the device is full, it asks for them here.
const bool g_release_registered = [] {
  kernels::cuda::set_release_cached_memory([](int device) { allocator(device).empty_cache_for_foreign_retry(); });
  return true;
}();

BlockAllocator& allocator(int device) {
  static std::mutex lock;
  static std::array<BlockAllocator*, kMaxDevices> allocators{};
  std::lock_guard<std::mutex> guard(lock);
  BlockAllocator*& a = allocators.at(static_cast<size_t>(device));
  if (a == nullptr) {
    a = new BlockAllocator({
        .allocate = [device](size_t bytes) -> void* {
          CRFSEG_CUDA_CHECK(cudaSetDevice(device));
          void* ptr = nullptr;
          cudaError_t err = cudaMalloc(&ptr, bytes);
          if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            // The kernels' scratch pool keeps its free memory
            // (kernels/cuda/launch.cu): hand it back, then try once more.
            cudaMemPool_t pool = nullptr;
            if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess &&
                cudaMemPoolTrimTo(pool, 0) == cudaSuccess) {
              err = cudaMalloc(&ptr, bytes);
            }
          }
          if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear it: the allocator retries or throws its own error
            return nullptr;
          }
          CRFSEG_CUDA_CHECK(err);
          return ptr;
        },
        .release = [device](void* ptr) {
          cudaSetDevice(device);
          cudaFree(ptr);
        },
        .synchronize = [device] {
          CRFSEG_CUDA_CHECK(cudaSetDevice(device));
          CRFSEG_CUDA_CHECK(cudaDeviceSynchronize());
        },
        .describe = [device] {
          size_t free_b = 0, total_b = 0;
          cudaSetDevice(device);
          if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            cudaGetLastError();
            return std::string("device memory unknown");
          }
          return detail::concat_message("the device has ", free_b, " of ", total_b, " bytes free");
        },
        .name = "cuda:" + std::to_string(device),
        .record_event = [device](uintptr_t stream) -> void* {
          CRFSEG_CUDA_CHECK(cudaSetDevice(device));
          cudaEvent_t e = nullptr;
          CRFSEG_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
          const cudaError_t err = cudaEventRecord(e, reinterpret_cast<cudaStream_t>(stream));
          if (err != cudaSuccess) cudaEventDestroy(e);
          CRFSEG_CUDA_CHECK(err);
          return e;
        },
        .event_done = [](void* event) {
          const auto e = static_cast<cudaEvent_t>(event);
          if (!event_complete(e)) return false;
          CRFSEG_CUDA_CHECK(cudaEventDestroy(e));
          return true;
        },
    });
  }
  return *a;
}

thread_local std::array<StreamHandle, kMaxDevices> t_current_stream{};

// malloc_bytes once the device is selected.
void* allocate(size_t bytes, int device, StreamHandle stream) {
  if (caching_enabled()) return allocator(device).malloc(bytes, reinterpret_cast<BlockAllocator::StreamId>(stream));
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, bytes == 0 ? 1 : bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    CRFSEG_CHECK(false, OutOfMemoryError, "cuda::malloc: out of memory allocating ", bytes,
                 " bytes on cuda:", device, " (free ", free_b, " of ", total_b,
                 "); reduce batch size or enable gradient accumulation");
  }
  CRFSEG_CUDA_CHECK(err);
  return ptr;
}
}  // namespace

std::string describe_device(int device) {
  check_index(device, "cuda::describe_device");
  cudaDeviceProp prop{};
  CRFSEG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const std::string caveat = arch_list_runs_on(CRFSEG_CUDA_ARCHS, prop.major, prop.minor)
                                 ? ""
                                 : " (this build does not run on it: " + arch_advice(prop.major, prop.minor) + ")";
  return detail::concat_message("cuda:", device, " ", prop.name, ", compute capability ", prop.major, ".", prop.minor,
                                ", ", prop.totalGlobalMem >> 20, " MiB", caveat);
}

void* malloc_bytes(size_t bytes, int device) {
  select(device, "cuda::malloc");  // first: it names a bad index
  return allocate(bytes, device, current_stream(device));
}
void* malloc_bytes(size_t bytes, int device, StreamHandle stream) {
  select(device, "cuda::malloc");
  return allocate(bytes, device, stream);
}

void free_bytes(void* ptr, int device) noexcept {
  if (ptr == nullptr) return;
  if (caching_enabled()) {
    try {
      allocator(device).free(ptr);
    } catch (...) {
      // A pointer the allocator does not know is a bug in crfseg; a
      // destructor cannot report it, and freeing it blindly could corrupt.
    }
    return;
  }
  cudaSetDevice(device);
  cudaFree(ptr);  // errors here cannot be reported from a destructor
}

void record_stream(void* ptr, int device, StreamHandle stream) {
  select(device, "cuda::record_stream");
  if (caching_enabled()) allocator(device).record_stream(ptr, reinterpret_cast<BlockAllocator::StreamId>(stream));
}

void copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_to_device");
  const cudaStream_t s = current_stream(device);
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(s));  // the host buffer may go away on return
}
void copy_to_host(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_to_host");
  const cudaStream_t s = current_stream(device);
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(s));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device) {
  select(device, "cuda::copy_device_to_device");
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream(device)));
}
void synchronize(int device) {
  select(device, "cuda::synchronize");
  CRFSEG_CUDA_CHECK(cudaDeviceSynchronize());
  raise_deferred_errors(device);  // every check queued before is complete now
}
void wait_idle(int device) {
  select(device, "cuda::wait_idle");
  CRFSEG_CUDA_CHECK(cudaDeviceSynchronize());
}

// The kernels' enum lists the same precisions in the same order.
static_assert(static_cast<int>(MatmulPrecision::bf16) == static_cast<int>(kernels::cuda::GemmPrecision::bf16) &&
              static_cast<int>(MatmulPrecision::tf32) == static_cast<int>(kernels::cuda::GemmPrecision::tf32));
MatmulPrecision matmul_precision() { return static_cast<MatmulPrecision>(kernels::cuda::gemm_precision()); }
MatmulPrecision set_matmul_precision(MatmulPrecision p) {
  return static_cast<MatmulPrecision>(kernels::cuda::set_gemm_precision(static_cast<kernels::cuda::GemmPrecision>(p)));
}

DeviceMemoryStats memory_stats(int device) {
  select(device, "cuda::memory_stats");
  return allocator(device).stats();
}
std::string memory_summary(int device) {
  select(device, "cuda::memory_summary");
  return allocator(device).summary();
}
void reset_peak_memory_stats(int device) {
  select(device, "cuda::reset_peak_memory_stats");
  allocator(device).reset_peak();
}
void empty_cache(int device) {
  select(device, "cuda::empty_cache");
  allocator(device).empty_cache();
}

StreamHandle current_stream(int device) { return t_current_stream.at(static_cast<size_t>(device)); }
StreamHandle launch_stream(int device) {
  select(device, "cuda::launch_stream");
  return current_stream(device);
}
void set_current_stream(int device, StreamHandle stream) {
  select(device, "cuda::set_current_stream");
  t_current_stream.at(static_cast<size_t>(device)) = stream;
}

Stream::Stream(int device) : device_(device) {
  select(device, "cuda::Stream");
  cudaStream_t s = nullptr;
  CRFSEG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}
Stream::~Stream() {
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);  // blocks freed on it may be reused elsewhere after this
  cudaStreamDestroy(stream_);
}
void Stream::synchronize() const { CRFSEG_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

const Stream& upload_stream(int device, UploadLane lane) {
  check_index(device, "cuda::upload_stream");
  static std::mutex mutex;
  static std::array<std::array<Stream*, 2>, kMaxDevices> streams{};
  std::lock_guard<std::mutex> lock(mutex);
  Stream*& s = streams.at(static_cast<size_t>(device)).at(static_cast<size_t>(lane));
  if (s == nullptr) s = new Stream(device);
  return *s;
}

StreamGuard::StreamGuard(const Stream& stream) : device_(stream.device()), previous_(current_stream(stream.device())) {
  set_current_stream(device_, stream.handle());
}
StreamGuard::~StreamGuard() { t_current_stream.at(static_cast<size_t>(device_)) = previous_; }

Event::Event(int device, bool timing) : device_(device) {
  select(device, "cuda::Event");
  cudaEvent_t e = nullptr;
  CRFSEG_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  event_ = e;
}
Event::~Event() { cudaEventDestroy(event_); }
void Event::record(StreamHandle stream) {
  select(device_, "cuda::Event::record");  // the legacy stream (nullptr) is the current device's
  CRFSEG_CUDA_CHECK(cudaEventRecord(event_, stream));
}
void Event::synchronize() const { CRFSEG_CUDA_CHECK(cudaEventSynchronize(event_)); }
bool Event::query() const {
  select(device_, "cuda::Event::query");
  return event_complete(event_);
}
void Event::block(StreamHandle stream) const { CRFSEG_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }

PinnedBuffer::PinnedBuffer(size_t bytes, int device) : bytes_(bytes) {
  select(device, "cuda::PinnedBuffer");
  if (bytes == 0) return;
  const cudaError_t e = cudaHostAlloc(&data_, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it: the process goes on after the exception
    data_ = nullptr;
    throw DeviceError("cuda::PinnedBuffer: cudaHostAlloc of " + std::to_string(bytes) +
                      " bytes of page-locked host memory failed: " + cudaGetErrorString(e));
  }
}
PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);  // errors here cannot be reported from a destructor
}
PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}
void copy_to_host_async(void* dst, const void* src, size_t bytes, int device, StreamHandle stream) {
  select(device, "cuda::copy_to_host_async");
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
}
void copy_to_device_async(void* dst, const void* src, size_t bytes, int device, StreamHandle stream) {
  select(device, "cuda::copy_to_device_async");
  CRFSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
}
float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0;
  CRFSEG_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

#else  // built without CUDA

namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw DeviceError(std::string(op) + ": crfseg was built without CUDA (reconfigure with -Dcuda=enabled)");
}
}  // namespace

bool is_compiled() { return false; }
std::string built_archs() { return ""; }
std::string describe_device(int) { no_cuda("cuda::describe_device"); }
int device_count() { return 0; }
void* malloc_bytes(size_t, int) { no_cuda("cuda::malloc"); }
void* malloc_bytes(size_t, int, StreamHandle) { no_cuda("cuda::malloc"); }
void free_bytes(void*, int) noexcept {}
void record_stream(void*, int, StreamHandle) { no_cuda("cuda::record_stream"); }
void copy_to_device(void*, const void*, size_t, int) { no_cuda("cuda::copy_to_device"); }
void copy_to_host(void*, const void*, size_t, int) { no_cuda("cuda::copy_to_host"); }
void copy_device_to_device(void*, const void*, size_t, int) { no_cuda("cuda::copy_device_to_device"); }
void synchronize(int) { no_cuda("cuda::synchronize"); }
void wait_idle(int) { no_cuda("cuda::wait_idle"); }
MatmulPrecision matmul_precision() { return MatmulPrecision::fp32; }
MatmulPrecision set_matmul_precision(MatmulPrecision p) {
  if (p != MatmulPrecision::fp32) no_cuda("cuda::set_matmul_precision");
  return MatmulPrecision::fp32;
}
DeviceMemoryStats memory_stats(int) { no_cuda("cuda::memory_stats"); }
std::string memory_summary(int) { no_cuda("cuda::memory_summary"); }
void reset_peak_memory_stats(int) { no_cuda("cuda::reset_peak_memory_stats"); }
void empty_cache(int) { no_cuda("cuda::empty_cache"); }
StreamHandle current_stream(int) { return nullptr; }
StreamHandle launch_stream(int) { no_cuda("cuda::launch_stream"); }
void set_current_stream(int, StreamHandle) { no_cuda("cuda::set_current_stream"); }
Stream::Stream(int) { no_cuda("cuda::Stream"); }
Stream::~Stream() = default;
void Stream::synchronize() const {}
const Stream& upload_stream(int, UploadLane) { no_cuda("cuda::upload_stream"); }
StreamGuard::StreamGuard(const Stream&) : device_(0), previous_(nullptr) { no_cuda("cuda::StreamGuard"); }
StreamGuard::~StreamGuard() = default;
Event::Event(int, bool) { no_cuda("cuda::Event"); }
Event::~Event() = default;
void Event::record(StreamHandle) {}
void Event::synchronize() const {}
bool Event::query() const { return true; }
void Event::block(StreamHandle) const {}
PinnedBuffer::PinnedBuffer(size_t, int) { no_cuda("cuda::PinnedBuffer"); }
PinnedBuffer::~PinnedBuffer() = default;
PinnedBuffer::PinnedBuffer(PinnedBuffer&&) noexcept {}  // never holds memory without CUDA
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&&) noexcept { return *this; }
void copy_to_host_async(void*, const void*, size_t, int, StreamHandle) { no_cuda("cuda::copy_to_host_async"); }
void copy_to_device_async(void*, const void*, size_t, int, StreamHandle) { no_cuda("cuda::copy_to_device_async"); }
float Event::elapsed_ms_since(const Event&) const { return 0; }

#endif

}  // namespace crfseg::cuda
