// crfseg_demo: the end-to-end example run by scripts/demo.sh until the
// segmentation trainer lands. A two-layer network (2 -> 64 -> 2, ReLU) learns
// to separate two interleaved spirals, generated from a fixed seed, with
// the fused softmax cross-entropy and SGD with momentum, all on the autograd ops.
//
//   logits = relu(x W1^T + b1) W2^T + b2
//   loss   = mean_i [ logsumexp(logits_i) - logits_i[y_i] ]   (cross_entropy)
//
// Usage: crfseg_demo [--steps N] [--seed S]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numbers>
#include <string>

#include "crfseg.h"

using namespace crfseg;

namespace {

struct Data {
  Tensor x;       // [n, 2] f32
  Tensor target;  // [n] i64 class indices
  std::vector<int> label;
};

// Two spirals, n points each, with a little noise.
Data make_spirals(int n, Generator& gen) {
  std::vector<float> x;
  std::vector<int64_t> target;
  std::vector<int> label;
  for (int cls = 0; cls < 2; ++cls) {
    for (int i = 0; i < n; ++i) {
      const double t = 0.25 + 2.5 * std::numbers::pi * i / n;  // angle
      const double r = t / (2.75 * std::numbers::pi);
      const double phase = cls * std::numbers::pi;
      x.push_back(static_cast<float>(r * std::cos(t + phase) + 0.02 * gen.normal()));
      x.push_back(static_cast<float>(r * std::sin(t + phase) + 0.02 * gen.normal()));
      target.push_back(cls);
      label.push_back(cls);
    }
  }
  const int64_t total = 2 * n;
  return {from_vector(x, {total, 2}), from_vector(target, {total}), label};
}

Tensor forward(const Tensor& x, const std::vector<Tensor>& p) {
  const Tensor h = relu(add(matmul(x, transpose(p[0], 0, 1)), p[1]));
  return add(matmul(h, transpose(p[2], 0, 1)), p[3]);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int steps = 1500;
    uint64_t seed = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
      else if (arg == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
      else throw ValueError("crfseg_demo: unknown argument \"" + arg + "\"; usage: crfseg_demo [--steps N] [--seed S]");
    }
    Generator gen(seed);
    const Data data = make_spirals(200, gen);

    const int64_t hidden = 64;
    // Weights are stored [out, in] as in torch.nn.Linear, so the init sees the
    // right fans; x W^T is a transposed view that GEMM reads without a copy.
    std::vector<Tensor> params = {Tensor::empty({hidden, 2}), zeros({hidden}), Tensor::empty({2, hidden}),
                                  zeros({2})};
    kaiming_uniform_(params[0], 0.0, gen);
    xavier_uniform_(params[2], 1.0, gen);
    std::vector<Tensor> velocity;
    for (Tensor& p : params) {
      set_requires_grad(p);
      velocity.push_back(zeros_like(p));
    }

    const double lr = 0.2, momentum = 0.9;
    std::printf("crfseg demo: 2-layer MLP on two spirals (%lld points), %d steps, seed %llu\n",
                static_cast<long long>(data.x.size(0)), steps, static_cast<unsigned long long>(seed));
    double loss_value = 0;
    for (int step = 1; step <= steps; ++step) {
      const Tensor logits = forward(data.x, params);
      const Tensor loss = cross_entropy(logits, data.target);
      for (Tensor& p : params) zero_grad(p);
      backward(loss);
      {
        NoGradGuard no_grad;  // v = momentum v + g; p -= lr v
        for (size_t k = 0; k < params.size(); ++k) {
          ops::mul_(velocity[k], momentum);
          ops::add_(velocity[k], grad(params[k]));
          ops::add_(params[k], velocity[k], -lr);
        }
      }
      loss_value = loss.item();
      if (step == 1 || step % 250 == 0) std::printf("step %5d  loss %.4f\n", step, loss_value);
    }

    NoGradGuard no_grad;
    const Tensor logits = forward(data.x, params);
    const std::vector<int64_t> pred = ops::argmax(logits, 1).to_vector<int64_t>();
    int correct = 0;
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == data.label[i];
    std::printf("final loss %.4f, training accuracy %.1f%%\n", loss_value, 100.0 * correct / pred.size());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
