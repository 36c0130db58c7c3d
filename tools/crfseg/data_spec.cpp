// --data parsing and splits; see data_spec.h.
#include "tools/crfseg/data_spec.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <tuple>

#include "datasets/folder.h"
#include "datasets/microct.h"
#include "datasets/pets.h"
#include "datasets/subset.h"
#include "datasets/synthetic.h"

namespace crfseg::app {

void add_data_options(ArgParser& p) {
  p.option("--data", "SPEC", "synth", "synth[:N], pets:DIR, microct:DIR or folder:DIR")
      .option("--val-fraction", "F", "0.2", "fraction of the training data held out for validation")
      .option("--pets-border", "MODE", "class", "Oxford-IIIT Pet trimap border: class (3 classes) or ignore (2)")
      .option("--synth-classes", "L", "2", "synthetic data: 2 (binary), 3 or 4 classes")
      .option("--synth-channels", "C", "3", "synthetic data: 1 or 3 channels")
      .option("--synth-size", "S", "64", "synthetic data: image side in pixels")
      .option("--synth-noise", "X", "0.06", "synthetic data: pixel noise standard deviation (0-1 scale)")
      .option("--synth-blur", "X", "1", "synthetic data: image blur sigma in pixels (0: none)")
      .option("--microct-context", "K", "0", "micro-CT 2.5D: K neighbouring slices on each side as channels")
      .option("--channels", "C", "3", "folder data: input channels, 1 or 3");
}

const std::vector<std::string>& data_option_names() {
  static const std::vector<std::string> names = {"--val-fraction", "--pets-border", "--synth-classes",
                                                 "--synth-channels", "--synth-size", "--synth-noise",
                                                 "--synth-blur", "--microct-context",
                                                 "--channels"};
  return names;
}

namespace {

std::pair<std::string, std::string> split_spec(const std::string& spec) {
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) return {spec, ""};
  return {spec.substr(0, colon), spec.substr(colon + 1)};
}

}  // namespace

DataSpec parse_data_spec(const ArgParser& p) {
  DataSpec d;
  d.spec = p.get("--data");
  std::tie(d.kind, d.dir) = split_spec(d.spec);
  d.val_fraction = p.get_double("--val-fraction", 0.001, 0.9);
  if (d.kind == "synth") {
    if (!d.dir.empty()) {
      char* end = nullptr;
      errno = 0;
      d.synth_count = std::strtoll(d.dir.c_str(), &end, 10);
      if (*end != '\0' || errno != 0 || d.synth_count < 1) {
        throw UsageError("--data synth:N needs a positive count, got '" + d.dir + "'");
      }
      d.dir.clear();
    }
    d.synth_classes = p.get_int("--synth-classes", 2, 4);
    d.synth_channels = p.get_int("--synth-channels", 1, 3);
    if (d.synth_channels == 2) throw UsageError("--synth-channels must be 1 or 3, got 2");
    d.synth_size = p.get_int("--synth-size", 8, 4096);
    d.synth_noise = p.get_double("--synth-noise", 0, 1);
    d.synth_blur = p.get_double("--synth-blur", 0, 100);
    return d;
  }
  if (d.kind != "pets" && d.kind != "microct" && d.kind != "folder") {
    throw UsageError("unknown --data kind '" + d.kind + "' (choose synth, pets:DIR, microct:DIR or folder:DIR)");
  }
  if (d.dir.empty()) throw UsageError("--data " + d.kind + ":DIR needs a directory");
  if (d.kind == "pets") {
    const std::string border = p.get("--pets-border");
    if (border == "class") d.pets_border = data::TrimapBorder::as_class;
    else if (border == "ignore") d.pets_border = data::TrimapBorder::ignore;
    else throw UsageError("--pets-border must be class or ignore, got '" + border + "'");
  } else if (d.kind == "microct") {
    d.microct_context = p.get_int("--microct-context", 0, 16);
  } else {  // folder
    d.channels = p.get_int("--channels", 1, 3);
    if (d.channels == 2) throw UsageError("--channels must be 1 or 3, got 2");
  }
  return d;
}

DataSplits open_data(const ArgParser& p, uint64_t seed) {
  const DataSpec d = parse_data_spec(p);
  DataSplits out;
  out.spec = d.spec;
  if (d.kind == "synth") {
    data::SyntheticOptions o;
    o.num_classes = d.synth_classes;
    o.channels = d.synth_channels;
    o.height = o.width = d.synth_size;
    o.noise_std = d.synth_noise;
    o.blur_sigma = d.synth_blur;
    o.size = d.synth_count;
    o.seed = seed;
    out.train = std::make_shared<data::SyntheticDataset>(o);
    o.size = std::max<int64_t>(1, d.synth_count / 4);
    o.seed = seed + 1000003;  // other seeds: images never seen in training
    out.val = std::make_shared<data::SyntheticDataset>(o);
    o.seed = seed + 2000003;
    out.test = std::make_shared<data::SyntheticDataset>(o);
    return out;
  }
  if (d.kind == "pets") {
    data::PetsOptions o;
    o.border = d.pets_border;
    auto trainval = std::make_shared<data::PetsDataset>(d.dir, o);
    const data::TrainValSplit split = data::random_split(trainval, d.val_fraction, seed);
    out.train = split.train;
    out.val = split.val;
    o.split = "test";
    out.test = std::make_shared<data::PetsDataset>(d.dir, o);
    return out;
  }
  if (d.kind == "microct") {
    data::MicroCtOptions o;
    o.context = d.microct_context;
    auto volume = std::make_shared<data::MicroCtDataset>(d.dir, o);
    const int64_t n = volume->size();
    const int64_t n_val = std::min<int64_t>(n - 1, static_cast<int64_t>(std::ceil(d.val_fraction * n)));
    out.train = data::range_subset(volume, 0, n - n_val);
    out.val = n_val > 0 ? data::range_subset(volume, n - n_val, n) : out.train;
    out.test = out.val;
    return out;
  }
  // folder (parse_data_spec accepts no other kind)
  data::FolderOptions o;
  o.channels = d.channels;
  auto all = std::make_shared<data::FolderDataset>(d.dir, o);
  const data::TrainValSplit split = data::random_split(all, d.val_fraction, seed);
  out.train = split.train;
  out.val = split.val;
  out.test = split.val;
  return out;
}

}  // namespace crfseg::app
