// Synchronised batch norm through the layers and autograd: a small conv-BN
// network copied onto 3 replicas (threads, tests/support/thread_replicas.h)
// with uneven slices of one batch, nn::set_batch_norm_sync on each, trains
// like the same network on the whole batch: weighted parameter gradients,
// input gradients and running statistics match; without the sync they do not.
#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "layers/conv.h"
#include "layers/norm.h"
#include "layers/sequential.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tests/support/helpers.h"
#include "tests/support/thread_replicas.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

std::shared_ptr<nn::Sequential> make_net() {
  Generator gen(5);
  auto net = std::make_shared<nn::Sequential>();
  const DType f64 = DType::f64;
  net->push_back(std::make_shared<nn::Conv2d>(
      nn::Conv2dOptions{.in_channels = 2, .out_channels = 3, .padding = 1, .bias = false, .dtype = f64}, gen));
  net->push_back(std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions{.num_features = 3, .fuse_relu = true, .dtype = f64}));
  net->push_back(std::make_shared<nn::Conv2d>(
      nn::Conv2dOptions{.in_channels = 3, .out_channels = 2, .padding = 1, .dtype = f64}, gen));
  net->push_back(std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions{.num_features = 2, .dtype = f64}));
  return net;
}

struct Result {
  std::vector<std::vector<double>> param_grads;  // weighted by the replica's share
  std::vector<double> x_grad;                    // weighted, rows in batch order
  std::vector<std::vector<double>> buffers;      // running statistics (of replica 0 when split)
};

// One training step of L = sum(y R) / N on the whole batch (P = 1), or of
// L_r = sum(y_r R_r) / n_r on each of the replicas holding `rows` samples,
// with loss weights w_r = n_r / N, so that sum_r w_r L_r = L.
Result step(const std::vector<int64_t>& rows, bool sync) {
  const int64_t P = static_cast<int64_t>(rows.size()), N = 7;
  const Tensor x = random_tensor({N, 2, 5, 6}, 1, DType::f64, -1.0, 2.0);
  const Tensor R = random_tensor({N, 2, 5, 6}, 2, DType::f64);
  std::vector<double> w(P);
  std::vector<int64_t> start(P + 1, 0);
  for (int64_t r = 0; r < P; ++r) {
    w[r] = static_cast<double>(rows[r]) / N;
    start[r + 1] = start[r] + rows[r];
  }
  std::vector<std::shared_ptr<nn::Sequential>> nets(P);
  std::vector<Tensor> xs(P);
  for (int64_t r = 0; r < P; ++r) {
    nets[r] = make_net();
    xs[r] = ops::contiguous(ops::slice(x, 0, start[r], start[r + 1]));
    set_requires_grad(xs[r]);
  }
  ThreadReplicas group(P, w);
  group.run([&](int64_t r, kernels::ReplicaSync& replica) {
    if (sync) {
      // A non-owning handle: `replica` lives for this call only, like the graph.
      CHECK(nn::set_batch_norm_sync(*nets[r], std::shared_ptr<kernels::ReplicaSync>(&replica, [](auto*) {})) == 2);
    }
    const Tensor y = (*nets[r])(xs[r]);
    const Tensor loss = sum(y * ops::slice(R, 0, start[r], start[r + 1])) * (1.0 / static_cast<double>(rows[r]));
    backward(loss);
    nn::set_batch_norm_sync(*nets[r], nullptr);
  });
  Result out;
  const auto params0 = nets[0]->parameters();
  out.param_grads.assign(params0.size(), {});
  for (int64_t r = 0; r < P; ++r) {
    const auto params = nets[r]->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const std::vector<double> g = values(grad(params[i]));
      out.param_grads[i].resize(g.size(), 0.0);
      for (size_t j = 0; j < g.size(); ++j) out.param_grads[i][j] += w[r] * g[j];
    }
    for (double v : values(grad(xs[r]))) out.x_grad.push_back(w[r] * v);
  }
  for (const auto& [name, t] : nets[0]->named_buffers()) {
    if (name.find("running") != std::string::npos) out.buffers.push_back(values(t));
  }
  return out;
}

bool close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  return compare(a, b, tol, tol).empty();
}

}  // namespace

TEST_CASE("synchronised BatchNorm2d: 3 replicas with 1 + 2 + 4 samples train like one batch of 7") {
  const Result whole = step({7}, false);
  const Result synced = step({1, 2, 4}, true);
  REQUIRE(whole.param_grads.size() == synced.param_grads.size());
  for (size_t i = 0; i < whole.param_grads.size(); ++i) {
    CAPTURE(i);
    CHECK_CLOSE(synced.param_grads[i], whole.param_grads[i], 1e-12, 1e-10);
  }
  CHECK_CLOSE(synced.x_grad, whole.x_grad, 1e-12, 1e-10);
  REQUIRE(synced.buffers.size() == 4);
  for (size_t i = 0; i < whole.buffers.size(); ++i) CHECK_CLOSE(synced.buffers[i], whole.buffers[i], 1e-12, 1e-12);

  // The control: per-replica statistics give other gradients and statistics.
  const Result local = step({1, 2, 4}, false);
  bool all_close = close(local.x_grad, whole.x_grad, 1e-6);
  for (size_t i = 0; i < whole.param_grads.size(); ++i) all_close &= close(local.param_grads[i], whole.param_grads[i], 1e-6);
  CHECK(!all_close);
  CHECK(!close(local.buffers[1], whole.buffers[1], 1e-6));
}

TEST_CASE("set_batch_norm_sync reaches every BatchNorm2d, and extra_repr says so") {
  auto net = make_net();
  ThreadReplicas(2).run([&](int64_t r, kernels::ReplicaSync& replica) {
    if (r != 0) return;
    auto handle = std::shared_ptr<kernels::ReplicaSync>(&replica, [](auto*) {});
    CHECK(nn::set_batch_norm_sync(*net, handle) == 2);
    CHECK(net->child("1").extra_repr() == "3, fused ReLU, synchronised over 2 replicas");
    CHECK(nn::set_batch_norm_sync(*net, nullptr) == 2);
    CHECK(net->child("1").extra_repr() == "3, fused ReLU");
  });
}
