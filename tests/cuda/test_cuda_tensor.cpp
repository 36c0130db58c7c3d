// CUDA storage, transfers and the fill kernel. Every case here needs a CUDA
// device: without one, doctest reports them as skipped (not passed).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <memory>
#include <thread>

#include "tests/support/helpers.h"
#include "tensor/cuda_deferred.h"
#include "tensor/cuda_memory.h"

#ifdef CRFSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#endif

using namespace crfseg;
using namespace crfseg::test;

static const bool kNoDevice = cuda::device_count() == 0;

TEST_CASE("cuda: round trip cpu -> cuda -> cpu preserves values" * doctest::skip(kNoDevice)) {
  const Tensor a = random_tensor({37, 5}, 1);
  const Tensor d = ops::to_device(a, Device::cuda(0));
  CHECK(d.device() == Device::cuda(0));
  CHECK(ops::to_device(d, Device::cpu()).to_vector<float>() == a.to_vector<float>());
}

TEST_CASE("cuda: fill kernel for every dtype, including sizes past one grid" * doctest::skip(kNoDevice)) {
  for (DType dtype : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8}) {
    const Tensor t = full({3, 1000003}, 7, {dtype, Device::cuda(0)});
    const std::vector<double> v = values(ops::to_device(t, Device::cpu()));
    CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == 7; }));
  }
}

TEST_CASE("cuda: a bad device index throws DeviceError" * doctest::skip(kNoDevice)) {
  check_throws_with<DeviceError>([] { zeros({4}, {DType::f32, Device::cuda(99)}); }, "expected a CUDA device index");
}

TEST_CASE("cuda: without a device, allocation fails cleanly" * doctest::skip(!kNoDevice)) {
  check_throws_with<DeviceError>([] { zeros({4}, {DType::f32, Device::cuda(0)}); }, "cuda");
}

