// Data parallel on CUDA tensors, in one process: synchronised batch norm
// over replicas on threads (tests/support/thread_replicas.h), each replica's
// tensors on cuda:0, against the same replicas on the CPU; and GradSync with
// CUDA parameters through fake two-rank communicators, one that reduces
// host memory only (so GradSync stages its buckets through the host, as with
// MPI) and one that takes device buffers (as NCCL). The multi-process check
// is tests/distributed/test_data_parallel.cpp under mpirun, which also runs
// on a GPU when one is present. Each case needs a CUDA device: without one
// doctest reports it as skipped, not passed.
#include <algorithm>
#include <utility>

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "distributed/communicator.h"
#include "distributed/grad_sync.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tests/support/fake_communicator.h"
#include "tests/support/helpers.h"
#include "tests/support/thread_replicas.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

const bool kNoDevice = cuda::device_count() == 0;

struct Replica {
  Tensor y, mean, invstd, running_mean, running_var, dx, dweight, dbias;
};

// Batch norm over replicas of rows[r] samples of x, synchronised, on `device`;
// replica r's gradient is its rows of g divided by its loss weight w[r]
// (tests/kernels/test_batchnorm.cpp explains the weighting).
std::vector<Replica> synced(const Tensor& x, const Tensor& g, const Tensor& weight, const Tensor& bias,
                            const std::vector<int64_t>& rows, const std::vector<double>& w, bool relu, Device device) {
  const int64_t P = static_cast<int64_t>(rows.size()), C = x.size(1);
  std::vector<Tensor> xs(P), gs(P);
  for (int64_t r = 0, start = 0; r < P; start += rows[r], ++r) {
    xs[r] = ops::contiguous(ops::slice(x, 0, start, start + rows[r])).to(device);
    gs[r] = ops::mul(ops::slice(g, 0, start, start + rows[r]), full({}, 1.0 / w[r], {g.dtype()})).to(device);
  }
  const Tensor wd = weight.defined() ? weight.to(device) : Tensor(), bd = bias.defined() ? bias.to(device) : Tensor();
  std::vector<Replica> out(P);
  test::ThreadReplicas(P, w).run([&](int64_t r, kernels::ReplicaSync& sync) {
    Replica& o = out[r];
    o.running_mean = zeros({C}, {x.dtype(), device});
    o.running_var = ones({C}, {x.dtype(), device});
    const ops::BatchNormForward f =
        ops::batch_norm(xs[r], wd, bd, o.running_mean, o.running_var, true, 0.1, 1e-5, relu, &sync);
    const ops::BatchNormGrads d = ops::batch_norm_backward(gs[r], xs[r], wd, f, true, relu, &sync);
    o.y = f.y, o.mean = f.mean, o.invstd = f.invstd, o.dx = d.dx, o.dweight = d.dweight, o.dbias = d.dbias;
  });
  return out;
}

}  // namespace

