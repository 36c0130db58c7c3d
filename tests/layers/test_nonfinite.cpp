// Non-finite diagnosis (layers/nonfinite.h): which parameters and gradients
// hold NaN or infinity, and which layer's output turned non-finite first.
#include <limits>

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "layers/activation.h"
#include "layers/linear.h"
#include "layers/nonfinite.h"
#include "layers/sequential.h"
#include "tensor/ops.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

TEST_CASE("first_nonfinite_output names the innermost layer where a NaN appears") {
  Generator g(3);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(nn::LinearOptions{.in_features = 4, .out_features = 5}, g));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Linear>(nn::LinearOptions{.in_features = 5, .out_features = 3}, g));
  const Tensor x = randn({2, 4}, {}, g);

  CHECK(nn::nonfinite_parameters(*net).empty());
  CHECK(!nn::first_nonfinite_output(*net, [&] { (*net)(x); }).has_value());

  // An infinite weight in the last Linear: its output is the first non-finite one.
  const Tensor w = net->named_parameters()[2].second;  // "2.weight"
  REQUIRE(net->named_parameters()[2].first == "2.weight");
  w.data<float>()[1] = std::numeric_limits<float>::infinity();
  CHECK(nn::first_nonfinite_output(*net, [&] { (*net)(x); }) == std::optional<std::string>("2 (Linear)"));
  CHECK(nn::nonfinite_parameters(*net) == std::vector<std::string>{"2.weight"});
  CHECK(nn::describe_names("non-finite weights", nn::nonfinite_parameters(*net)) == "; non-finite weights in 2.weight");

  // A NaN input poisons the first layer; the observer is gone afterwards.
  Tensor bad = ops::contiguous(x);
  bad.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(nn::first_nonfinite_output(*net, [&] { (*net)(bad); }) == std::optional<std::string>("0 (Linear)"));
  CHECK(nn::all_finite(from_vector<int64_t>({1, 2}, {2})));
  CHECK(!nn::all_finite(from_vector<double>({1, std::numeric_limits<double>::infinity()}, {2})));
}

TEST_CASE("nonfinite_gradients names the parameters whose gradients overflowed") {
  Generator g(4);
  nn::Linear lin(nn::LinearOptions{.in_features = 3, .out_features = 2}, g);
  const Tensor x = from_vector<float>({1e30f, 1e30f, 1e30f}, {1, 3});
  const Tensor y = lin(x);
  // d/db = 2y ~ 1e30 stays finite in f32; d/dW = 2 y x^T ~ 1e60 does not.
  backward(sum(mul(y, y)));
  CHECK(nn::nonfinite_gradients(lin) == std::vector<std::string>{"weight"});
  CHECK(nn::describe_names("non-finite gradients", {"a", "b", "c"}) == "; non-finite gradients in a (and 2 others)");
  CHECK(nn::describe_names("x", {}).empty());
}
