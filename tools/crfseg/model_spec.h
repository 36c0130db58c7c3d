// The model a crfseg run trains: a Segmenter (encoder + U-Net decoder) and an
// optional CRF-RNN final layer, described by command-line options and stored
// in checkpoint metadata ("model.*" keys), so `crfseg eval` and `crfseg
// predict` rebuild the exact model from a checkpoint alone.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "crf/crf_rnn.h"
#include "models/segmenter.h"
#include "tools/crfseg/args.h"

namespace crfseg::app {

struct ModelSpec {
  models::SegmenterConfig segmenter;
  bool crf = false;
  crf::CrfRnnOptions crf_options;  // num_classes and image_channels follow the segmenter
};

// Declares --encoder, --base, --depth, --up, --no-batch-norm, --imagenet-norm,
// --crf, --crf-iters, --crf-eval-iters, --crf-theta-alpha/beta/gamma and
// --crf-mode on `p`.
void add_model_options(ArgParser& p);
// Reads them back; in_channels and num_classes come from the dataset.
// Throws UsageError for bad values (e.g. an unknown encoder).
ModelSpec model_spec_from(const ArgParser& p, int64_t in_channels, int64_t num_classes);

// "model.encoder" = "unet", ... and back. from_metadata throws IOError naming
// the missing or malformed key.
std::map<std::string, std::string> to_metadata(const ModelSpec& spec);
ModelSpec model_spec_from_metadata(const std::map<std::string, std::string>& metadata);

// The Segmenter with the CRF installed as its final layer when spec.crf.
// Images reach the CRF on the dataset's [0, 1] scale (image_scale 255).
std::shared_ptr<models::Segmenter> build_model(const ModelSpec& spec, Generator& gen);

// Host images to `device` for net's forward, on CUDA without waiting for
// the work queued there (ops::upload_ahead). When net's CRF-RNN final layer
// will run on a CUDA device, it also starts building the images' bilateral
// lattices on a host thread from the host copy (CrfRnn::prefetch_lattices),
// so the build overlaps what the GPU does before that forward (train and
// evaluate read one batch ahead for this).
Tensor images_to_device(const Tensor& host_images, Device device, const models::Segmenter& net);

// One line: "unet (base 64, depth 4) + CRF-RNN (5/10 iterations, theta 160/3/3), 3 -> 3 classes".
std::string describe(const ModelSpec& spec);

}  // namespace crfseg::app
