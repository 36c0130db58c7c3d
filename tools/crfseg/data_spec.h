// --data SPEC: which dataset a run uses, and its train / validation / test
// splits. Images always come on the [0, 1] scale ("unit" normalisation): the
// model normalises inside itself when asked (--imagenet-norm) and the CRF
// reads the raw image.
//
//   synth[:N]     the embedded synthetic shapes (N training images, default
//                 400); validation and test are N/4 images each from other
//                 seeds, so they are held out by construction
//   pets:DIR      Oxford-IIIT Pet: trainval.txt split into train/validation
//                 (--val-fraction), test.txt for testing
//   microct:DIR   a slice stack (DIR/images, DIR/labels): the last
//                 --val-fraction of the slices validate (a contiguous block,
//                 so neighbouring slices do not leak), the rest train;
//                 testing uses the validation block
//   folder:DIR    DIR/images + DIR/masks, split by --val-fraction (test =
//                 validation)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/pets.h"
#include "tools/crfseg/args.h"

namespace crfseg::app {

void add_data_options(ArgParser& p);
// The options add_data_options declares besides --data: train stores their
// values in the checkpoint so eval rebuilds the same splits.
const std::vector<std::string>& data_option_names();

struct DataSplits {
  std::string spec;  // the --data value, for logs and checkpoint metadata
  std::shared_ptr<const data::Dataset> train, val, test;
};

// --data and the data options, checked but not yet opened.
struct DataSpec {
  std::string spec;  // the --data value
  std::string kind;  // synth, pets, microct or folder
  std::string dir;   // the DIR of pets:/microct:/folder: (empty for synth)
  double val_fraction = 0.2;
  int64_t synth_count = 400, synth_classes = 2, synth_channels = 3, synth_size = 64;
  double synth_noise = 0.06, synth_blur = 1.0;
  data::TrimapBorder pets_border = data::TrimapBorder::as_class;
  int64_t microct_context = 0;
  int64_t channels = 3;  // folder data
};

// Parses --data and the options of its kind (the others keep their
// defaults) without touching the file system. Throws UsageError for a
// malformed spec or value.
DataSpec parse_data_spec(const ArgParser& p);

// Opens the dataset named by --data with the data options on `p`. Throws
// UsageError for a malformed spec (parse_data_spec) and the datasets'
// IOError/ValueError for missing folders, files or split lists.
DataSplits open_data(const ArgParser& p, uint64_t seed);

}  // namespace crfseg::app
