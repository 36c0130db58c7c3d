// Data parallel across processes, end to end: run under
//   mpirun -np 2 --oversubscribe test_data_parallel      (mpi_test.sh does)
// Each check compares 2 ranks with per-rank batch B against 1 process with
// batch 2B from the same seed; every rank recomputes the single-process
// reference itself, so no weights need to be gathered.
//   1. Library level: a U-Net (no batch norm) trained 4 SGD steps with a
//      sharded DataLoader + GradSync equals the 2B run within float
//      tolerance; both ranks hold bit-identical weights; and, as a control
//      that the check can fail, the same run without gradient averaging
//      differs by far more than the tolerance. With batch norm, the ranks
//      match the 2B run (weights and running statistics) when the BN layers
//      are synchronised (dist::CommunicatorReplicaSync), and do not when
//      each rank normalises over its own batch.
//   2. The crfseg program: `crfseg train` on 2 ranks (--batch 2) against
//      one process (--batch 4, --dist none): two epochs with augmentation
//      and the CRF-RNN layer give the same last.safetensors weights; a run
//      stopped on 1 process and resumed on 2 ranks, and one stopped on 2
//      and resumed on 1, end with those weights too; and with batch norm,
//      2 ranks with --sync-bn match one process too.
//   3. With a CUDA device: 1 and 2 on the GPU (MPI stages the gradients
//      through the host; every rank on local rank mod the GPUs visible, so
//      one GPU serves both ranks), and the program's runs again with
//      --dist nccl when there is a GPU per rank.
//   4. CRFSEG_DP_ONLY=nccl on 1 rank: the NCCL communicator's start-up and
//      all-reduces (see nccl_one_rank).
//   5. CRFSEG_DP_ONLY=abort: rank 1 fails in the middle of a backward pass
//      while rank 0 waits for it in the all-reduce (see abort_mid_backward;
//      tests/distributed/mpi_abort_test.sh checks that the job ends).
// Prints one line per check; exit 0 when all pass, 1 on a failure, 77 (a
// skip for meson) in a build without MPI or when not started by mpirun.
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "datasets/loader.h"
#include "datasets/synthetic.h"
#include "distributed/communicator.h"
#include "distributed/grad_sync.h"
#include "distributed/sync_batchnorm.h"
#include "layers/norm.h"
#include "layers/optim/sgd.h"
#include "models/segmenter.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"
#include "tools/crfseg/commands.h"

using namespace crfseg;
namespace fs = std::filesystem;

namespace {

int failures = 0, checks = 0;
dist::Communicator* world = nullptr;

// Prints on rank 0 only (each rank checks the same thing).
void report(bool ok, const std::string& what) {
  ++checks;
  if (!ok) ++failures;
  if (world->rank() == 0 || !ok) {
    std::printf("[rank %d] %s: %s\n", world->rank(), ok ? "PASS" : "FAIL", what.c_str());
    std::fflush(stdout);
  }
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// The tolerance: |a - b| <= kAtol + kRtol * |b| for every weight. Float sums
// in another order differ by ~1e-7 relative per step; measured differences
// after these runs are ~1e-7 (see the printed values).
constexpr double kAtol = 1e-5, kRtol = 1e-4;

struct Diff {
  double max_abs = 0;
  bool within = true;
};
Diff diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  Diff d;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = ops::contiguous(a[i].to(Device::cpu())).to_vector<double>();
    const auto y = ops::contiguous(b[i].to(Device::cpu())).to_vector<double>();
    for (size_t j = 0; j < x.size(); ++j) {
      const double e = std::abs(x[j] - y[j]);
      d.max_abs = std::max(d.max_abs, e);
      if (!(e <= kAtol + kRtol * std::abs(y[j]))) d.within = false;
    }
  }
  return d;
}

// --- 1. library level ----------------------------------------------------

