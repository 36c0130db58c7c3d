// Models: torchvision parameter counts and names, feature-map shapes and
// strides, any-input-size segmentation for every encoder, and overfitting a
// tiny dataset (U-Net and ResNet-50-encoder U-Net) with plain SGD.
#include "models/resnet.h"
#include "models/segmenter.h"
#include "models/unet.h"
#include "models/vgg.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using namespace crfseg::models;

namespace {

bool has_name(const std::vector<nn::NamedTensor>& state, const std::string& name, const Shape& shape) {
  for (const auto& [n, t] : state) {
    if (n == name) return t.shape() == shape;
  }
  return false;
}

}  // namespace

TEST_CASE("ResNet-50 encoder: torchvision's parameter count and names") {
  Generator gen(1);
  ResNetEncoder r({}, gen);
  // torchvision.models.resnet50(): 25,557,032 parameters, minus fc (2048*1000 + 1000).
  CHECK(r.num_parameters() == 23508032);
  const auto state = r.state_dict();
  CHECK(has_name(state, "conv1.weight", {64, 3, 7, 7}));
  CHECK(has_name(state, "bn1.running_var", {64}));
  CHECK(has_name(state, "bn1.num_batches_tracked", {}));
  CHECK(has_name(state, "layer1.0.downsample.0.weight", {256, 64, 1, 1}));
  CHECK(has_name(state, "layer2.0.conv2.weight", {128, 128, 3, 3}));  // v1.5: the stride sits here
  CHECK(has_name(state, "layer4.2.bn3.bias", {2048}));
  // 53 convs + 53 BNs * 5 state tensors (weight, bias, running mean/var, count).
  CHECK(state.size() == 53 + 53 * 5);
}

TEST_CASE("VGG-16 encoder: torchvision's features count and names") {
  Generator gen(2);
  VGGEncoder v({}, gen);
  CHECK(v.num_parameters() == 14714688);
  const auto state = v.state_dict();
  CHECK(has_name(state, "features.0.weight", {64, 3, 3, 3}));
  CHECK(has_name(state, "features.28.bias", {512}));
  CHECK(state.size() == 26);
  VGGEncoder vbn({.batch_norm = true}, gen);
  CHECK(has_name(vbn.state_dict(), "features.1.running_mean", {64}));  // vgg16_bn: BN right after conv 0
  CHECK(has_name(vbn.state_dict(), "features.41.weight", {512}));      // the last BN
}

TEST_CASE("encoders: feature shapes follow the declared channels and strides") {
  Generator gen(3);
  std::vector<std::shared_ptr<Encoder>> encoders = {
      std::make_shared<UNetEncoder>(UNetEncoderOptions{.in_channels = 1, .base_width = 4, .depth = 3}, gen),
      std::make_shared<ResNetEncoder>(ResNetOptions{.in_channels = 2, .blocks = {1, 1, 1, 1}}, gen),
      std::make_shared<VGGEncoder>(VGGOptions{.in_channels = 3}, gen)};
  for (auto& e : encoders) {
    INFO(e->type_name());
    const int64_t m = e->size_multiple();
    const Tensor x = random_tensor({2, e->in_channels(), 2 * m, 3 * m}, 4);
    NoGradGuard no_grad;
    const auto f = e->features(x);
    REQUIRE(f.size() == e->feature_channels().size());
    for (size_t i = 0; i < f.size(); ++i) {
      const int64_t s = e->feature_strides()[i];
      CHECK(f[i].shape() == Shape{2, e->feature_channels()[i], 2 * m / s, 3 * m / s});
    }
  }
}

TEST_CASE("U-Net with base width 64: the classic 31,037,763 parameters") {
  // Depth 4, 3 input channels, 3 classes, BN without conv biases, transposed
  // up-convs: the count of the module-for-module PyTorch twin in
  // tools/export_torchvision.py (UNet(3, 3, 64, 4)), printed by torch.
  Generator gen(1);
  Segmenter s(SegmenterConfig{.encoder = "unet", .in_channels = 3, .num_classes = 3, .base_width = 64, .depth = 4},
              gen);
  CHECK(s.num_parameters() == 31037763);
  Segmenter gray(SegmenterConfig{.encoder = "unet", .in_channels = 1, .num_classes = 2, .base_width = 64, .depth = 4},
                 gen);
  CHECK(gray.num_parameters() == 31036546);
}

TEST_CASE("Segmenter: any input size, any encoder, logits at the input size") {
  Generator gen(5);
  for (const std::string enc : {"unet", "resnet50", "vgg16_bn"}) {
    SegmenterConfig c{.encoder = enc, .in_channels = 1, .num_classes = 3, .base_width = 4, .depth = 2,
                      .decoder_widths = enc == "unet" ? std::vector<int64_t>{} : std::vector<int64_t>{16, 8, 8, 4}};
    Segmenter s(c, gen);
    for (const auto& hw : std::vector<std::pair<int64_t, int64_t>>{{17, 23}, {8, 8}, {1, 5}}) {
      const int64_t h = hw.first, w = hw.second;  // (clang 14 cannot capture structured bindings in INFO)
      INFO(enc << " " << h << "x" << w);
      NoGradGuard no_grad;
      s.eval();
      const Tensor y = s(random_tensor({2, 1, h, w}, 6));
      CHECK(y.shape() == Shape{2, 3, h, w});
    }
  }
  check_throws_with<ValueError>([&] { Segmenter(SegmenterConfig{.encoder = "alexnet"}, gen); },
                                "unknown encoder \"alexnet\"");
  Segmenter s(SegmenterConfig{.base_width = 4, .depth = 1}, gen);
  check_throws_with<ShapeError>([&] { s(random_tensor({1, 1, 8, 8}, 7)); }, "expected input [N, 3, H, W]");
}

