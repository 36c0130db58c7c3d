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

// Opens the dataset named by --data with the data options on `p`. Throws
// UsageError for a malformed spec and the datasets' IOError/ValueError for
// missing folders, files or split lists.
DataSplits open_data(const ArgParser& p, uint64_t seed);

}  // namespace crfseg::app