// The model's parameters and buffers after `steps` SGD steps.
std::vector<Tensor> train_steps(Device device, int64_t shards, int64_t shard, bool average, int64_t per_rank_batch,
                                int steps, bool batch_norm = false, bool sync_bn = false) {
  Generator gen(11);
  models::Segmenter net({.encoder = "unet", .in_channels = 3, .num_classes = 3, .base_width = 4, .depth = 2,
                         .batch_norm = batch_norm},
                        gen);
  net.to(device);
  std::shared_ptr<dist::CommunicatorReplicaSync> bn_sync;
  if (sync_bn) {
    bn_sync = std::make_shared<dist::CommunicatorReplicaSync>(*world);
    if (nn::set_batch_norm_sync(net, bn_sync) == 0) throw std::runtime_error("the model has no batch norm");
  }
  auto set = std::make_shared<data::SyntheticDataset>(
      data::SyntheticOptions{.size = 40, .height = 16, .width = 16, .num_classes = 3, .seed = 2});
  data::AugmentOptions flips;
  flips.hflip = flips.vflip = flips.rotate90 = true;
  data::DataLoader loader(set, {.batch_size = per_rank_batch * shards, .shuffle = true, .seed = 9, .augment = flips,
                                .num_shards = shards, .shard = shard});
  optim::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  std::unique_ptr<dist::GradSync> sync;
  // Small buckets, so the run has several and starts them during backward.
  if (average) sync = std::make_unique<dist::GradSync>(*world, net.parameters(), dist::GradSyncOptions{.bucket_bytes = 4096});
  loader.start_epoch(0);
  for (int s = 0; s < steps; ++s) {
    auto batch = loader.next();
    const Tensor loss = cross_entropy(net(batch->images.to(device)), batch->masks.to(device));
    opt.zero_grad();
    const double share = static_cast<double>(batch->images.size(0)) / static_cast<double>(batch->global_size);
    if (sync) sync->begin_step(share);
    if (bn_sync) bn_sync->set_loss_weight(share);
    backward(loss);
    if (sync) sync->finish_step();
    opt.step();
  }
  if (sync && world->rank() == 0) {
    std::printf("         %zu buckets, %lld started during backward over %lld steps\n", sync->buckets().size(),
                static_cast<long long>(sync->stats().buckets_started_in_backward),
                static_cast<long long>(sync->stats().steps));
  }
  std::vector<Tensor> state;
  for (const auto& [name, t] : net.state_dict()) state.push_back(t);
  return state;
}

void library_level(Device device) {
  const int P = world->size(), r = world->rank();
  const std::string on = " [" + device.str() + "]";
  const std::vector<Tensor> ref = train_steps(device, 1, 0, false, 2 * 2, 4);  // 1 process, batch 2B = 4
  const std::vector<Tensor> dp = train_steps(device, P, r, true, 2, 4);        // P ranks, batch B = 2 each
  const std::vector<Tensor> alone = train_steps(device, P, r, false, 2, 4);    // P ranks, no averaging
  const Diff d = diff(dp, ref), control = diff(alone, ref);
  report(d.within, "GradSync" + on + ": " + std::to_string(P) + " ranks x batch 2 = 1 process x batch 4 after 4 SGD "
                   "steps (max |diff| " + num(d.max_abs) + ", tolerance " + num(kAtol) + " + " + num(kRtol) + "|w|)");
  report(!control.within && control.max_abs > 100 * std::max(d.max_abs, 1e-9),
         "control" + on + ": without gradient averaging the ranks drift from the reference (max |diff| " +
             num(control.max_abs) + ")");
  // Every rank must hold exactly rank 0's weights.
  double mismatch = 0;
  for (const Tensor& t : dp) {
    Tensor mine = ops::contiguous(t), root = ops::clone(mine);
    dist::broadcast_tensors(*world, {root}, 0);  // a CUDA tensor goes through the host
    mine = mine.to(Device::cpu()), root = root.to(Device::cpu());
    const auto a = mine.to_vector<double>(), b = root.to_vector<double>();
    for (size_t j = 0; j < a.size(); ++j) mismatch = std::max(mismatch, std::abs(a[j] - b[j]));
  }
  std::vector<double> worst = {mismatch};
  dist::allreduce_sum(*world, worst);
  report(worst[0] == 0.0, "the ranks' weights are bit-identical" + on + " (sum of max |diff| to rank 0: " +
                             num(worst[0]) + ")");

  // Batch norm: synchronised, the ranks normalise over the global batch like the reference.
  const std::vector<Tensor> bn_ref = train_steps(device, 1, 0, false, 2 * 2, 4, true);
  const std::vector<Tensor> bn_sync = train_steps(device, P, r, true, 2, 4, true, true);
  const std::vector<Tensor> bn_local = train_steps(device, P, r, true, 2, 4, true, false);
  const Diff ds = diff(bn_sync, bn_ref), dl = diff(bn_local, bn_ref);
  report(ds.within, "synchronised batch norm" + on + ": " + std::to_string(P) + " ranks x batch 2 = 1 process x "
                    "batch 4 after 4 SGD steps, weights and running statistics (max |diff| " + num(ds.max_abs) + ")");
  report(!dl.within && dl.max_abs > 100 * std::max(ds.max_abs, 1e-9),
         "control" + on + ": per-rank batch norm differs from the reference (max |diff| " + num(dl.max_abs) + ")");
}

