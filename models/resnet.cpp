#include "models/resnet.h"

#include "autograd/functions.h"
#include "layers/conv_bn.h"

namespace crfseg::models {

namespace {

std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen) {
  return std::make_shared<nn::Conv2d>(
      nn::Conv2dOptions{.in_channels = in, .out_channels = out, .kernel_h = k, .kernel_w = k, .stride = stride,
                        .padding = k / 2, .bias = false},
      gen);
}

// BatchNorm; with_relu fuses the ReLU that follows it into the same pass.
std::shared_ptr<nn::BatchNorm2d> bn(int64_t c, bool with_relu) {
  return std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions{.num_features = c, .fuse_relu = with_relu});
}

}  // namespace

Bottleneck::Bottleneck(int64_t in, int64_t width, int64_t stride, Generator& gen) : nn::Module("Bottleneck") {
  const int64_t out = width * kExpansion;
  conv1 = register_module("conv1", conv(in, width, 1, 1, gen));
  bn1 = register_module("bn1", bn(width, true));
  conv2 = register_module("conv2", conv(width, width, 3, stride, gen));
  bn2 = register_module("bn2", bn(width, true));
  conv3 = register_module("conv3", conv(width, out, 1, 1, gen));
  bn3 = register_module("bn3", bn(out, false));  // the ReLU comes after the residual add
  if (stride != 1 || in != out) {
    downsample = register_module("downsample", std::make_shared<nn::Sequential>());
    downsample->push_back(conv(in, out, 1, stride, gen));
    downsample->push_back(bn(out, false));
  }
}

Tensor Bottleneck::forward(const Tensor& x) {
  // conv_bn: bn(conv(.)), folded into one convolution for inference (layers/conv_bn.h).
  Tensor y = nn::conv_bn(*conv1, *bn1, x);
  y = nn::conv_bn(*conv2, *bn2, y);
  y = nn::conv_bn(*conv3, *bn3, y);
  const Tensor identity = downsample ? (*downsample)(x) : x;
  return add_relu(y, identity);
}

ResNetEncoder::ResNetEncoder(const ResNetOptions& o, Generator& gen) : Encoder("ResNetEncoder"), options(o) {
  CRFSEG_CHECK(o.in_channels >= 1 && o.blocks.size() == 4, ValueError,
               "ResNetEncoder: expected in_channels >= 1 and 4 stages, got ", o.in_channels, " and ",
               o.blocks.size(), " stages");
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(
                                       nn::Conv2dOptions{.in_channels = o.in_channels, .out_channels = 64,
                                                         .kernel_h = 7, .kernel_w = 7, .stride = 2, .padding = 3,
                                                         .bias = false},
                                       gen));
  bn1 = register_module("bn1", bn(64, true));
  maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(Pool2dArgs{.kernel_h = 3, .kernel_w = 3,
                                                                                  .stride_h = 2, .stride_w = 2,
                                                                                  .pad_h = 1, .pad_w = 1}));
  int64_t in = 64;
  auto stage = [&](const char* name, int64_t width, int64_t blocks, int64_t stride) {
    auto seq = register_module(name, std::make_shared<nn::Sequential>());
    for (int64_t b = 0; b < blocks; ++b) {
      seq->push_back(std::make_shared<Bottleneck>(in, width, b == 0 ? stride : 1, gen));
      in = width * Bottleneck::kExpansion;
    }
    return seq;
  };
  layer1 = stage("layer1", 64, o.blocks[0], 1);
  layer2 = stage("layer2", 128, o.blocks[1], 2);
  layer3 = stage("layer3", 256, o.blocks[2], 2);
  layer4 = stage("layer4", 512, o.blocks[3], 2);
}

std::vector<Tensor> ResNetEncoder::features(const Tensor& x) {
  std::vector<Tensor> f;
  f.push_back(nn::conv_bn(*conv1, *bn1, x));         // stride 2
  f.push_back((*layer1)((*maxpool)(f.back())));      // stride 4
  f.push_back((*layer2)(f.back()));                  // stride 8
  f.push_back((*layer3)(f.back()));                  // stride 16
  f.push_back((*layer4)(f.back()));                  // stride 32
  return f;
}

}  // namespace crfseg::models