TEST_CASE("cuda: which compute capabilities a gpu_arch list runs on") {
  // Plain entries: their SASS and, through their PTX, any later capability.
  CHECK(cuda::arch_list_runs_on("80", 8, 0));
  CHECK(cuda::arch_list_runs_on("80", 8, 6));
  CHECK(cuda::arch_list_runs_on("80", 9, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("80", 7, 5));
  CHECK_FALSE(cuda::arch_list_runs_on("86", 8, 0));
  // "a" entries: their own capability alone.
  CHECK(cuda::arch_list_runs_on("90a", 9, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("90a", 8, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("90a", 10, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("90a", 12, 0));
  // Lists, spaces, and entries that name nothing.
  CHECK(cuda::arch_list_runs_on("80,90a", 8, 0));
  CHECK(cuda::arch_list_runs_on("80,90a", 9, 0));
  CHECK(cuda::arch_list_runs_on("90a, 100", 10, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("", 9, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("a,sm80,,", 9, 0));
  CHECK_FALSE(cuda::arch_list_runs_on("99999999999999", 9, 0));  // names nothing (and does not overflow)
#ifdef CRFSEG_CUDA_ARCHS
  MESSAGE("this build's gpu_arch: " CRFSEG_CUDA_ARCHS);
#endif
}

TEST_CASE("cuda: describe_device names the GPU and its capability, and that this build runs on it" *
          doctest::skip(kNoDevice)) {
  const std::string line = cuda::describe_device(0);
  MESSAGE(line);
  CHECK(line.find("compute capability") != std::string::npos);
  CHECK(line.find("does not run") == std::string::npos);  // the tests are running on it
  check_throws_with<DeviceError>([] { cuda::describe_device(cuda::device_count()); }, "expected a CUDA device index");
}

TEST_CASE("cuda: describe_device without a device throws DeviceError" * doctest::skip(!kNoDevice)) {
  check_throws_with<DeviceError>([] { cuda::describe_device(0); }, "cuda");
  if (cuda::is_compiled()) CHECK(!cuda::built_archs().empty());
}

TEST_CASE("cuda: matmul precision names parse, bad ones are refused, and a build without CUDA keeps fp32") {
  CHECK(cuda::parse_matmul_precision("bf16") == cuda::MatmulPrecision::bf16);
  CHECK(std::string(cuda::matmul_precision_name(cuda::MatmulPrecision::tf32)) == "tf32");
  check_throws_with<ValueError>([] { cuda::parse_matmul_precision("fp16"); }, "expected fp32, tf32 or bf16, got 'fp16'");
  CHECK(cuda::matmul_precision() == cuda::MatmulPrecision::fp32);
  if (!cuda::is_compiled()) {
    check_throws_with<DeviceError>([] { cuda::set_matmul_precision(cuda::MatmulPrecision::bf16); }, "built without CUDA");
  }
}

TEST_CASE("cuda: record_stream keeps a block from reuse until the other stream's work is done" *
          doctest::skip(kNoDevice)) {
  const Device gpu = Device::cuda(0);
  cuda::empty_cache(0);  // no other free block of that size to be handed out instead
  const cuda::Stream side(0);
  const Tensor busy = random_tensor({2048, 2048}, 1).to(gpu);
  void* first = nullptr;
  {
    const Tensor a = empty({3 << 20}, {DType::f32, gpu});  // 12 MiB, its own segment, on the current stream
    first = a.raw_data();
    a.record_stream(side.handle());
    const cuda::StreamGuard on_side(side);
    Tensor y = busy;
    for (int k = 0; k < 20; ++k) y = ops::matmul(y, busy);  // ~340 GFLOP queued on `side`
  }  // a freed while `side` has not reached this point
  const Tensor b = empty({3 << 20}, {DType::f32, gpu});
  CHECK(b.raw_data() != first);
  side.synchronize();
  const Tensor c = empty({3 << 20}, {DType::f32, gpu});
  CHECK(c.raw_data() == first);  // reused once the side stream's work was done
  // CPU tensors: nothing to record.
  empty({4}).record_stream(side.handle());
}

#ifdef CRFSEG_WITH_CUDA
namespace {

// A gate on a stream: work queued there after it waits until the gate is
// opened (by open(), the destructor, or `limit` passing, so that a wait
// that should not happen fails its checks instead of hanging the suite).
// A host function that spins (cudaLaunchHostFunc): it holds the stream
// without any kernel, so nothing here depends on how long a kernel takes.
class StreamGate {
 public:
  StreamGate(cuda::StreamHandle stream, std::chrono::milliseconds limit) : state_(std::make_shared<State>()) {
    state_->until = std::chrono::steady_clock::now() + limit;
    auto* held = new std::shared_ptr<State>(state_);  // the callback's reference, released by it
    const cudaError_t e = cudaLaunchHostFunc(stream, &StreamGate::wait, held);
    if (e != cudaSuccess) delete held;
    REQUIRE(e == cudaSuccess);
  }
  ~StreamGate() { open(); }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  void open() { state_->open = true; }

 private:
  struct State {
    std::atomic<bool> open{false};
    std::chrono::steady_clock::time_point until;
  };
  static void CUDART_CB wait(void* p) {
    auto* held = static_cast<std::shared_ptr<State>*>(p);
    while (!(*held)->open.load() && std::chrono::steady_clock::now() < (*held)->until) std::this_thread::yield();
    delete held;
  }
  std::shared_ptr<State> state_;
};

}  // namespace
#endif

TEST_CASE("cuda: upload_ahead copies without waiting for the queued work") {
  // Off CUDA it is to_device: the CPU tensor itself, and the same errors.
  const Tensor host = random_tensor({33, 7}, 2);
  CHECK(ops::upload_ahead(host, Device::cpu()).raw_data() == host.raw_data());
  check_throws_with<ValueError>([] { ops::upload_ahead(Tensor(), Device::cpu()); }, "upload_ahead");
  if (kNoDevice) {
    MESSAGE("no CUDA device: the device half of this case is skipped");
    return;
  }
#ifdef CRFSEG_WITH_CUDA
  using namespace std::chrono_literals;
  const Device gpu = Device::cuda(0);
  (void)ops::upload_ahead(host, gpu);  // the upload stream's creation out of the way
  const cuda::StreamHandle current = cuda::current_stream(0);
  cuda::Event queued(0, false);
  {
    // The control: to_device waits for the work queued before it (here a
    // gate that opens itself after two seconds), and the check tells.
    const StreamGate gate(current, 2s);
    queued.record(current);
    (void)ops::to_device(host, gpu);
    CHECK(queued.query());
  }
  {
    StreamGate gate(current, 10s);
    queued.record(current);
    int seen = 0;
    const Tensor d = ops::upload_ahead(host, gpu, [&](const Tensor& t) {
      ++seen;
      CHECK(t.device() == gpu);
    });
    CHECK_FALSE(queued.query());  // back with the gate still shut
    gate.open();
    CHECK(seen == 1);
    CHECK(d.device() == gpu);
    CHECK(d.shape() == host.shape());
    CHECK(ops::to_device(d, Device::cpu()).to_vector<float>() == host.to_vector<float>());
  }
#endif
}

TEST_CASE("cuda: an uploaded block is not reused before the current stream has read it" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  // Six uploads, each read by a copy queued behind a shut gate and dropped
  // before that copy runs: without record_stream each next upload (the same
  // size, from the same pool) would take the last one's block and overwrite
  // it, and every copy would see the last values. The reads are plain
  // copies, not kernels: under CRFSEG_CUDA_SYNC=1 a kernel's launch check
  // would wait out the gate and order everything. With the cache off a
  // free synchronises the device, which orders everything too.
  const char* cache = std::getenv("CRFSEG_CUDA_CACHE");
  if (cache != nullptr && std::string(cache) == "0") {
    MESSAGE("CRFSEG_CUDA_CACHE=0: blocks are not reused, nothing to check");
    return;
  }
  using namespace std::chrono_literals;
  const Device gpu = Device::cuda(0);
  const int64_t n = int64_t{1} << 20;
  std::vector<Tensor> read;
  for (int k = 0; k < 6; ++k) read.push_back(empty({n}, {DType::f32, gpu}));
  {
    const StreamGate gate(cuda::current_stream(0), 10s);
    for (int k = 0; k < 6; ++k) {
      const Tensor d = ops::upload_ahead(full({n}, k), gpu);
      cuda::copy_device_to_device(read[static_cast<size_t>(k)].raw_data(), d.raw_data(),
                                  static_cast<size_t>(n) * sizeof(float), 0);
    }
  }
  for (int k = 0; k < 6; ++k) {
    const std::vector<float> v = read[static_cast<size_t>(k)].to(Device::cpu()).to_vector<float>();
    CHECK(std::all_of(v.begin(), v.end(), [&](float x) { return x == static_cast<float>(k); }));
  }
#endif
}

TEST_CASE("cuda: ops with device-side input checks queue them and return without waiting" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  // Cross-entropy (forward and backward), one_hot and a running confusion
  // count are queued behind a shut gate: each returns with the gate still
  // shut, and their checks are read once the host reads the device.
  // Under CRFSEG_CUDA_SYNC=1 every launch waits (and each check is read at
  // its op), and with CRFSEG_CUDA_CACHE=0 every free does: there the ops
  // run without the gate and only their values and errors are checked.
  const char* sync = std::getenv("CRFSEG_CUDA_SYNC");
  const char* cache = std::getenv("CRFSEG_CUDA_CACHE");
  const bool each_launch_waits = sync != nullptr && std::string(sync) == "1";
  const bool gated = !each_launch_waits && !(cache != nullptr && std::string(cache) == "0");
  using namespace std::chrono_literals;
  const Device gpu = Device::cuda(0);
  const Tensor logits_h = random_tensor({2, 4, 3, 5}, 11), target_h = from_vector<int64_t>(
      {0, 1, 2, 3, -100, 1, 0, 3, 2, 2, 1, 0, 3, 3, 1, 0, 0, 2, 1, 3, -100, 2, 1, 0, 3, 2, 1, 1, 0, 2}, {2, 3, 5});
  const Tensor logits = logits_h.to(gpu), target = target_h.to(gpu);
  const ops::CrossEntropyForward want = ops::cross_entropy(logits_h, target_h, Tensor(), -100);
  const Tensor want_dx = ops::cross_entropy_backward(ones({}), want, target_h, Tensor(), -100);
  (void)ops::cross_entropy(logits, target, Tensor(), -100).loss.item();  // pinned slots, caches: out of the way
  const Tensor grad_one = ones({}, {DType::f32, gpu});
  const cuda::StreamHandle current = cuda::current_stream(0);
  cuda::Event queued(0, false);
  ops::CrossEntropyForward got;
  Tensor dx, hot, counts;
  auto queue_ops = [&] {
    got = ops::cross_entropy(logits, target, Tensor(), -100);
    dx = ops::cross_entropy_backward(grad_one, got, target, Tensor(), -100);
    hot = ops::one_hot(target, 4, DType::f32, -100);
    counts = ops::confusion_counts(ops::argmax(logits, 1), target, 4, -100);
    counts = ops::confusion_counts(ops::argmax(logits, 1), target, 4, -100, counts);
  };
  if (gated) {
    StreamGate gate(current, 10s);
    queued.record(current);
    queue_ops();
    CHECK_FALSE(queued.query());  // back with the gate still shut
    CHECK(cuda::deferred_checks_pending() == 4);  // cross_entropy, one_hot, two counts
    gate.open();
  } else {
    MESSAGE("CRFSEG_CUDA_SYNC=1 or CRFSEG_CUDA_CACHE=0: the host waits anyway; values and errors only");
    queue_ops();
  }
  CHECK(got.loss.item() == doctest::Approx(want.loss.item()).epsilon(1e-6));
  CHECK(cuda::deferred_checks_pending() == 0);  // read by that item()
  CHECK(max_abs_difference(dx.to(Device::cpu()), want_dx) < 1e-6);
  CHECK(hot.to(Device::cpu()).to_vector<float>() == ops::one_hot(target_h, 4, DType::f32, -100).to_vector<float>());
  std::vector<int64_t> twice = ops::confusion_counts(ops::argmax(logits_h, 1), target_h, 4, -100).to_vector<int64_t>();
  for (int64_t& v : twice) v *= 2;
  CHECK(counts.to(Device::cpu()).to_vector<int64_t>() == twice);
  // A failed check is raised by the next read of anything on the device
  // (here an unrelated tensor's), once; cuda::synchronize reads them too.
  const Tensor bad = from_vector<int64_t>({0, 9}, {2}).to(gpu);
  try {
    const Tensor zero_rows = ops::one_hot(bad, 4, DType::f32, -100);
    check_throws_with<ValueError>([&] { (void)full({2}, 1.0, {DType::f32, gpu}).to(Device::cpu()); },
                                  "one_hot: target 9 at flat index 1 is outside [0, 4)");
    CHECK(zero_rows.to(Device::cpu()).to_vector<float>() ==
          std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0});  // [2, 4]: the bad target's row is zeros
  } catch (const ValueError& e) {  // CRFSEG_CUDA_SYNC=1: at the op
    CHECK(each_launch_waits);
    CHECK(std::string(e.what()).find("target 9 at flat index 1") != std::string::npos);
  }
  CHECK(cuda::deferred_checks_pending() == 0);
  (void)full({2}, 1.0, {DType::f32, gpu}).to(Device::cpu());  // raised once: no throw now
  if (!each_launch_waits) {
    (void)ops::cross_entropy(logits, target, Tensor(), -100);  // passes its check
    (void)ops::one_hot(bad, 4, DType::f32, -100);
    CHECK(cuda::deferred_checks_pending() >= 1);  // (a passed one may already be dropped)
    CHECK_THROWS_AS(cuda::synchronize(0), ValueError);
    CHECK(cuda::deferred_checks_pending() == 0);
    // A bad target's loss is NaN, its backward's values too (weights read
    // only for targets inside [0, C)); the error is raised by the read.
    const Tensor weights = ones({4}, {DType::f32, gpu});
    const Tensor bad_targets = from_vector<int64_t>({0, 1, 7, 2, -100, 3}, {1, 6}).to(gpu);
    const Tensor x = random_tensor({1, 4, 6}, 12).to(gpu);
    ops::CrossEntropyForward f = ops::cross_entropy(x, bad_targets, weights, -100);
    const Tensor g = ops::cross_entropy_backward(grad_one, f, bad_targets, weights, -100);
    check_throws_with<ValueError>([&] { (void)f.loss.item(); }, "target 7 at flat position 2");
    CHECK(std::isnan(f.loss.item()));
    const std::vector<float> gv = g.to(Device::cpu()).to_vector<float>();  // [1, 4, 6]
    for (int64_t c = 0; c < 4; ++c) {
      CHECK(std::isnan(gv[static_cast<size_t>(c * 6 + 2)]));
      CHECK(gv[static_cast<size_t>(c * 6 + 4)] == 0.0f);  // ignored
    }
  }
#endif
}

TEST_CASE("cuda: the kernels' scratch pool keeps its free memory across synchronisations" *
          doctest::skip(kNoDevice)) {
#ifdef CRFSEG_WITH_CUDA
  // The driver's default pool gives free memory back at every sync unless
  // its release threshold is raised; scratch_malloc raises it on first use.
  void* p = kernels::cuda::scratch_malloc(1 << 20, nullptr, "test scratch");
  REQUIRE(cudaFreeAsync(p, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cudaMemPool_t pool = nullptr;
  REQUIRE(cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess);
  uint64_t keep = 0;
  REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess);
  CHECK(keep == UINT64_MAX);
  uint64_t reserved = 0;
  REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess);
  CHECK(reserved >= (uint64_t{1} << 20));  // still held after the sync
#endif
}
