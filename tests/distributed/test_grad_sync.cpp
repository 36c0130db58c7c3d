// Data-parallel building blocks that run without MPI: the gradient hook of
// the autograd engine, bucket assignment, GradSync's arithmetic and ordering
// (through a fake two-rank communicator), and the DataLoader's shards.
// The real multi-process check is tests/distributed/test_data_parallel.cpp,
// run under mpirun by mpi_test.sh.
#include <algorithm>
#include <numeric>

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "datasets/loader.h"
#include "datasets/synthetic.h"
#include "distributed/communicator.h"
#include "distributed/grad_sync.h"
#include "tensor/factory.h"
#include "tests/support/fake_communicator.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Tensor t = random_tensor(shape, seed, dtype);
  set_requires_grad(t);
  return t;
}

// loss = sum(tanh(tanh(x w1) w2) w3): three layers, gradients arrive w3 first.
Tensor chain_loss(const Tensor& x, const std::vector<Tensor>& w) {
  return sum(matmul(tanh(matmul(tanh(matmul(x, w[0])), w[1])), w[2]));
}

}  // namespace

TEST_CASE("grad-accumulated hook: runs once per backward, after the contributions are summed") {
  Tensor w = leaf({3}, 1);
  std::vector<std::vector<double>> seen;
  const int64_t id = add_grad_accumulated_hook(w, [&](const Tensor& g) { seen.push_back(values(g)); });
  backward(sum(w * 2.0) + sum(w * 3.0));  // w used twice: one call with 5
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::vector<double>{5, 5, 5});
  backward(sum(w));  // accumulates: the hook sees the running grad
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == std::vector<double>{6, 6, 6});
  remove_grad_accumulated_hook(w, id);
  backward(sum(w));
  CHECK(seen.size() == 2);
  check_throws_with<AutogradError>([&] { remove_grad_accumulated_hook(w, id); }, "no hook with id");
  check_throws_with<AutogradError>([&] { add_grad_accumulated_hook(w * 2.0, [](const Tensor&) {}); },
                                   "expected a leaf that requires grad, got the output of an op");
  check_throws_with<AutogradError>([&] { add_grad_accumulated_hook(Tensor::empty({2}), [](const Tensor&) {}); },
                                   "a leaf that does not require grad");
}

TEST_CASE("assign_buckets: reverse order, a byte cap, one dtype per bucket") {
  // 4-byte floats: 10, 20, 30, 40 elements = 40, 80, 120, 160 bytes.
  const std::vector<Tensor> p = {Tensor::empty({10}), Tensor::empty({20}), Tensor::empty({30}), Tensor::empty({40})};
  CHECK(dist::assign_buckets(p, 1 << 20) == std::vector<std::vector<size_t>>{{3, 2, 1, 0}});
  CHECK(dist::assign_buckets(p, 200) == std::vector<std::vector<size_t>>{{3}, {2, 1}, {0}});
  CHECK(dist::assign_buckets(p, 1) == std::vector<std::vector<size_t>>{{3}, {2}, {1}, {0}});  // oversize: alone
  const std::vector<Tensor> mixed = {Tensor::empty({2}), Tensor::empty({2}, {DType::f64}), Tensor::empty({2})};
  CHECK(dist::assign_buckets(mixed, 1 << 20) == std::vector<std::vector<size_t>>{{2}, {1}, {0}});
  check_throws_with<ValueError>([&] { dist::assign_buckets(p, 0); }, "bucket_bytes >= 1, got 0");
}

