// bench_distributed: data-parallel training throughput and the cost of the
// gradient all-reduce, at 1 rank (plain) or P ranks (under mpirun).
//
//   OMP_NUM_THREADS=1 build/bench/bench_distributed [options]                       # 1 process
//   OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core build/bench/bench_distributed [options]  # 2 ranks
//   options: [--quick] [--steps N] [--base W] [--depth D] [--size S] [--batch B] [--bucket-mb X] [--no-overlap]
//            [--batch-norm | --sync-bn] [--device cuda] [--dist mpi|nccl]
//
// --device cuda: each rank on its GPU (NCCL's, else local rank mod the GPUs
// visible; ranks may share one with MPI, whose buckets go through the host);
// every timed step ends after the device has finished it.
//
// Each rank trains a U-Net Segmenter (no batch norm; with --batch-norm, BN
// per rank; with --sync-bn, BN synchronised over the ranks) on its own fixed random
// batch of B images (data loading is not timed): forward, cross-entropy,
// backward with GradSync's bucketed all-reduce, SGD step. Reported on rank 0:
//   - images/s over all ranks (P * B * steps / wall time; medians of the
//     per-step times, each step ends when the slowest rank ends it);
//   - exposed all-reduce ms/step: time in GradSync::finish_step(), the
//     communication the backward did not hide;
//   - hook ms/step: copies into buckets and starting/polling collectives
//     inside the backward;
//   - the standalone all-reduce of the whole gradient (one blocking
//     MPI_Allreduce of all parameters), median of 20.
// Before printing it checks that every rank ends with bit-identical weights
// (a broken all-reduce prints no numbers and exits 1).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "bench/support/timer.h"
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

