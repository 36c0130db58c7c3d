// U-Net (Ronneberger et al. 2015) as an encoder and a decoder that adapts to
// any encoder.
//
// UNetEncoder: a double 3x3 conv block per level, 2x2 max-pool between
// levels; level i has base * 2^i channels at stride 2^i. Depth 4 and base
// 64 is the classic network.
//
// UNetDecoder: built only from the encoder's channel and stride lists
// (models/encoder.h). From the bottleneck, each stage up-samples by 2
// (2x2 transposed conv, or bilinear + 1x1 conv), concatenates the skip of
// that scale, and applies a double conv. If the finest skip is coarser than
// the input (ResNet: stride 2), a last bilinear up-sampling restores the
// input size. A 1x1 conv gives the class logits.
#pragma once

#include "layers/sequential.h"
#include "models/encoder.h"
#include "tensor/random.h"

namespace crfseg::models {

// conv3x3-BN-ReLU twice (BN and ReLU fused), or conv3x3-ReLU twice without BN.
std::shared_ptr<nn::Sequential> double_conv(int64_t in, int64_t out, bool batch_norm, DType dtype, Generator& gen);

struct UNetEncoderOptions {
  int64_t in_channels = 3;
  int64_t base_width = 64;
  int64_t depth = 4;  // number of down-samplings
  bool batch_norm = true;
  DType dtype = DType::f32;
};

class UNetEncoder : public Encoder {
 public:
  explicit UNetEncoder(const UNetEncoderOptions& options = {}, Generator& gen = default_generator());
  std::vector<Tensor> features(const Tensor& x) override;
  std::vector<int64_t> feature_channels() const override;
  std::vector<int64_t> feature_strides() const override;
  int64_t in_channels() const override { return options.in_channels; }

  UNetEncoderOptions options;
  std::vector<std::shared_ptr<nn::Sequential>> levels;  // registered as "enc0", "enc1", ...
};

enum class UpMode { transposed, bilinear };

struct UNetDecoderOptions {
  std::vector<int64_t> encoder_channels;  // encoder feature_channels(), fine to coarse
  std::vector<int64_t> encoder_strides;   // encoder feature_strides()
  std::vector<int64_t> widths;            // per stage, coarse to fine; empty = the skip channels
  int64_t num_classes = 2;
  UpMode up_mode = UpMode::transposed;
  bool batch_norm = true;
  DType dtype = DType::f32;
};

class UNetDecoder : public nn::Module {
 public:
  explicit UNetDecoder(const UNetDecoderOptions& options, Generator& gen = default_generator());
  // features: the encoder's output; returns logits at `out_h` x `out_w`.
  Tensor forward_features(const std::vector<Tensor>& features, int64_t out_h, int64_t out_w);

  UNetDecoderOptions options;
  std::vector<std::shared_ptr<nn::Module>> ups;             // "up0", ... (coarse to fine)
  std::vector<std::shared_ptr<nn::Sequential>> blocks;      // "block0", ...
  std::shared_ptr<nn::Module> head;                         // "head": 1x1 conv to classes
};

}  // namespace crfseg::models