TEST_CASE("GradSync: buckets start during backward, in order, and gradients become weighted sums") {
  for (const bool overlap : {true, false}) {
    CAPTURE(overlap);
    const Tensor x = random_tensor({4, 5}, 7);
    const std::vector<Tensor> w = {leaf({5, 6}, 1), leaf({6, 7}, 2), leaf({7, 1}, 3)};
    backward(chain_loss(x, w));
    std::vector<std::vector<double>> plain;
    for (const Tensor& t : w) plain.push_back(values(grad(t)));
    for (const Tensor& t : w) reset_grad(t);

    FakeTwoRanks comm;
    // 6*7*4 = 168 and 7*4 = 28 bytes: w3 and w2 share a bucket, w1 (120 bytes) gets its own.
    dist::GradSync sync(comm, w, {.bucket_bytes = 200, .overlap = overlap});
    REQUIRE(sync.buckets() == std::vector<std::vector<size_t>>{{2, 1}, {0}});
    sync.begin_step(0.25);
    backward(chain_loss(x, w));
    // With overlap both buckets were started by the hooks, before finish_step.
    CHECK(comm.started.size() == (overlap ? 2u : 0u));
    CHECK(sync.stats().buckets_started_in_backward == (overlap ? 2 : 0));
    sync.finish_step();
    CHECK(comm.started == std::vector<int64_t>{6 * 7 + 7, 5 * 6});  // bucket 0 first
    for (size_t i = 0; i < w.size(); ++i) {
      std::vector<double> want = plain[i];
      for (double& v : want) v *= 0.25 * 2;  // weight 0.25, summed over two identical ranks
      CHECK(compare(values(grad(w[i])), want, 1e-6, 1e-6) == "");
    }
  }
}

TEST_CASE("GradSync: a parameter without a gradient counts as zero and keeps none; misuse is reported") {
  FakeTwoRanks comm;
  const std::vector<Tensor> w = {leaf({3}, 1), leaf({3}, 2, DType::f64)};
  dist::GradSync sync(comm, w, {.bucket_bytes = 1 << 20});
  sync.begin_step(0.5);
  backward(sum(w[1] * 3.0));  // w[0] takes no part
  sync.finish_step();
  CHECK(!grad(w[0]).defined());
  CHECK(values(grad(w[1])) == std::vector<double>{3, 3, 3});  // 3 * 0.5 * 2
  check_throws_with<dist::DistributedError>([&] { sync.finish_step(); }, "no step is open");
  sync.begin_step(1.0);
  check_throws_with<dist::DistributedError>([&] { sync.begin_step(1.0); }, "previous step was not finished");
  sync.finish_step();
  sync.begin_step(1.0);
  reset_grad(w[1]);
  check_throws_with<dist::DistributedError>(
      [&] {
        backward(sum(w[1]), Tensor(), true);
        backward(sum(w[1]));
      },
      "received a second gradient in one step");
  check_throws_with<ValueError>([&] { dist::GradSync(comm, {Tensor::empty({2})}); }, "must be a leaf that requires grad");
}

TEST_CASE("GradSync: a parameter without a gradient this step sends zeros, not the last step's values") {
  FakeTwoRanks comm;
  const std::vector<Tensor> w = {leaf({3}, 1), leaf({2}, 2)};
  dist::GradSync sync(comm, w, {.bucket_bytes = 1 << 20});  // one bucket: w[1], then w[0]
  sync.begin_step(0.5);
  backward(sum(w[0] * 2.0) + sum(w[1] * 3.0));
  sync.finish_step();
  REQUIRE(comm.reduced.size() == 1);
  CHECK(comm.reduced[0] == std::vector<double>{1.5, 1.5, 1, 1, 1});
  for (const Tensor& t : w) reset_grad(t);
  sync.begin_step(0.5);
  backward(sum(w[1] * 3.0));
  sync.finish_step();
  REQUIRE(comm.reduced.size() == 2);
  CHECK(comm.reduced[1] == std::vector<double>{1.5, 1.5, 0, 0, 0});
  CHECK(!grad(w[0]).defined());
}

