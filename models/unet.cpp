#include "models/unet.h"

#include "autograd/functions.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/norm.h"
#include "layers/pooling.h"
#include "tensor/factory.h"

namespace crfseg::models {

std::shared_ptr<nn::Sequential> double_conv(int64_t in, int64_t out, bool batch_norm, DType dtype, Generator& gen) {
  auto seq = std::make_shared<nn::Sequential>();
  for (int i = 0; i < 2; ++i) {
    // With BN the conv bias is redundant (BN subtracts the mean): no bias.
    seq->push_back(std::make_shared<nn::Conv2d>(
        nn::Conv2dOptions{.in_channels = i == 0 ? in : out, .out_channels = out, .kernel_h = 3, .kernel_w = 3,
                          .padding = 1, .bias = !batch_norm, .dtype = dtype},
        gen));
    if (batch_norm) {
      seq->push_back(std::make_shared<nn::BatchNorm2d>(
          nn::BatchNorm2dOptions{.num_features = out, .fuse_relu = true, .dtype = dtype}));
    } else {
      seq->push_back(std::make_shared<nn::ReLU>());
    }
  }
  return seq;
}

UNetEncoder::UNetEncoder(const UNetEncoderOptions& o, Generator& gen) : Encoder("UNetEncoder"), options(o) {
  CRFSEG_CHECK(o.in_channels >= 1 && o.base_width >= 1 && o.depth >= 1 && o.depth <= 8, ValueError,
               "UNetEncoder: expected in_channels >= 1, base_width >= 1 and depth in [1, 8], got ", o.in_channels,
               ", ", o.base_width, ", ", o.depth);
  int64_t in = o.in_channels;
  for (int64_t i = 0; i <= o.depth; ++i) {
    const int64_t out = o.base_width << i;
    levels.push_back(register_module("enc" + std::to_string(i), double_conv(in, out, o.batch_norm, o.dtype, gen)));
    in = out;
  }
}

std::vector<int64_t> UNetEncoder::feature_channels() const {
  std::vector<int64_t> c;
  for (int64_t i = 0; i <= options.depth; ++i) c.push_back(options.base_width << i);
  return c;
}

std::vector<int64_t> UNetEncoder::feature_strides() const {
  std::vector<int64_t> s;
  for (int64_t i = 0; i <= options.depth; ++i) s.push_back(int64_t(1) << i);
  return s;
}

std::vector<Tensor> UNetEncoder::features(const Tensor& x) {
  std::vector<Tensor> f;
  Tensor y = x;
  for (size_t i = 0; i < levels.size(); ++i) {
    if (i > 0) y = max_pool2d(y, Pool2dArgs{});
    y = (*levels[i])(y);
    f.push_back(y);
  }
  return f;
}

namespace {

// Bilinear x2 up-sampling followed by a 1x1 conv (the channel reduction a
// transposed conv would do).
class BilinearUp : public nn::Module {
 public:
  BilinearUp(int64_t in, int64_t out, DType dtype, Generator& gen) : nn::Module("BilinearUp") {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(
                                       nn::Conv2dOptions{.in_channels = in, .out_channels = out, .kernel_h = 1,
                                                         .kernel_w = 1, .dtype = dtype},
                                       gen));
  }
  Tensor forward(const Tensor& x) override {
    return (*conv)(upsample2d(x, x.size(2) * 2, x.size(3) * 2, UpsampleMode::bilinear));
  }
  std::shared_ptr<nn::Conv2d> conv;
};

// Crops (bottom/right) or zero-pads `x` to h x w, so a skip and an
// up-sampled map always line up even for sizes the encoder floored.
Tensor match_size(const Tensor& x, int64_t h, int64_t w) {
  Tensor y = x;
  if (y.size(2) > h) y = slice(y, 2, 0, h);
  if (y.size(3) > w) y = slice(y, 3, 0, w);
  if (y.size(2) < h) y = concat({y, zeros({y.size(0), y.size(1), h - y.size(2), y.size(3)}, y.options())}, 2);
  if (y.size(3) < w) y = concat({y, zeros({y.size(0), y.size(1), y.size(2), w - y.size(3)}, y.options())}, 3);
  return y;
}

}  // namespace

UNetDecoder::UNetDecoder(const UNetDecoderOptions& o, Generator& gen) : nn::Module("UNetDecoder"), options(o) {
  const size_t levels = o.encoder_channels.size();
  CRFSEG_CHECK(levels >= 2 && o.encoder_strides.size() == levels, ValueError,
               "UNetDecoder: expected >= 2 encoder levels with one stride each, got ", levels, " channel counts and ",
               o.encoder_strides.size(), " strides");
  const size_t stages = levels - 1;
  if (options.widths.empty()) {
    for (size_t s = 0; s < stages; ++s) options.widths.push_back(o.encoder_channels[stages - 1 - s]);
  }
  CRFSEG_CHECK(options.widths.size() == stages && o.num_classes >= 1, ValueError, "UNetDecoder: expected ", stages,
               " stage widths and num_classes >= 1, got ", options.widths.size(), " and ", o.num_classes);
  for (size_t s = 1; s < levels; ++s) {
    CRFSEG_CHECK(o.encoder_strides[s] == 2 * o.encoder_strides[s - 1], ValueError,
                 "UNetDecoder: expected each encoder level to halve the resolution, got strides ",
                 o.encoder_strides[s - 1], " then ", o.encoder_strides[s]);
  }
  int64_t in = o.encoder_channels.back();
  for (size_t s = 0; s < stages; ++s) {
    const int64_t width = options.widths[s], skip = o.encoder_channels[stages - 1 - s];
    std::shared_ptr<nn::Module> up;
    if (o.up_mode == UpMode::transposed) {
      up = std::make_shared<nn::ConvTranspose2d>(nn::ConvTranspose2dOptions{.in_channels = in, .out_channels = width,
                                                                           .dtype = o.dtype},
                                                 gen);
    } else {
      up = std::make_shared<BilinearUp>(in, width, o.dtype, gen);
    }
    ups.push_back(register_module("up" + std::to_string(s), up));
    blocks.push_back(register_module("block" + std::to_string(s),
                                     double_conv(width + skip, width, o.batch_norm, o.dtype, gen)));
    in = width;
  }
  head = register_module("head", std::make_shared<nn::Conv2d>(
                                     nn::Conv2dOptions{.in_channels = in, .out_channels = o.num_classes,
                                                       .kernel_h = 1, .kernel_w = 1, .dtype = o.dtype},
                                     gen));
}

Tensor UNetDecoder::forward_features(const std::vector<Tensor>& f, int64_t out_h, int64_t out_w) {
  CRFSEG_CHECK(f.size() == options.encoder_channels.size(), ShapeError, "UNetDecoder: expected ",
               options.encoder_channels.size(), " feature maps, got ", f.size());
  const size_t stages = f.size() - 1;
  Tensor y = f.back();
  for (size_t s = 0; s < stages; ++s) {
    const Tensor& skip = f[stages - 1 - s];
    y = match_size((*ups[s])(y), skip.size(2), skip.size(3));
    y = (*blocks[s])(concat({skip, y}, 1));
  }
  if (y.size(2) != out_h || y.size(3) != out_w) y = upsample2d(y, out_h, out_w, UpsampleMode::bilinear);
  return (*head)(y);
}

}  // namespace crfseg::models