TEST_CASE("cuda: synchronised batch norm on replicas equals the CPU's, bitwise the same statistics on each" *
          doctest::skip(kNoDevice)) {
  struct Case {
    Shape shape;
    std::vector<int64_t> rows;
    std::vector<double> w;
    bool affine, relu;
  };
  const std::vector<Case> cases = {
      {{7, 3, 5, 13}, {1, 2, 4}, {1.0, 1.0, 1.0}, true, false},
      {{7, 3, 15}, {1, 2, 4}, {1.0 / 7, 2.0 / 7, 4.0 / 7}, true, true},  // weighted losses, fused ReLU
      {{7, 5}, {4, 3}, {0.5, 0.5}, false, false},
      {{4, 2, 9000}, {3, 1}, {0.75, 0.25}, true, false},  // channels of several chunks (8192 values each)
      {{5, 2, 9}, {0, 5}, {0.0, 1.0}, true, false},       // a replica with no samples
  };
  for (const DType dt : {DType::f32, DType::f64}) {
    for (const Case& k : cases) {
      CAPTURE(shape_str(k.shape));
      CAPTURE(std::string(dtype_name(dt)));
      const int64_t C = k.shape[1];
      const Tensor x = random_tensor(k.shape, 3, dt, -2.0, 3.0), g = random_tensor(k.shape, 4, dt, -1.0, 1.0);
      const Tensor weight = k.affine ? random_tensor({C}, 5, dt, 0.5, 1.5) : Tensor();
      const Tensor bias = k.affine ? random_tensor({C}, 6, dt, -0.5, 0.5) : Tensor();
      const std::vector<Replica> want = synced(x, g, weight, bias, k.rows, k.w, k.relu, Device::cpu());
      const std::vector<Replica> got = synced(x, g, weight, bias, k.rows, k.w, k.relu, Device::cuda(0));
      const double tol = dt == DType::f64 ? 1e-10 : 1e-4;
      for (size_t r = 0; r < got.size(); ++r) {
        CAPTURE(r);
        REQUIRE(got[r].y.device() == Device::cuda(0));
        for (auto [a, b] : {std::pair{got[r].y, want[r].y}, std::pair{got[r].dx, want[r].dx},
                            std::pair{got[r].mean, want[r].mean}, std::pair{got[r].invstd, want[r].invstd},
                            std::pair{got[r].running_mean, want[r].running_mean},
                            std::pair{got[r].running_var, want[r].running_var},
                            std::pair{got[r].dbias, want[r].dbias}}) {
          CHECK_CLOSE(a.to(Device::cpu()), values(b), tol, tol);
        }
        if (k.affine) CHECK_CLOSE(got[r].dweight.to(Device::cpu()), values(want[r].dweight), tol, tol);
        // Every replica normalises with the same bits.
        CHECK(values(got[r].mean.to(Device::cpu())) == values(got[0].mean.to(Device::cpu())));
        CHECK(values(got[r].invstd.to(Device::cpu())) == values(got[0].invstd.to(Device::cpu())));
        CHECK(values(got[r].running_var.to(Device::cpu())) == values(got[0].running_var.to(Device::cpu())));
      }
    }
  }
  // As on the CPU, the count over all replicas decides, and every replica refuses one value per channel.
  test::ThreadReplicas(1).run([&](int64_t, kernels::ReplicaSync& sync) {
    const Tensor one = from_vector<double>({1.0, 4.0}, {1, 2}).to(Device::cuda(0));
    check_throws_with<ValueError>(
        [&] { ops::batch_norm(one, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, false, &sync); },
        "expected more than 1 value per channel over all 1 replicas when training, got 1");
  });
}

namespace {

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype, Device device) {
  Tensor t = random_tensor(shape, seed, dtype).to(device);
  set_requires_grad(t);
  return t;
}

Tensor chain_loss(const Tensor& x, const std::vector<Tensor>& w) {
  return sum(matmul(tanh(matmul(tanh(matmul(x, w[0])), w[1])), w[2]));
}

}  // namespace

