// The autograd engine: accumulation, zero_grad, no-grad, detach, shared
// inputs, retain_graph, the version counter, and very deep graphs.
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  const Tensor x = from_vector<double>({1, 2, 3}, {3});
  set_requires_grad(x);
  backward(sum(x * x));
  CHECK_CLOSE(grad(x), std::vector<double>{2, 4, 6});
  backward(sum(x * x));
  CHECK_CLOSE(grad(x), std::vector<double>{4, 8, 12});
  zero_grad(x);
  CHECK_CLOSE(grad(x), std::vector<double>{0, 0, 0});
  backward(sum(x * 3.0));
  CHECK_CLOSE(grad(x), std::vector<double>{3, 3, 3});
}

TEST_CASE("a tensor used twice receives the sum of both gradients") {
  const Tensor x = from_vector<double>({0.5, -1.0}, {2});
  set_requires_grad(x);
  const Tensor y = exp(x);
  backward(sum(y * y + y));  // d/dx (e^{2x} + e^x) = 2e^{2x} + e^x
  const std::vector<double> xs = {0.5, -1.0};
  std::vector<double> want;
  for (double v : xs) want.push_back(2 * std::exp(2 * v) + std::exp(v));
  CHECK_CLOSE(grad(x), want, 1e-12, 1e-12);
}

TEST_CASE("no-grad guard, detach and integer tensors") {
  const Tensor x = ones({2});
  set_requires_grad(x);
  {
    NoGradGuard guard;
    CHECK_FALSE(GradMode::is_enabled());
    CHECK_FALSE(requires_grad(x * 2.0));
  }
  CHECK(GradMode::is_enabled());
  const Tensor d = detach(x * 2.0);
  CHECK_FALSE(requires_grad(d));
  CHECK(is_leaf(d));
  check_throws_with<AutogradError>([&] { backward(sum(d)); }, "does not require grad");
  check_throws_with<AutogradError>([] { set_requires_grad(zeros({2}, {DType::i64})); },
                                   "only floating-point tensors can require grad (f32, f64), got i64");
  check_throws_with<AutogradError>([] { set_requires_grad(zeros({2}, {DType::bf16})); },
                                   "only floating-point tensors can require grad (f32, f64), got bf16");
  check_throws_with<AutogradError>([&] { set_requires_grad(x * 2.0, false); }, "only leaf tensors");
  check_throws_with<AutogradError>([&] { backward(x * 2.0); }, "grad_output can be omitted only for a one-element");
}

TEST_CASE("editing a saved tensor in place is caught at backward") {
  const Tensor x = from_vector<double>({1, 2}, {2});
  set_requires_grad(x);
  const Tensor y = exp(x);  // ExpBackward saves y
  const Tensor loss = sum(y * 1.0);
  ops::mul_(y, 2.0);  // invalidates the saved y
  check_throws_with<AutogradError>([&] { backward(loss); },
                                   "ExpBackward: a tensor saved for backward was modified by an in-place operation "
                                   "(saved at version 0, now at version 1)");
}

TEST_CASE("retain_graph allows a second backward; without it the second pass throws") {
  const Tensor x = from_vector<double>({3}, {1});
  set_requires_grad(x);
  const Tensor y = sum(x * x * x);
  backward(y, Tensor(), /*retain_graph=*/true);
  backward(y);
  CHECK_CLOSE(grad(x), std::vector<double>{54});
  check_throws_with<AutogradError>([&] { backward(y); }, "backward through the graph a second time");
}

TEST_CASE("a 100000-node chain runs backward without recursion") {
  const Tensor x = from_vector<double>({1.0}, {1});
  set_requires_grad(x);
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  backward(sum(y));
  CHECK(grad(x).item() == 1.0);
}

TEST_CASE("gradients flow through broadcasting to the smaller operand") {
  const Tensor w = from_vector<double>({1, 2, 3}, {3});
  const Tensor x = ones({4, 3}, {DType::f64});
  set_requires_grad(w);
  backward(sum(x * w));
  CHECK_CLOSE(grad(w), std::vector<double>{4, 4, 4});
  CHECK(grad(w).shape() == Shape{3});
}

TEST_CASE("a leaf's first gradient is taken over only when nothing else holds it") {
  // An add's backward hands the same gradient to both inputs: the leaves
  // must get separate buffers (editing one .grad leaves the other alone).
  const Tensor a = from_vector<double>({1, 2}, {2}), b = from_vector<double>({3, 4}, {2});
  set_requires_grad(a);
  set_requires_grad(b);
  backward(a + b, from_vector<double>({5, 6}, {2}));
  CHECK(grad(a).storage_ptr() != grad(b).storage_ptr());
  ops::add_(grad(a), grad(a));
  CHECK_CLOSE(grad(a), std::vector<double>{10, 12});
  CHECK_CLOSE(grad(b), std::vector<double>{5, 6});

  // The caller's grad_output, reaching a leaf as it is, is copied.
  const Tensor x = from_vector<double>({1, 2}, {2});
  set_requires_grad(x);
  const Tensor seed = from_vector<double>({7, 8}, {2});
  backward(x, seed);
  CHECK(grad(x).storage_ptr() != seed.storage_ptr());
  ops::add_(seed, seed);
  CHECK_CLOSE(grad(x), std::vector<double>{7, 8});

  // A concat's backward hands each input a view of one buffer: copied.
  const Tensor u = from_vector<double>({1, 2}, {2}), v = from_vector<double>({3}, {1});
  set_requires_grad(u);
  set_requires_grad(v);
  backward(concat({u, v}, 0), from_vector<double>({4, 5, 6}, {3}));
  CHECK(grad(u).storage_ptr() != grad(v).storage_ptr());
  CHECK(grad(u).numel() == 2);
  ops::add_(grad(v), grad(v));
  CHECK_CLOSE(grad(u), std::vector<double>{4, 5});
  CHECK_CLOSE(grad(v), std::vector<double>{12});

  // A fresh gradient is kept as it is, and later ones add into it.
  const Tensor w = from_vector<double>({1, 2, 3}, {3});
  set_requires_grad(w);
  backward(sum(w * w));
  const auto* first = grad(w).storage_ptr().get();
  backward(sum(w * w));
  CHECK(grad(w).storage_ptr().get() == first);
  CHECK_CLOSE(grad(w), std::vector<double>{4, 8, 12});
}

TEST_CASE("backward checks grad_output against the output: shape, dtype and device") {
  const Tensor x = from_vector<double>({1, 2, 3}, {3});
  set_requires_grad(x);
  const Tensor y = x * 2.0;
  check_throws_with<AutogradError>([&] { backward(y, ones({2}, {DType::f64})); },
                                   "backward: expected grad_output like Tensor[3] f64 cpu, got Tensor[2] f64 cpu");
  check_throws_with<AutogradError>([&] { backward(y, ones({3}, {DType::f32})); }, "got Tensor[3] f32 cpu");
  check_throws_with<AutogradError>([&] { backward(y); }, "grad_output can be omitted only for a one-element output");
  backward(y, ones({3}, {DType::f64}));
  CHECK_CLOSE(grad(x), std::vector<double>{2, 2, 2});
}