TEST_CASE("Segmenter: input normalisation inside the model; the final layer sees the raw input") {
  Generator g1(11), g2(11);
  SegmenterConfig c{.encoder = "unet", .in_channels = 2, .num_classes = 2, .base_width = 4, .depth = 1};
  Segmenter plain(c, g1);
  c.input_mean = {0.5, 0.25};
  c.input_std = {0.2, 0.4};
  Segmenter normalising(c, g2);
  CHECK(normalising.state_dict().size() == plain.state_dict().size() + 2);
  const Tensor x = random_tensor({1, 2, 5, 6}, 12, DType::f32, 0, 1);
  const Tensor manual = (x - from_vector<float>({0.5f, 0.25f}, {1, 2, 1, 1})) /
                        from_vector<float>({0.2f, 0.4f}, {1, 2, 1, 1});
  NoGradGuard no_grad;
  plain.eval();
  normalising.eval();
  CHECK(max_abs_difference(normalising(x), plain(manual)) < 1e-6);
  Tensor seen;
  normalising.set_final_layer(nullptr, [&](const Tensor& logits, const Tensor& image) {
    seen = image;
    return logits;
  });
  (void)normalising(x);
  CHECK(seen.is_same(x));
  check_throws_with<ValueError>([&] { Segmenter(SegmenterConfig{.in_channels = 3, .input_mean = {0.5},
                                                                .input_std = {0.5}}, g1); },
                                "input_mean and input_std need one value per input channel (3), got 1 and 1");
}

namespace {

// Trains `model` with SGD + momentum on one fixed batch; returns the losses.
std::vector<double> overfit(nn::Module& model, const Tensor& x, const Tensor& target, int steps, double lr) {
  std::vector<Tensor> velocity;
  for (const Tensor& p : model.parameters()) velocity.push_back(zeros_like(p));
  std::vector<double> losses;
  model.train();
  for (int step = 0; step < steps; ++step) {
    model.zero_grad();
    const Tensor loss = cross_entropy(model(x), target);
    losses.push_back(loss.item());
    backward(loss);
    NoGradGuard no_grad;
    const auto params = model.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      ops::mul_(velocity[i], 0.9);
      ops::add_(velocity[i], grad(params[i]));
      ops::add_(params[i], velocity[i], -lr);
    }
  }
  return losses;
}

// Two 12x12 images: class 1 inside a square, class 2 in a stripe, 0 elsewhere.
std::pair<Tensor, Tensor> tiny_dataset() {
  Tensor x = zeros({2, 1, 12, 12});
  Tensor t = zeros({2, 12, 12}, {DType::i64});
  float* xp = x.data<float>();
  int64_t* tp = t.data<int64_t>();
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 12; ++h)
      for (int w = 0; w < 12; ++w) {
        const int i = (n * 12 + h) * 12 + w;
        const bool square = h >= 2 + n && h < 7 + n && w >= 3 && w < 8;
        const bool stripe = w >= 9 - n && w < 11 - n;  // 2 pixels wide: ResNet's finest map has stride 2
        tp[i] = square ? 1 : stripe ? 2 : 0;
        xp[i] = square ? 1.0f : stripe ? -1.0f : 0.1f * ((h + w) % 3);
      }
  return {x, t};
}

}  // namespace

TEST_CASE("U-Net overfits a tiny dataset") {
  Generator gen(8);
  Segmenter s(SegmenterConfig{.in_channels = 1, .num_classes = 3, .base_width = 8, .depth = 2}, gen);
  const auto [x, t] = tiny_dataset();
  const auto losses = overfit(s, x, t, 150, 0.05);
  INFO("first loss " << losses.front() << ", last loss " << losses.back());
  CHECK(losses.front() > 0.5);
  CHECK(losses.back() < 0.05);
}

namespace {

// `steps` of SGD on the tiny dataset with a ResNet-50-encoder U-Net (seed 9).
std::vector<double> resnet50_unet_losses(int steps) {
  Generator gen(9);
  Segmenter s(SegmenterConfig{.encoder = "resnet50", .in_channels = 1, .num_classes = 3,
                              .decoder_widths = {32, 16, 16, 8}},
              gen);
  const auto [x, t] = tiny_dataset();
  return overfit(s, x, t, steps, 0.05);
}

}  // namespace

// The sanitizer build runs this short test instead of the 50-step overfit
// below (same forward, backward and update code, one twelfth of the steps;
// the overfit's 7 s per step under ASan made it CI's critical path). The
// release build runs both.
TEST_CASE("ResNet-50-encoder U-Net: four SGD steps lower the loss") {
  const auto losses = resnet50_unet_losses(4);
  INFO("losses " << losses[0] << " " << losses[1] << " " << losses[2] << " " << losses[3]);
  CHECK(losses[3] < 0.9 * losses[0]);
}

TEST_CASE("ResNet-50-encoder U-Net overfits a tiny dataset") {
  const auto losses = resnet50_unet_losses(50);
  INFO("first loss " << losses.front() << ", last loss " << losses.back());
  CHECK(losses.front() > 0.5);
  CHECK(losses.back() < 0.05);
}
