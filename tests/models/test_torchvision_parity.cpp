// Parity with PyTorch/torchvision on the same weights and input. The
// reference files come from tools/export_torchvision.py (run by
// tests/models/torchvision_parity.sh, which skips when python3-torch is not
// installed); their directory is passed in CRFSEG_PARITY_DIR.
//   - ResNet-50 and VGG-16 encoders in eval mode: every feature map within
//     relative error 1e-4 (max |ours - torch| / max |torch|);
//   - one training-mode step of a small U-Net: the loss, every parameter's
//     gradient (relative error 1e-3) and the updated BN running statistics.
#include <cstdlib>

#include "models/resnet.h"
#include "models/segmenter.h"
#include "models/vgg.h"
#include "tensor/safetensors.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

std::string parity_dir() {
  const char* d = std::getenv("CRFSEG_PARITY_DIR");
  return d ? d : "";
}

// max |a - b| / max |b|: the error relative to the tensor's scale.
double relative_error(const Tensor& a, const Tensor& b) {
  const auto av = values(a), bv = values(b);
  REQUIRE(av.size() == bv.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    err = std::max(err, std::abs(av[i] - bv[i]));
    scale = std::max(scale, std::abs(bv[i]));
  }
  return scale == 0 ? err : err / scale;
}

// The file's tensors whose name starts with `prefix`, with the prefix removed.
std::vector<nn::NamedTensor> with_prefix(const SafetensorsFile& f, const std::string& prefix) {
  std::vector<nn::NamedTensor> out;
  for (const auto& [n, t] : f.tensors) {
    if (n.rfind(prefix, 0) == 0) out.emplace_back(n.substr(prefix.size()), t);
  }
  return out;
}

// The encoder's weights: everything except the input and the feature maps.
std::vector<nn::NamedTensor> encoder_weights(const SafetensorsFile& f) {
  std::vector<nn::NamedTensor> out;
  for (const auto& [n, t] : f.tensors) {
    if (n != "input" && n.rfind("feature.", 0) != 0) out.emplace_back(n, t);
  }
  return out;
}

void check_encoder(models::Encoder& e, const std::string& file) {
  const SafetensorsFile f = load_safetensors(parity_dir() + "/" + file);
  e.load_state_dict(encoder_weights(f), /*strict=*/true);
  e.eval();
  NoGradGuard no_grad;
  const auto feats = e.features(f.at("input"));
  for (size_t i = 0; i < feats.size(); ++i) {
    const Tensor& want = f.at("feature." + std::to_string(i));
    INFO(file << " feature " << i << " " << shape_str(want.shape()));
    REQUIRE(feats[i].shape() == want.shape());
    const double err = relative_error(feats[i], want);
    MESSAGE(file << " feature " << i << ": relative error " << err);
    CHECK(err < 1e-4);
  }
}

}  // namespace

TEST_CASE("torchvision parity: ResNet-50 and VGG-16 feature maps (eval)" *
          doctest::skip(parity_dir().empty())) {
  Generator gen(1);
  models::ResNetEncoder resnet({}, gen);
  check_encoder(resnet, "resnet50.safetensors");
  models::VGGEncoder vgg({}, gen);
  check_encoder(vgg, "vgg16.safetensors");
}

TEST_CASE("PyTorch parity: one U-Net training step's loss and gradients" * doctest::skip(parity_dir().empty())) {
  const SafetensorsFile f = load_safetensors(parity_dir() + "/unet_step.safetensors");
  Generator gen(2);
  models::Segmenter net(models::SegmenterConfig{.encoder = "unet", .in_channels = 3, .num_classes = 3,
                                                .base_width = 8, .depth = 2},
                        gen);
  net.load_state_dict(with_prefix(f, "weight."), /*strict=*/true);
  net.train();
  const Tensor loss = cross_entropy(net(f.at("input")), f.at("target"));
  CHECK(relative_error(loss, f.at("loss")) < 1e-5);
  backward(loss);
  int checked = 0;
  double worst = 0;
  for (const auto& [name, p] : net.named_parameters()) {
    const std::string param_name = name;  // (clang 14 cannot capture structured bindings in INFO)
    INFO(param_name);
    const double err = relative_error(grad(p), f.at("grad." + name));
    CHECK(err < 1e-3);
    worst = std::max(worst, err);
    ++checked;
  }
  MESSAGE("U-Net step: " << checked << " parameter gradients, worst relative error " << worst);
  CHECK(checked == static_cast<int>(with_prefix(f, "grad.").size()));
  for (const auto& [name, t] : with_prefix(f, "after.")) {
    const std::string buffer_name = name;
    INFO(buffer_name);
    for (const auto& [n, b] : net.named_buffers()) {
      if (n == name) CHECK(relative_error(b, t) < 1e-5);
    }
  }
}
