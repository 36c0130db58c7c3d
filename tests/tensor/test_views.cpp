// Views share storage and index the right elements; bad geometry throws.
#include <limits>

#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

TEST_CASE("contiguous strides and basic geometry") {
  Tensor t = ops::reshape(arange(0, 24), {2, 3, 4});
  CHECK(t.shape() == Shape{2, 3, 4});
  CHECK(t.strides() == Strides{12, 4, 1});
  CHECK(t.is_contiguous());
  CHECK(t.at({1, 2, 3}) == 23);
  CHECK(t.size(-1) == 4);
}

TEST_CASE("permute, transpose and slice index the same elements as the math says") {
  Tensor t = ops::reshape(arange(0, 60, 1, {DType::f64}), {3, 4, 5});
  Tensor p = ops::permute(t, {2, 0, 1});
  CHECK(p.shape() == Shape{5, 3, 4});
  CHECK_FALSE(p.is_contiguous());
  for_each_index(p.shape(), [&](const std::vector<int64_t>& i) { CHECK(p.at(i) == t.at({i[1], i[2], i[0]})); });

  Tensor s = ops::slice(t, 2, 1, 5, 2);  // columns 1 and 3
  CHECK(s.shape() == Shape{3, 4, 2});
  for_each_index(s.shape(), [&](const std::vector<int64_t>& i) {
    CHECK(s.at(i) == t.at({i[0], i[1], 1 + 2 * i[2]}));
  });
  // Python-style negative and clamped bounds.
  CHECK(ops::slice(t, 1, -2, 100).shape() == Shape{3, 2, 5});
  CHECK(ops::slice(t, 0, 5, 9).shape() == Shape{0, 4, 5});

  Tensor tt = ops::transpose(t, 0, -1);
  CHECK(tt.shape() == Shape{5, 4, 3});
  CHECK(tt.at({4, 1, 2}) == t.at({2, 1, 4}));
}

TEST_CASE("views share storage; contiguous() copies only when needed") {
  Tensor t = zeros({4, 6});
  Tensor v = ops::slice(t, 1, 2, 4);
  ops::fill_(v, 7.0);
  CHECK(t.at({3, 2}) == 7.0);
  CHECK(t.at({3, 4}) == 0.0);
  CHECK(ops::contiguous(t).is_same(t));
  Tensor c = ops::contiguous(v);
  CHECK_FALSE(c.is_same(v));
  CHECK(c.is_contiguous());
  CHECK_CLOSE(c, std::vector<double>(8, 7.0));
}

TEST_CASE("reshape, unsqueeze, squeeze, flatten and expand") {
  Tensor t = ops::reshape(arange(0, 12), {3, 4});
  CHECK(ops::reshape(t, {-1, 6}).shape() == Shape{2, 6});
  CHECK(ops::unsqueeze(t, 1).shape() == Shape{3, 1, 4});
  CHECK(ops::unsqueeze(t, -1).shape() == Shape{3, 4, 1});
  CHECK(ops::squeeze(ops::unsqueeze(t, 0), 0).shape() == Shape{3, 4});
  CHECK(ops::flatten(ops::reshape(t, {3, 2, 2}), 1).shape() == Shape{3, 4});
  // Reshaping a non-contiguous view copies and keeps row-major element order.
  Tensor r = ops::reshape(ops::transpose(t, 0, 1), {12});
  std::vector<double> want;
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 3; ++i) want.push_back(i * 4 + j);
  CHECK_CLOSE(r, want);
  Tensor e = ops::expand(ops::reshape(arange(0, 3), {3, 1}), {2, 3, 5});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(e.at({1, 2, 4}) == 2.0);
}