TEST_CASE("cuda: GradSync averages CUDA gradients through host-only and device-buffer communicators" *
          doctest::skip(kNoDevice)) {
  for (const bool device_buffers : {false, true}) {
    for (const bool overlap : {true, false}) {
      CAPTURE(device_buffers);
      CAPTURE(overlap);
      const Device gpu = Device::cuda(0);
      const Tensor x = random_tensor({4, 5}, 7).to(gpu);
      const std::vector<Tensor> w = {leaf({5, 6}, 1, DType::f32, gpu), leaf({6, 7}, 2, DType::f32, gpu),
                                     leaf({7, 1}, 3, DType::f32, gpu)};
      backward(chain_loss(x, w));
      std::vector<std::vector<double>> plain;
      for (const Tensor& t : w) plain.push_back(values(grad(t).to(Device::cpu())));
      for (const Tensor& t : w) reset_grad(t);

      FakeTwoRanks comm(device_buffers);
      dist::GradSync sync(comm, w, {.bucket_bytes = 200, .overlap = overlap});
      REQUIRE(sync.buckets() == std::vector<std::vector<size_t>>{{2, 1}, {0}});
      // Square matrices whose products keep the GPU busy for a while before
      // each backward, so the host runs the backward's hooks far ahead of the
      // device: a collective started before its bucket's copy to the host
      // was whole would read stale values (the fake reads its buffer when
      // the collective starts, as MPI may).
      const Tensor busy = random_tensor({2048, 2048}, 9).to(gpu);
      for (int step = 0; step < 2; ++step) {  // the buckets are reused from step to step
        CAPTURE(step);
        const double weight = 0.25 * (step + 1);  // differs per step: stale sums show
        comm.started.clear();
        for (const Tensor& t : w) reset_grad(t);
        sync.begin_step(weight);
        Tensor y = busy;
        for (int k = 0; k < 8; ++k) y = ops::matmul(y, busy);  // 137 GFLOP queued, a few ms (no autograd)
        backward(chain_loss(x, w));
        // Started inside the backward: both buckets in place; staged, bucket
        // 0's all-reduce starts when bucket 1 is sealed and bucket 1's in
        // finish_step (start points fixed by the graph, not by timing).
        CHECK(sync.stats().buckets_started_in_backward == (overlap ? (device_buffers ? 2 : 1) * (step + 1) : 0));
        CHECK(sync.stats().copies_queued_in_backward == (overlap && !device_buffers ? 2 * (step + 1) : 0));
        sync.finish_step();
        CHECK(comm.started == std::vector<int64_t>{6 * 7 + 7, 5 * 6});
        REQUIRE(comm.kinds.size() == 2);
        for (const MemoryKind kind : comm.kinds) {  // staged in page-locked host memory (async copies)
          CHECK(kind == (device_buffers ? MemoryKind::device : MemoryKind::pinned));
        }
        comm.kinds.clear();
        for (size_t i = 0; i < w.size(); ++i) {
          REQUIRE(grad(w[i]).device() == gpu);
          std::vector<double> want = plain[i];
          for (double& v : want) v *= weight * 2;  // summed over two identical ranks
          CHECK(compare(values(grad(w[i]).to(Device::cpu())), want, 1e-6, 1e-6) == "");
        }
      }
    }
  }
}

TEST_CASE("cuda: GradSync's device checks; a parameter without a gradient; broadcast of CUDA tensors" *
          doctest::skip(kNoDevice)) {
  const Device gpu = Device::cuda(0);
  FakeTwoRanks host_only(false), device(true);
  // Parameters on two devices.
  check_throws_with<ValueError>(
      [&] { dist::GradSync(host_only, {leaf({2}, 1, DType::f32, gpu), leaf({2}, 2, DType::f32, Device::cpu())}); },
      "every parameter must be on one device; parameter 0 is on cuda:0, parameter 1 on cpu");
  // f64 parameters, one of which gets a gradient in the first step and none
  // in the second: there it keeps none and contributes zeros (its slot, after
  // w[1]'s in the one bucket, held 0.5 * 2 from the first step), the other
  // is summed.
  const std::vector<Tensor> w = {leaf({3}, 1, DType::f64, gpu), leaf({3}, 2, DType::f64, gpu)};
  for (FakeTwoRanks* comm : {&host_only, &device}) {
    CAPTURE(comm->backend());
    for (const Tensor& t : w) reset_grad(t);
    dist::GradSync sync(*comm, w, {.bucket_bytes = 1 << 20});
    sync.begin_step(0.5);
    backward(sum(w[0] * 2.0) + sum(w[1] * 3.0));
    sync.finish_step();
    REQUIRE(comm->reduced.size() == 1);
    CHECK(comm->reduced[0] == std::vector<double>{1.5, 1.5, 1.5, 1, 1, 1});
    for (const Tensor& t : w) reset_grad(t);
    sync.begin_step(0.5);
    backward(sum(w[1] * 3.0));
    sync.finish_step();
    REQUIRE(comm->reduced.size() == 2);
    CHECK(comm->reduced[1] == std::vector<double>{1.5, 1.5, 1.5, 0, 0, 0});
    CHECK(!grad(w[0]).defined());
    CHECK(values(grad(w[1]).to(Device::cpu())) == std::vector<double>{3, 3, 3});  // 3 * 0.5 * 2
  }
  // Broadcast: the host copy is what the communicator writes, and it lands on the device.
  const Tensor t = zeros({5}, {DType::f32, gpu});
  dist::broadcast_tensors(host_only, {t});
  for (double v : values(t.to(Device::cpu()))) CHECK(v == doctest::Approx(0.7470588));
}