TEST_CASE("GradSync outside a step, and the single-process communicator") {
  dist::SingleProcessCommunicator one;
  CHECK(one.rank() == 0);
  CHECK(one.size() == 1);
  const std::vector<Tensor> w = {leaf({2}, 1)};
  dist::GradSync sync(one, w);
  backward(sum(w[0] * 2.0));  // no begin_step: the hook does nothing
  CHECK(values(grad(w[0])) == std::vector<double>{2, 2});
  reset_grad(w[0]);
  sync.begin_step(1.0);
  backward(sum(w[0] * 2.0));
  sync.finish_step();
  CHECK(values(grad(w[0])) == std::vector<double>{2, 2});
  std::vector<double> v = {1, 2};
  dist::allreduce_sum(one, v);
  CHECK(v == std::vector<double>{1, 2});
  CHECK(dist::parse_backend("none") == dist::Backend::single);
  check_throws_with<ValueError>([] { dist::parse_backend("gloo"); }, "auto, none, mpi or nccl, got 'gloo'");
  if (!dist::built_with_mpi()) {
    check_throws_with<NotImplementedError>([] { dist::make_communicator(dist::Backend::mpi); }, "this build has no MPI");
  }
  if (!dist::built_with_nccl()) {
    check_throws_with<NotImplementedError>([] { dist::make_communicator(dist::Backend::nccl); }, "has no NCCL");
  }
}

TEST_CASE("shard_range: slices in rank order that differ by at most one sample") {
  for (int64_t m : {1, 2, 5, 7, 16}) {
    for (int64_t p : {1, 2, 3, 4}) {
      int64_t next = 0;
      for (int64_t r = 0; r < p; ++r) {
        const data::ShardRange s = data::shard_range(m, r, p);
        CHECK(s.begin == next);
        CHECK(std::abs((s.end - s.begin) - m / p) <= 1);
        next = s.end;
      }
      CHECK(next == m);
    }
  }
  check_throws_with<ValueError>([] { data::shard_range(4, 2, 2); }, "0 <= shard < num_shards");
}

TEST_CASE("DataLoader shards: the union of the shards' batch k is the unsharded batch k") {
  auto set = std::make_shared<data::SyntheticDataset>(data::SyntheticOptions{.size = 11, .height = 8, .width = 8});
  const data::LoaderOptions whole{.batch_size = 4, .shuffle = true, .seed = 5};
  data::DataLoader single(set, whole);
  CHECK(single.num_batches() == 3);  // 4 + 4 + 3
  for (int64_t p : {2, 3}) {
    CAPTURE(p);
    std::vector<std::unique_ptr<data::DataLoader>> shards;
    for (int64_t r = 0; r < p; ++r) {
      data::LoaderOptions o = whole;
      o.num_shards = p, o.shard = r, o.num_workers = r;  // workers do not change the batches
      shards.push_back(std::make_unique<data::DataLoader>(set, o));
    }
    CHECK(shards[0]->num_batches() == 3);  // the final 3 samples still cover every shard
    for (int64_t epoch : {0, 1}) {
      single.start_epoch(epoch);
      for (auto& s : shards) s->start_epoch(epoch);
      while (auto b = single.next()) {
        std::vector<int64_t> joined;
        std::vector<double> pixels;
        for (auto& s : shards) {
          auto part = s->next();
          REQUIRE(part);
          CHECK(part->global_size == b->images.size(0));
          joined.insert(joined.end(), part->indices.begin(), part->indices.end());
          const auto v = values(part->images);
          pixels.insert(pixels.end(), v.begin(), v.end());
        }
        CHECK(joined == b->indices);
        CHECK(pixels == values(b->images));
      }
      for (auto& s : shards) CHECK(!s->next());
    }
  }
  // 11 = 2 * 4 + 3: with 4 shards the final 3 samples cannot cover every shard.
  data::LoaderOptions four = whole;
  four.num_shards = 4, four.shard = 3;
  CHECK(data::DataLoader(set, four).num_batches() == 2);
  four.batch_size = 3;
  check_throws_with<ValueError>([&] { data::DataLoader(set, four); }, "global batch_size 3 is smaller than num_shards 4");
  four.batch_size = 4, four.shard = 4;
  check_throws_with<ValueError>([&] { data::DataLoader(set, four); }, "expected 0 <= shard < num_shards, got shard 4 of 4");
}