TEST_CASE("view errors name the op and the shapes") {
  Tensor t = zeros({2, 3});
  check_throws_with<ShapeError>([&] { ops::reshape(t, {4, 2}); }, "reshape: shape [4, 2] has 8 elements");
  check_throws_with<ShapeError>([&] { ops::reshape(t, {-1, -1}); }, "only one dim may be -1");
  check_throws_with<ShapeError>([&] { ops::permute(t, {0, 0}); }, "permute: dim 0 repeated");
  check_throws_with<ShapeError>([&] { ops::squeeze(t, 0); }, "squeeze: dim 0 of [2, 3] has size 2");
  check_throws_with<ShapeError>([&] { ops::expand(t, {2, 4}); }, "expand");
  check_throws_with<ShapeError>([&] { ops::slice(t, 2, 0, 1); }, "slice: dim 2 out of range");
  check_throws_with<ShapeError>([&] { t.as_strided({3, 3}, {3, 1}, 0); }, "outside a storage of 6 elements");
  check_throws_with<ValueError>([&] { Tensor().shape(); }, "undefined tensor");
}

TEST_CASE("dtypes: casts between f32, f64 and integer types") {
  Tensor f = from_vector<float>({-1.5f, 0.f, 2.75f, 255.f}, {4});
  CHECK(ops::to_dtype(f, DType::f64).dtype() == DType::f64);
  CHECK_CLOSE(ops::to_dtype(f, DType::i32), std::vector<double>{-1, 0, 2, 255});
  CHECK(ops::to_dtype(f, DType::u8).at({3}) == 255);
  // Out of range and NaN saturate (a plain C++ cast would be undefined behaviour).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor wild = from_vector<float>({-1.5f, 300.f, nan, 1e10f, -1e10f, 254.9f}, {6});
  CHECK(ops::to_dtype(wild, DType::u8).to_vector<uint8_t>() == std::vector<uint8_t>{0, 255, 0, 255, 0, 254});
  CHECK(ops::to_dtype(wild, DType::i32).to_vector<int32_t>() ==
        std::vector<int32_t>{-1, 300, 0, 2147483647, -2147483647 - 1, 254});
  CHECK(ops::to_dtype(from_vector<double>({1e300, -1e300}, {2}), DType::i64).to_vector<int64_t>() ==
        std::vector<int64_t>{INT64_MAX, INT64_MIN});
  CHECK(ops::to_dtype(f, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 2, 255});
  // 16-bit floats are storage: filled and cast, but not computed with (tests/tensor/test_half.cpp).
  Tensor h = Tensor::empty({2}, {DType::f16});
  ops::fill_(h, 1.5);
  CHECK(h.to_vector<float>() == std::vector<float>{1.5f, 1.5f});
  check_throws_with<DTypeError>([&] { ops::add(h, h); }, "expected dtype f32 or f64, got f16");
  check_throws_with<DTypeError>([&] { f.data<double>(); }, "expected dtype f64, got f32");
}

TEST_CASE("devices: parsing, and CUDA tensors rejected by CPU ops with a clear error") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::parse("cuda").str() == "cuda:0");
  check_throws_with<DeviceError>([] { Device::parse("gpu0"); }, "expected \"cpu\" or \"cuda:N\", got \"gpu0\"");
  check_throws_with<DeviceError>([] { Device::parse("cuda:x"); }, "got \"cuda:x\"");
  if (cuda::device_count() == 0) {
    // Without a device, allocation on cuda:0 must throw, never crash.
    CHECK_THROWS_AS(zeros({2}, {DType::f32, Device::cuda(0)}), DeviceError);
  }
}

// Found by fuzz/fuzz_safetensors: a [2, 0] tensor (contiguous strides [1, 1])
// reported is_contiguous() == false; empty tensors are contiguous, as in PyTorch.
TEST_CASE("empty tensors are contiguous whatever the position of the zero") {
  for (const Shape& shape : {Shape{0}, Shape{2, 0}, Shape{0, 3}, Shape{3, 0, 2}, Shape{9223, 720368, 0}}) {
    CAPTURE(shape_str(shape));
    const Tensor t = Tensor::empty(shape);
    CHECK(t.numel() == 0);
    CHECK(t.is_contiguous());
  }
}
