#include "models/segmenter.h"

#include "autograd/functions.h"
#include "autograd/profiler.h"
#include "models/resnet.h"
#include "models/vgg.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

#include <cmath>

namespace crfseg::models {

std::shared_ptr<Encoder> make_encoder(const SegmenterConfig& c, Generator& gen) {
  if (c.encoder == "unet") {
    return std::make_shared<UNetEncoder>(UNetEncoderOptions{.in_channels = c.in_channels, .base_width = c.base_width,
                                                            .depth = c.depth, .batch_norm = c.batch_norm,
                                                            .dtype = c.dtype},
                                         gen);
  }
  if (c.encoder == "resnet50") {
    return std::make_shared<ResNetEncoder>(ResNetOptions{.in_channels = c.in_channels, .dtype = c.dtype}, gen);
  }
  if (c.encoder == "vgg16" || c.encoder == "vgg16_bn") {
    return std::make_shared<VGGEncoder>(
        VGGOptions{.in_channels = c.in_channels, .batch_norm = c.encoder == "vgg16_bn", .dtype = c.dtype}, gen);
  }
  CRFSEG_CHECK(false, ValueError, "make_encoder: unknown encoder \"", c.encoder,
               "\"; choose unet, resnet50, vgg16 or vgg16_bn");
  return nullptr;
}

Segmenter::Segmenter(const SegmenterConfig& c, Generator& gen) : nn::Module("Segmenter"), config(c) {
  CRFSEG_CHECK(c.input_mean.size() == c.input_std.size() &&
                   (c.input_mean.empty() || static_cast<int64_t>(c.input_mean.size()) == c.in_channels),
               ValueError, "Segmenter: input_mean and input_std need one value per input channel (", c.in_channels,
               "), got ", c.input_mean.size(), " and ", c.input_std.size());
  for (double s : c.input_std) {
    CRFSEG_CHECK(s > 0 && std::isfinite(s), ValueError, "Segmenter: input_std values must be > 0, got ", s);
  }
  if (!c.input_mean.empty()) {
    const Shape shape = {1, c.in_channels, 1, 1};
    input_mean_ = register_buffer("input_mean", ops::to_dtype(from_vector<double>(c.input_mean, shape), c.dtype));
    input_std_ = register_buffer("input_std", ops::to_dtype(from_vector<double>(c.input_std, shape), c.dtype));
  }
  encoder = register_module("encoder", make_encoder(c, gen));
  decoder = register_module(
      "decoder", std::make_shared<UNetDecoder>(UNetDecoderOptions{.encoder_channels = encoder->feature_channels(),
                                                                  .encoder_strides = encoder->feature_strides(),
                                                                  .widths = c.decoder_widths,
                                                                  .num_classes = c.num_classes,
                                                                  .up_mode = c.up_mode,
                                                                  .batch_norm = c.batch_norm,
                                                                  .dtype = c.dtype},
                                               gen));
}

namespace {

// Zero-pads x [N, C, H, W] on the bottom and right to multiples of m (the
// zeros on x's device: concat takes one device).
Tensor pad_to_multiple(const Tensor& x, int64_t m) {
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t ph = (m - h % m) % m, pw = (m - w % m) % m;
  Tensor y = x;
  if (ph > 0) y = concat({y, zeros({x.size(0), x.size(1), ph, w}, x.options())}, 2);
  if (pw > 0) y = concat({y, zeros({x.size(0), x.size(1), h + ph, pw}, x.options())}, 3);
  return y;
}

}  // namespace

Tensor Segmenter::forward(const Tensor& x) {
  CRFSEG_CHECK(x.dim() == 4 && x.size(1) == config.in_channels, ShapeError, "Segmenter: expected input [N, ",
               config.in_channels, ", H, W], got ", shape_str(x.shape()));
  const int64_t h = x.size(2), w = x.size(3);
  const Tensor normalised = input_mean_.defined() ? (x - input_mean_) / input_std_ : x;
  const Tensor padded = pad_to_multiple(normalised, encoder->size_multiple());
  Tensor logits = decoder->forward_features(encoder->features(padded), padded.size(2), padded.size(3));
  if (padded.size(2) != h) logits = slice(logits, 2, 0, h);
  if (padded.size(3) != w) logits = slice(logits, 3, 0, w);
  if (!final_layer_enabled()) return logits;
  // The final layer takes two inputs, so it is not a Module call: it is
  // timed (and its backward labelled) as a scope of its own.
  const profiler::Scope scope(final_module_ ? final_module_->type_name().c_str() : "final layer");
  return final_fn_(logits, x);
}

void Segmenter::set_final_layer(std::shared_ptr<nn::Module> module, FinalLayer fn) {
  CRFSEG_CHECK(final_module_ == nullptr, ValueError, "Segmenter: a final layer is already installed");
  if (module) final_module_ = register_module("final", std::move(module));
  final_fn_ = std::move(fn);
}

}  // namespace crfseg::models