using namespace crfseg;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t steps = 20, base = 32, depth = 4, size = 64, batch = 4;
  double bucket_mb = 25;
  bool overlap = true, batch_norm = false, sync_bn = false;
  bool cuda = false;
  std::string dist = "auto";
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](auto& out) {
      if (i + 1 >= argc) return false;
      out = static_cast<std::remove_reference_t<decltype(out)>>(std::strtod(argv[++i], nullptr));
      return out > 0;
    };
    bool ok = true;
    if (a == "--quick") o.steps = 3, o.base = 8, o.depth = 2, o.size = 32, o.batch = 2;
    else if (a == "--no-overlap") o.overlap = false;
    else if (a == "--batch-norm") o.batch_norm = true;
    else if (a == "--sync-bn") o.batch_norm = o.sync_bn = true;
    else if (a == "--steps") ok = value(o.steps);
    else if (a == "--base") ok = value(o.base);
    else if (a == "--depth") ok = value(o.depth);
    else if (a == "--size") ok = value(o.size);
    else if (a == "--batch") ok = value(o.batch);
    else if (a == "--bucket-mb") ok = value(o.bucket_mb);
    else if (a == "--device" && i + 1 < argc && std::string(argv[i + 1]) == "cuda") o.cuda = true, ++i;
    else if (a == "--device" && i + 1 < argc && std::string(argv[i + 1]) == "cpu") o.cuda = false, ++i;
    else if (a == "--dist" && i + 1 < argc) o.dist = argv[++i];
    else ok = false;
    if (!ok) return false;
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: bench_distributed [--quick] [--steps N] [--base W] [--depth D] [--size S] "
                         "[--batch B] [--bucket-mb X] [--no-overlap] [--batch-norm | --sync-bn] [--device cpu|cuda] "
                         "[--dist auto|mpi|nccl]\n");
    return 2;
  }
  try {
    auto comm = dist::make_communicator(dist::parse_backend(o.dist));
    const int P = comm->size(), rank = comm->rank();
    Device device = Device::cpu();
    if (o.cuda) {
      const int gpus = cuda::device_count();
      if (gpus == 0) throw DeviceError("bench_distributed --device cuda: no CUDA device visible");
      device = Device::cuda(dist::gpu_for_rank(*comm, gpus));
    }
    // The step ends when the device has run it (a no-op on the CPU).
    auto finish_device = [&] {
      if (device.is_cuda()) cuda::synchronize(device.index);
    };
    Generator gen(1);
    models::Segmenter net({.encoder = "unet", .in_channels = 3, .num_classes = 3, .base_width = o.base,
                           .depth = o.depth, .batch_norm = o.batch_norm},
                          gen);
    net.to(device);
    std::shared_ptr<dist::CommunicatorReplicaSync> bn_sync;
    int64_t synced_layers = 0;
    if (o.sync_bn && P > 1) {
      bn_sync = std::make_shared<dist::CommunicatorReplicaSync>(*comm);
      synced_layers = nn::set_batch_norm_sync(net, bn_sync);
    }
    Generator data_gen(100 + static_cast<uint64_t>(rank));  // each rank its own batch
    const Tensor images = rand({o.batch, 3, o.size, o.size}, {}, data_gen).to(device);
    const Tensor masks = ops::argmax(rand({o.batch, 3, o.size, o.size}, {}, data_gen), 1).to(device);  // classes 0..2
    optim::SGD opt(net.parameters(), {.lr = 0.01, .momentum = 0.9});
    std::unique_ptr<dist::GradSync> sync;
    if (P > 1) {
      sync = std::make_unique<dist::GradSync>(
          *comm, net.parameters(),
          dist::GradSyncOptions{.bucket_bytes = static_cast<int64_t>(o.bucket_mb * (1 << 20)), .overlap = o.overlap});
    }
    std::vector<double> step_ms, finish_ms, hook_ms;
    for (int64_t s = -2; s < o.steps; ++s) {  // 2 warm-up steps
      comm->barrier();
      const auto t0 = Clock::now();
      const dist::GradSyncStats before = sync ? sync->stats() : dist::GradSyncStats{};
      const Tensor loss = cross_entropy(net(images), masks);
      opt.zero_grad();
      if (sync) sync->begin_step(1.0 / P);
      if (bn_sync) bn_sync->set_loss_weight(1.0 / P);
      backward(loss);
      if (sync) sync->finish_step();
      opt.step();
      finish_device();
      comm->barrier();  // the step ends when the slowest rank ends it
      if (s < 0) continue;
      step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (sync) {
        finish_ms.push_back(1e3 * (sync->stats().finish_seconds - before.finish_seconds));
        hook_ms.push_back(1e3 * (sync->stats().hook_seconds - before.hook_seconds));
      }
    }
    // Correctness: every rank holds rank 0's weights exactly.
    double worst = 0;
    for (const Tensor& t : net.parameters()) {
      const Tensor mine = ops::contiguous(t), root = ops::clone(mine);
      dist::broadcast_tensors(*comm, {root}, 0);
      const auto a = mine.to(Device::cpu()).to_vector<float>(), b = root.to(Device::cpu()).to_vector<float>();
      for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, static_cast<double>(std::abs(a[j] - b[j])));
    }
    comm->allreduce_sum(&worst, 1);
    if (worst != 0) {
      if (rank == 0) std::fprintf(stderr, "bench_distributed: ranks disagree on the weights (%g); no numbers\n", worst);
      return 1;
    }
    // The whole gradient in one blocking all-reduce, from where the
    // communicator reduces it (device memory for NCCL with --device cuda).
    const Device flat_device = device.is_cuda() && comm->reduces_device_buffers() ? device : Device::cpu();
    const Tensor flat = ones({net.num_parameters()}, {DType::f32, flat_device});
    std::vector<double> allreduce_ms;
    for (int r = 0; r < 22; ++r) {
      comm->barrier();
      const auto t0 = Clock::now();
      comm->allreduce_sum(flat.data<float>(), flat.numel());
      if (r >= 2) allreduce_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    if (rank == 0) {
      const double ms = median(step_ms);
      std::printf("bench_distributed: %s\n", bench::machine_info().c_str());
      std::printf("  %d rank(s) (%s) on %s, %s threads each; U-Net base %lld depth %lld, %lldx%lld, batch %lld per rank; "
                  "%lld parameters (%.1f MB of f32 gradient), %zu bucket(s) of <= %.0f MiB, overlap %s\n",
                  P, comm->backend().c_str(), device.is_cuda() ? "cuda" : "cpu", std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "default",
                  static_cast<long long>(o.base), static_cast<long long>(o.depth), static_cast<long long>(o.size),
                  static_cast<long long>(o.size), static_cast<long long>(o.batch),
                  static_cast<long long>(net.num_parameters()), 4e-6 * static_cast<double>(net.num_parameters()),
                  sync ? sync->buckets().size() : size_t{0}, o.bucket_mb, o.overlap ? "on" : "off");
      std::printf("  batch norm: %s\n", !o.batch_norm ? "none"
                                         : bn_sync ? ("synchronised over the ranks (" + std::to_string(synced_layers) +
                                                      " layers)").c_str()
                                                   : "per rank");
      std::printf("| ranks | step ms (median) | step ms (min) | images/s | exposed all-reduce ms/step | hook ms/step | "
                  "whole-gradient all-reduce ms |\n|---|---|---|---|---|---|---|\n");
      std::printf("| %d | %.1f | %.1f | %.2f | %s | %s | %.2f |\n", P, ms, *std::min_element(step_ms.begin(), step_ms.end()),
                  1e3 * static_cast<double>(P * o.batch) / ms,
                  sync ? std::to_string(median(finish_ms)).substr(0, 6).c_str() : "-",
                  sync ? std::to_string(median(hook_ms)).substr(0, 6).c_str() : "-", median(allreduce_ms));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distributed: error: %s\n", e.what());
    dist::abort_world(1);
    return 1;
  }
}