// --- 2. the crfseg program -------------------------------------------------

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<Tensor> model_tensors(const std::string& path) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : load_safetensors(path).tensors) {
    if (name.rfind("model.", 0) == 0) out.push_back(t);
  }
  return out;
}

// Runs `args` on rank 0 alone (the others wait), or on every rank.
void run(const std::vector<std::string>& args, bool everyone) {
  if (everyone || world->rank() == 0) {
    const int rc = app::run_train(args);
    if (rc != 0) throw std::runtime_error("crfseg train returned " + std::to_string(rc));
  }
  world->barrier();
}

// extra: added to every run (e.g. --device cuda); extra_ranks: to the runs on
// every rank only (e.g. --dist nccl). label: appended to each check's line.
void program_level(const std::vector<std::string>& extra, const std::vector<std::string>& extra_ranks,
                   const std::string& label) {
  // One directory for all ranks (they share this machine's file system).
  char dir[256] = {0};
  if (world->rank() == 0) {
    std::string pattern = (fs::temp_directory_path() / "crfseg_dp_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    std::snprintf(dir, sizeof dir, "%s", pattern.c_str());
  }
  world->broadcast(dir, sizeof dir, 0);
  const fs::path root = dir;
  const std::vector<std::string> common = {
      "--data", "synth:24", "--synth-size", "16", "--size", "16", "--base", "4", "--depth", "2", "--no-batch-norm",
      "--crf", "--epochs", "2", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--schedule", "none",
      "--augment", "flips", "--workers", "1", "--seed", "4", "--quiet"};
  const std::vector<std::string> single = with(with(common, extra), {"--batch", "4", "--dist", "none"});
  const std::vector<std::string> two = with(with(with(common, extra), extra_ranks), {"--batch", "2"});
  const std::string ref_path = (root / "single" / "last.safetensors").string();

  run(with(single, {"--out", (root / "single").string()}), false);
  run(with(two, {"--out", (root / "dp").string()}), true);
  // 24 images / global batch 4 = 6 steps per epoch: stop at step 3, resume with the other P.
  run(with(single, {"--out", (root / "1to2").string(), "--stop-after", "3"}), false);
  run(with(two, {"--out", (root / "1to2").string(), "--resume"}), true);
  run(with(two, {"--out", (root / "2to1").string(), "--stop-after", "3"}), true);
  run(with(single, {"--out", (root / "2to1").string(), "--resume"}), false);
  // With batch norm: the same common options less --no-batch-norm.
  std::vector<std::string> bn = with(common, extra);
  bn.erase(std::find(bn.begin(), bn.end(), "--no-batch-norm"));
  run(with(bn, {"--batch", "4", "--dist", "none", "--out", (root / "bn_single").string()}), false);
  run(with(with(bn, extra_ranks), {"--batch", "2", "--sync-bn", "--out", (root / "bn_sync").string()}), true);

  const std::vector<Tensor> ref = model_tensors(ref_path);
  for (const auto& [name, what] : std::vector<std::pair<std::string, std::string>>{
           {"dp", "crfseg train: 2 ranks x --batch 2 = 1 process x --batch 4 after 2 epochs (12 steps, CRF, flips)"},
           {"1to2", "crfseg train: stopped on 1 process at step 3, resumed on 2 ranks"},
           {"2to1", "crfseg train: stopped on 2 ranks at step 3, resumed on 1 process"}}) {
    const std::vector<Tensor> got = model_tensors((root / name / "last.safetensors").string());
    const Diff d = got.size() == ref.size() ? diff(got, ref) : Diff{INFINITY, false};
    report(d.within, what + label + " (max |diff| " + num(d.max_abs) + ")");
  }
  {
    const std::vector<Tensor> want = model_tensors((root / "bn_single" / "last.safetensors").string());
    const std::vector<Tensor> got = model_tensors((root / "bn_sync" / "last.safetensors").string());
    const Diff d = got.size() == want.size() ? diff(got, want) : Diff{INFINITY, false};
    report(d.within, "crfseg train --sync-bn: 2 ranks x --batch 2 = 1 process x --batch 4 with batch norm, weights "
                     "and running statistics" + label + " (max |diff| " + num(d.max_abs) + ")");
  }
  world->barrier();
  if (world->rank() == 0) fs::remove_all(root);
}

}  // namespace

