// Module: registration and dotted names, traversal order, modes, state dict
// round trip with strict checks (and no partial writes on error), to(),
// zero_grad, summary; Linear and Sequential as the simplest layers.
#include "layers/concat.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "layers/sequential.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using namespace crfseg::nn;

namespace {

// A two-level tree with a buffer, like a conv block with its norm.
class Block : public Module {
 public:
  explicit Block(Generator& gen) : Module("Block") {
    fc = register_module("fc", std::make_shared<Linear>(LinearOptions{3, 4}, gen));
    count = register_buffer("count", zeros({1}));
  }
  Tensor forward(const Tensor& x) override { return relu((*fc)(x)); }
  std::shared_ptr<Linear> fc;
  Tensor count;
};

class Net : public Module {
 public:
  explicit Net(Generator& gen) : Module("Net") {
    block = register_module("block", std::make_shared<Block>(gen));
    head = register_module("head", std::make_shared<Sequential>());
    head->push_back(std::make_shared<Linear>(LinearOptions{4, 2, false}, gen));
    scale = register_parameter("scale", ones({2}));
  }
  Tensor forward(const Tensor& x) override { return mul((*head)((*block)(x)), scale); }
  std::shared_ptr<Block> block;
  std::shared_ptr<Sequential> head;
  Tensor scale;
};

std::vector<std::string> names(const std::vector<NamedTensor>& v) {
  std::vector<std::string> out;
  for (const auto& [n, _] : v) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("Module: dotted names in registration order, own tensors before children") {
  Generator gen(1);
  Net net(gen);
  CHECK(names(net.named_parameters()) ==
        std::vector<std::string>{"scale", "block.fc.weight", "block.fc.bias", "head.0.weight"});
  CHECK(names(net.named_buffers()) == std::vector<std::string>{"block.count"});
  CHECK(names(net.state_dict()) ==
        std::vector<std::string>{"scale", "block.count", "block.fc.weight", "block.fc.bias", "head.0.weight"});
  CHECK(net.num_parameters() == 2 + 12 + 4 + 8);
  std::vector<std::string> modules;
  for (auto& [n, m] : net.named_modules()) modules.push_back(n + ":" + m->type_name());
  CHECK(modules == std::vector<std::string>{":Net", "block:Block", "block.fc:Linear", "head:Sequential",
                                            "head.0:Linear"});
  for (const Tensor& p : net.parameters()) CHECK(requires_grad(p));
  CHECK_FALSE(requires_grad(net.block->count));
}

TEST_CASE("Module: bad registrations are refused") {
  Generator gen(1);
  Net net(gen);
  check_throws_with<ValueError>([&] { net.register_parameter("scale", ones({1})); }, "already registered");
  check_throws_with<ValueError>([&] { net.register_buffer("a.b", ones({1})); }, "contain no '.'");
  check_throws_with<ValueError>([&] { net.child("tail"); }, "children: block, head");
  check_throws_with<NotImplementedError>([&] { Module("Bare").forward(ones({1})); }, "Bare");
}

TEST_CASE("Module: train/eval reach every child; zero_grad clears accumulated grads") {
  Generator gen(2);
  Net net(gen);
  net.eval();
  CHECK_FALSE(net.block->fc->is_training());
  net.train();
  CHECK(net.head->is_training());
  const Tensor x = random_tensor({5, 3}, 3);
  backward(sum(net(x)));
  CHECK(grad(net.block->fc->weight).defined());
  net.zero_grad();
  CHECK_CLOSE(grad(net.block->fc->weight), std::vector<double>(12, 0.0), 0, 0);
}

TEST_CASE("Module: state_dict round trip, strict checks, nothing written on error") {
  Generator g1(4), g2(5);
  Net a(g1), b(g2);
  const Tensor x = random_tensor({2, 3}, 6);
  CHECK_FALSE(values(a(x)) == values(b(x)));
  b.load_state_dict(a.state_dict());
  CHECK(values(a(x)) == values(b(x)));
  // The layer's member handle sees the loaded data.
  CHECK(values(b.block->fc->weight) == values(a.block->fc->weight));

  Generator g3(7);
  Net c(g3);
  const std::vector<double> before = values(c.block->fc->weight);
  auto state = a.state_dict();
  state.pop_back();  // drop head.0.weight
  check_throws_with<ValueError>([&] { c.load_state_dict(state); }, "missing keys [head.0.weight]");
  state.emplace_back("head.0.weight", zeros({2, 5}));
  check_throws_with<ShapeError>([&] { c.load_state_dict(state); }, "\"head.0.weight\" expects shape [2, 4], got [2, 5]");
  CHECK(values(c.block->fc->weight) == before);  // the valid entries were not written either
  state.back().second = zeros({2, 4});
  state.emplace_back("extra", zeros({1}));
  check_throws_with<ValueError>([&] { c.load_state_dict(state); }, "unexpected keys [extra]");
  c.load_state_dict(state, /*strict=*/false);
  CHECK_CLOSE(c.head->operator[](0).named_parameters()[0].second, std::vector<double>(8, 0.0), 0, 0);
  // f64 values load into f32 parameters (cast).
  auto as_f64 = a.state_dict();
  for (auto& [_, t] : as_f64) t = ops::to_dtype(t, DType::f64);
  c.load_state_dict(as_f64);
  CHECK_CLOSE(c(x), values(a(x)), 1e-6, 1e-6);
}

TEST_CASE("Module: to(cpu) keeps handles; summary lists every layer") {
  Generator gen(8);
  Net net(gen);
  const Tensor w = net.block->fc->weight;
  net.to(Device::cpu());
  CHECK(w.is_same(net.block->fc->weight));
  const std::string s = summary(net, random_tensor({7, 3}, 9));
  INFO(s);
  CHECK(s.find("block.fc") != std::string::npos);
  CHECK(s.find("[7, 4]") != std::string::npos);
  CHECK(s.find("head.0") != std::string::npos);
  CHECK(s.find("parameters: 26") != std::string::npos);
  CHECK(net.is_training());  // summary restores the mode
}

TEST_CASE("Linear: matches x W^T + b and checks its input") {
  Generator gen(10);
  Linear fc(LinearOptions{3, 2}, gen);
  const Tensor x = random_tensor({4, 3}, 11);
  const auto xv = values(x), wv = values(fc.weight), bv = values(fc.bias);
  std::vector<double> want(8);
  for (int i = 0; i < 4; ++i)
    for (int o = 0; o < 2; ++o) {
      want[i * 2 + o] = bv[o];
      for (int k = 0; k < 3; ++k) want[i * 2 + o] += xv[i * 3 + k] * wv[o * 3 + k];
    }
  CHECK_CLOSE(fc(x), want, 1e-6, 1e-6);
  // torch's init bound 1/sqrt(in_features).
  for (double v : wv) CHECK(std::abs(v) <= 1.0 / std::sqrt(3.0));
  check_throws_with<ShapeError>([&] { fc(random_tensor({4, 5}, 12)); }, "expected input [..., 3], got [4, 5]");
}

TEST_CASE("Concat: joins along channels, gradients reach every input") {
  nn::Concat cat;
  Tensor a = random_tensor({2, 1, 2, 3}, 1, DType::f64), b = random_tensor({2, 2, 2, 3}, 2, DType::f64);
  set_requires_grad(a);
  set_requires_grad(b);
  const Tensor y = cat({a, b});
  CHECK(y.shape() == Shape{2, 3, 2, 3});
  CHECK(values(ops::slice(y, 1, 1, 3)) == values(b));
  backward(sum(y * y));
  CHECK(values(grad(a)) == values(2.0 * a));
  check_throws_with<ShapeError>([&] { cat({a, random_tensor({2, 1, 3, 3}, 3, DType::f64)}); }, "concat");
  CHECK(cat.extra_repr() == "dim=1");
}