// --- 4. NCCL on one rank -----------------------------------------------------

// The NCCL communicator's plumbing on one rank (a GPU machine with one GPU
// cannot run two NCCL ranks): start-up over MPI, an all-reduce of a device
// buffer filled on a non-blocking stream (through GradSync, weight 0.5, so
// the gradients must come back halved) and of a host buffer (staged). With
// one rank an all-reduce is the identity, so this cannot show that the
// reduction waits for the stream that filled the buffer: that needs a GPU
// per rank (the [cuda, nccl] program checks).
void nccl_one_rank() {
  if (!dist::built_with_nccl()) {
    std::printf("SKIP (not counted as passed): the NCCL checks; this build has no NCCL\n");
    return;
  }
  if (cuda::device_count() == 0) {
    std::printf("SKIP (not counted as passed): the NCCL checks; no CUDA device visible\n");
    return;
  }
  std::unique_ptr<dist::Communicator> nccl = dist::make_communicator(dist::Backend::nccl);
  const Device gpu = Device::cuda(nccl->cuda_device());
  cuda::Stream stream(gpu.index);
  cuda::StreamGuard on_stream(stream);
  Generator gen(5);
  Tensor w = ops::to_device(rand({int64_t{1} << 22}, {}, gen), gpu);  // 16 MB: a fill that takes a while
  set_requires_grad(w);
  dist::GradSync sync(*nccl, {w}, {.bucket_bytes = int64_t{1} << 30});
  bool ok = true;
  for (int step = 0; step < 3; ++step) {
    reset_grad(w);
    sync.begin_step(0.5);
    backward(sum(w * 3.0));
    sync.finish_step();
    const Tensor g = grad(w).to(Device::cpu());
    for (float v : g.to_vector<float>()) ok = ok && v == 1.5f;
  }
  report(ok, "NCCL, 1 rank on " + gpu.str() + ": GradSync over a device bucket filled on a non-blocking stream");
  std::vector<double> host = {1.0, 2.0, 3.0};
  nccl->allreduce_sum(host.data(), 3);  // staged through the device
  report(host == std::vector<double>{1.0, 2.0, 3.0}, "NCCL, 1 rank: an all-reduce of a host buffer");
  // Request::test() on an all-reduce still queued behind slow work says
  // "not yet"; the runtime's not-ready status must not be left behind as
  // the last error for the next launch's check to throw.
  bool clean = true, early = false;
  try {
    const Tensor a = ops::to_device(rand({2048, 2048}, {}, gen), gpu);
    Tensor y = a;
    for (int k = 0; k < 10; ++k) y = ops::matmul(y, a);  // ~170 GFLOP on `stream` first
    const Tensor buf = ops::to_device(ones({1024}), gpu), other = ops::to_device(ones({1024}), gpu);
    const std::unique_ptr<dist::Request> req = nccl->iallreduce_sum(buf.data<float>(), buf.numel());
    early = req->test();
    const Tensor z = ops::add(other, other);  // a launch, checked (not on buf, which NCCL writes)
    req->wait();
    clean = z.to(Device::cpu()).to_vector<float>() == std::vector<float>(1024, 2.0f);
  } catch (const std::exception& e) {
    std::printf("  threw: %s\n", e.what());
    clean = false;
  }
  if (early && clean) {
    std::printf("SKIP (not counted as passed): the all-reduce was done at the first test(), so the not-ready "
                "path did not run\n");
    return;
  }
  report(clean, "NCCL, 1 rank: test() on an all-reduce in flight, then a launch, leaves no error behind");
}

// Rank 1 throws from a gradient hook halfway through a backward pass (one
// bucket per parameter, so one all-reduce may have started); rank 0
// finishes its step and waits in the all-reduces rank 1 never joins. The
// exception leaves rank 1's GradSync (which drains only what it started)
// and reaches main's catch, whose abort_world must end rank 0 too: a hang
// here is a hang of every training job whose rank fails.
void abort_mid_backward() {
  const Tensor a = ones({1000}), b = ones({1000});
  set_requires_grad(a);
  set_requires_grad(b);
  // Registered before GradSync's own hooks, so it runs first: rank 1 never
  // starts b's all-reduce, whichever gradient arrives first.
  if (world->rank() == 1) {
    add_grad_accumulated_hook(b, [](const Tensor&) { throw std::runtime_error("rank 1 fails on purpose"); });
  }
  dist::GradSync sync(*world, {a, b}, {.bucket_bytes = 4000});
  sync.begin_step(0.5);
  backward(sum(a * 2.0) + sum(b * 3.0));
  sync.finish_step();  // rank 0 waits here for rank 1
  std::printf("FAIL: rank %d finished a step that rank 1 abandoned\n", world->rank());
}

int main() {
  if (!dist::built_with_mpi()) {
    std::printf("SKIP: this build has no MPI (install libopenmpi-dev and reconfigure)\n");
    return 77;
  }
  if (!dist::launched_by_mpi()) {
    std::printf("SKIP: not started by an MPI launcher; run: mpirun -np 2 --oversubscribe %s\n", "test_data_parallel");
    return 77;
  }
  try {
    std::unique_ptr<dist::Communicator> comm = dist::make_communicator(dist::Backend::mpi);
    world = comm.get();
    // CRFSEG_DP_ONLY: cpu or cuda runs those checks alone (meson runs the CPU
    // ones, scripts/gpu-check.sh the CUDA ones on its short device lease);
    // nccl, on one rank, the NCCL communicator's plumbing.
    const char* only_env = std::getenv("CRFSEG_DP_ONLY");
    const std::string only = only_env ? only_env : "";
    if (only == "abort") {
      if (world->size() < 2) {
        std::printf("SKIP: the abort check needs 2 ranks, got %d\n", world->size());
        return 77;
      }
      abort_mid_backward();
      return 1;  // not reached while abort_world works
    }
    if (only == "nccl") {
      nccl_one_rank();
    } else if (world->size() < 2) {
      std::printf("SKIP: needs at least 2 ranks, got %d\n", world->size());
      return 77;
    }
    if (only.empty() || only == "cpu") {
      library_level(Device::cpu());
      program_level({}, {}, "");
    } else if (world->rank() == 0) {
      std::printf("SKIP (not counted as passed): the CPU checks (CRFSEG_DP_ONLY=%s)\n", only.c_str());
    }
    // On a GPU: every rank on its GPU (local rank mod the GPUs visible; with
    // one GPU all ranks share it), gradients staged through the host for MPI,
    // and reduced on the device by NCCL when there is a GPU per rank. The
    // ranks agree on the fewest GPUs any of them sees, so they take the same
    // branches (and make the same collectives).
    std::vector<double> seen(static_cast<size_t>(world->size()), 0.0);
    seen[static_cast<size_t>(world->rank())] = cuda::device_count();
    dist::allreduce_sum(*world, seen);
    const int gpus = static_cast<int>(*std::min_element(seen.begin(), seen.end()));
    if (!(only.empty() || only == "cuda")) {
      if (world->rank() == 0) std::printf("SKIP (not counted as passed): the CUDA checks (CRFSEG_DP_ONLY=%s)\n", only.c_str());
    } else if (gpus == 0) {
      if (world->rank() == 0) std::printf("SKIP (not counted as passed): the CUDA checks; no CUDA device visible\n");
    } else {
      library_level(Device::cuda(dist::gpu_for_rank(*world, gpus)));
      program_level({"--device", "cuda"}, {}, " [cuda, mpi]");
      if (!dist::built_with_nccl()) {
        if (world->rank() == 0) std::printf("SKIP (not counted as passed): the NCCL run; this build has no NCCL\n");
      } else if (gpus < world->size()) {
        if (world->rank() == 0) {
          std::printf("SKIP (not counted as passed): the NCCL run needs a GPU per rank (%d ranks, %d GPU(s))\n",
                      world->size(), gpus);
        }
      } else {
        program_level({"--device", "cuda"}, {"--dist", "nccl"}, " [cuda, nccl]");
      }
    }
    std::vector<double> total = {static_cast<double>(failures)};
    dist::allreduce_sum(*world, total);
    world = nullptr;
    if (checks == 0) {
      std::printf("SKIP: no check ran\n");  // everything skipped is not a pass
      return 77;
    }
    if (comm->rank() == 0) std::printf("%s: %g failed checks over %d ranks\n", total[0] ? "FAILED" : "OK", total[0], comm->size());
    return total[0] == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_data_parallel: error: %s\n", e.what());
    dist::abort_world(1);
    return 1;
  }
}
