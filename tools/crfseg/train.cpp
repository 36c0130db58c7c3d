// `crfseg train`: trains a Segmenter (optionally with the CRF-RNN layer) on
// one dataset, validating after every epoch.
//
// Files in --out DIR:
//   last.safetensors   training checkpoint, rewritten atomically after every
//                      epoch and every --checkpoint-every batches
//   best.safetensors   the checkpoint with the best validation mean IoU
//   metrics.csv        one row per epoch (tools/crfseg/report.h)
//   curves.svg         loss and mean IoU curves
// --resume continues from last.safetensors: the model is rebuilt from the
// checkpoint's metadata, the optimizer, schedule and the partial epoch's
// statistics are restored, and the data loader restarts the interrupted
// epoch at the next batch (its order and augmentation are pure functions of
// (seed, epoch, index)), so the run ends with the same weights as one that
// was never interrupted (tests/tools/test_train.sh checks this).
// A non-finite loss or gradient stops the run before the step is applied,
// with a message naming the epoch, batch and step, the first layer whose
// output turned non-finite (or the parameters whose gradients did), and the
// last good checkpoint, which is never overwritten with non-finite state.
#include <omp.h>
#include <signal.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <utility>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include "crf/bilateral_prefetch.h"
#include "layers/nonfinite.h"
#include "layers/optim/adam.h"
#include "layers/optim/clip_grad.h"
#include "layers/optim/lr_scheduler.h"
#include "layers/optim/sgd.h"
#include "models/checkpoint.h"
#include "tensor/cuda_memory.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/data_parallel.h"
#include "tools/crfseg/data_spec.h"
#include "tools/crfseg/device_option.h"
#include "tools/crfseg/evaluate.h"
#include "tools/crfseg/join.h"
#include "tools/crfseg/model_spec.h"
#include "tools/crfseg/progress.h"
#include "tools/crfseg/report.h"

namespace crfseg::app {

namespace fs = std::filesystem;

ArgParser train_parser() {
  ArgParser p("crfseg train", "Trains a segmentation model, validating after every epoch.");
  add_data_options(p);
  add_model_options(p);
  p.option("--size", "S", "64", "train and validate on S x S images (resized after augmentation); 0 = native size")
      .option("--batch", "B", "8", "batch size")
      .option("--epochs", "E", "10", "epochs")
      .option("--optimizer", "NAME", "adamw", "adamw, adam or sgd (with --momentum)")
      .option("--lr", "X", "0.001", "learning rate")
      .option("--weight-decay", "X", "0.0001", "weight decay (decoupled for adamw, L2 otherwise)")
      .option("--momentum", "X", "0.9", "sgd momentum")
      .option("--schedule", "NAME", "cosine", "learning-rate schedule per epoch: cosine, step or none")
      .option("--step-size", "E", "10", "step schedule: epochs between decays")
      .option("--gamma", "X", "0.1", "step schedule: decay factor")
      .option("--warmup", "E", "0", "epochs of linear warm-up before the schedule")
      .option("--clip", "X", "0", "clip the gradient norm to X (0: off)")
      .option("--crf-warmup", "E", "0", "with --crf: train the network alone for the first E epochs, then with the CRF")
      .option("--crf-lr-mult", "X", "1", "with --crf: learning rate of the CRF's 3 L x L matrices = X * --lr")
      .option("--loss", "NAME", "ce", "ce, dice or ce+dice")
      .option("--augment", "NAME", "flips", "none, flips (h/v flips and 90-degree turns) or full (+ scale and crop)")
      .option("--workers", "N", "2", "data-loading threads (0: load in the training thread)")
      .option("--threads", "N", "0", "OpenMP threads for the kernels (0: OMP_NUM_THREADS or all cores)")
      .option("--device", "NAME", "cpu", "cpu, cuda or cuda:N (several ranks with cuda: one GPU each)")
      .option("--precision", "P", "fp32", "CUDA GEMMs and convolutions: fp32, or tf32 / bf16 tensor-core inputs with FP32 accumulation")
      .option("--dist", "NAME", "auto", "data parallel: auto (MPI when started by mpirun/srun), none, mpi or nccl")
      .option("--bucket-mb", "X", "25", "data parallel: gradient all-reduce bucket size in MiB")
      .flag("--sync-bn", "data parallel: batch-norm statistics over all ranks' batches (default: per rank)")
      .option("--seed", "N", "0", "seed of the initial weights, the data order and the augmentation")
      .option("--out", "DIR", "runs/train", "output directory")
      .flag("--resume", "continue from DIR/last.safetensors")
      .flag("--overwrite", "start a new run in a DIR that holds one (its checkpoints are replaced)")
      .option("--init", "FILE", "", "initial weights: a crfseg checkpoint, or encoder weights (export_torchvision.py)")
      .option("--checkpoint-every", "N", "0", "also checkpoint every N batches (0: at epoch ends only)")
      .option("--stop-after", "N", "0", "stop after N optimizer steps, as if killed (for resume tests; 0: off)")
      .option("--profile", "N", "0",
              "time N steps (from the second) per layer and op; table in DIR/profile.md (0: off)")
      .flag("--quiet", "no progress lines");
  return p;
}

namespace {

std::unique_ptr<optim::Optimizer> make_optimizer(const ArgParser& p, const std::vector<Tensor>& params) {
  const std::string name = p.get("--optimizer");
  const double lr = p.get_double("--lr", 0.0, 1e6), wd = p.get_double("--weight-decay", 0.0, 1.0);
  if (name == "adamw") return std::make_unique<optim::AdamW>(params, optim::AdamWOptions{.lr = lr, .weight_decay = wd});
  if (name == "adam") return std::make_unique<optim::Adam>(params, optim::AdamOptions{.lr = lr, .weight_decay = wd});
  if (name == "sgd") {
    return std::make_unique<optim::SGD>(
        params, optim::SGDOptions{.lr = lr, .momentum = p.get_double("--momentum", 0.0, 1.0), .weight_decay = wd});
  }
  throw UsageError("--optimizer must be adamw, adam or sgd, got '" + name + "'");
}

std::unique_ptr<optim::LRScheduler> make_scheduler(const ArgParser& p, optim::Optimizer& opt, int64_t epochs) {
  const std::string name = p.get("--schedule");
  const optim::LinearWarmup warmup{.steps = p.get_int("--warmup", 0, 10000)};
  if (name == "cosine") {
    return std::make_unique<optim::CosineAnnealingLR>(
        opt, optim::CosineAnnealingLROptions{.T_max = std::max<int64_t>(1, epochs - warmup.steps), .warmup = warmup});
  }
  if (name == "step" || name == "none") {
    const bool none = name == "none";
    return std::make_unique<optim::StepLR>(
        opt, optim::StepLROptions{.step_size = none ? 1 : p.get_int("--step-size", 1),
                                  .gamma = none ? 1.0 : p.get_double("--gamma", 0.0, 1.0), .warmup = warmup});
  }
  throw UsageError("--schedule must be cosine, step or none, got '" + name + "'");
}

std::optional<data::AugmentOptions> make_augment(const std::string& name, int64_t size) {
  if (name == "none") return std::nullopt;
  data::AugmentOptions a;
  a.hflip = a.vflip = a.rotate90 = true;
  if (name == "flips") return a;
  if (name == "full") {
    a.scale_min = 0.75, a.scale_max = 1.25;
    a.crop_height = a.crop_width = size;
    return a;
  }
  throw UsageError("--augment must be none, flips or full, got '" + name + "'");
}

std::vector<int64_t> split_counts(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string cell;
  while (std::getline(ss, cell, ',')) out.push_back(std::strtoll(cell.c_str(), nullptr, 10));
  return out;
}

std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "NaN";  // printf may write "-nan"
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Where a non-finite loss came from, for the divergence message: the first
// layer whose output turned non-finite (found by re-running the forward with
// every module's output checked; the CRF's output is the model's logits),
// and any weights that already hold NaN or infinity.
std::string locate_nonfinite(nn::Module& net, const Tensor& logits, const std::function<void()>& forward) {
  std::string where;
  if (const auto layer = nn::first_nonfinite_output(net, forward)) {
    where = "; the first non-finite activation is the output of " + *layer;
  } else if (!nn::all_finite(logits)) {
    where = "; the model's output (its final layer) is the first non-finite activation";
  } else {
    where = "; every activation is finite: the loss itself overflowed";
  }
  return where + nn::describe_names("non-finite weights", nn::nonfinite_parameters(net));
}

// A process killed while writing a checkpoint leaves "<name>.tmp.<pid>"
// behind (save_safetensors writes there, then renames). The files of dead
// processes are removed; a live writer's are left alone.
void remove_partial_checkpoints(const fs::path& out) {
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.find(".safetensors.tmp.");
    if (at == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + at + 17, nullptr, 10);
    if (pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)) continue;
    std::error_code ec;
    fs::remove(entry.path(), ec);
    std::fprintf(stderr, "crfseg train: removed a partial checkpoint %s (left by an interrupted write)\n",
                 entry.path().c_str());
  }
}

// The statistics of the epoch in progress (restored on resume).
struct EpochStats {
  double loss_sum = 0, seconds = 0;
  int64_t images = 0;
  ConfusionMatrix confusion;
};

}  // namespace

int run_train(const std::vector<std::string>& args) {
  ArgParser p = train_parser();
  if (!p.parse(args)) {
    std::printf("%s", p.help().c_str());
    return 0;
  }
  Device device = parse_device_option(p.get("--device"));
  DataParallel dp(p.get("--dist"));  // rank 0 of 1 unless started by mpirun/srun (see data_parallel.h)
  // Several ranks with a bare "cuda": each rank takes its own GPU (local
  // rank mod the GPUs visible; over MPI ranks may share one, NCCL refuses
  // that); "cuda:N" pins every rank to N, which
  // NCCL (one GPU per rank, chosen by it) cannot do. Every rank decides from
  // the same arguments, so all refuse together.
  if (device.is_cuda() && dp.size() > 1 && p.get("--device") != "cuda" && dp.reduces_on_device()) {
    throw UsageError("--device " + p.get("--device") + " with --dist " + dp.backend() +
                     ": NCCL puts each rank on its own GPU (local rank mod the GPUs visible); pass --device cuda");
  }
  if (device.is_cuda() && dp.size() > 1 && p.get("--device") == "cuda" && cuda::device_count() > 0) {
    device = Device::cuda(dp.gpu_for_rank(cuda::device_count()));
  }
  check_device_usable(device);
  const cuda::MatmulPrecision precision = parse_precision_option(p.get("--precision"), device);  // before any work
  const cuda::MatmulPrecisionGuard precision_guard(precision);
  if (const int64_t threads = p.get_int("--threads", 0, 1024); threads > 0) omp_set_num_threads(static_cast<int>(threads));
  const uint64_t seed = static_cast<uint64_t>(p.get_int("--seed", 0));
  const int64_t epochs = p.get_int("--epochs", 1, 100000), size = p.get_int("--size", 0, 8192);
  const int64_t batch_size = p.get_int("--batch", 1, 4096), workers = p.get_int("--workers", 0, 64);
  const int64_t checkpoint_every = p.get_int("--checkpoint-every", 0), stop_after = p.get_int("--stop-after", 0);
  const double clip = p.get_double("--clip", 0.0);
  const int64_t profile_steps = p.get_int("--profile", 0, 100000);
  const int64_t crf_warmup = p.get_int("--crf-warmup", 0, 100000);
  const bool quiet = p.flag_set("--quiet") || !dp.is_root();  // only rank 0 prints
  const fs::path out = p.get("--out");
  const std::string last_path = (out / "last.safetensors").string(), best_path = (out / "best.safetensors").string();

  if (!p.flag_set("--resume") && !p.flag_set("--overwrite") && fs::exists(last_path)) {
    throw UsageError(out.string() + " already holds a run (" + last_path +
                     "); pass --resume to continue it, --overwrite to start over, or another --out");
  }
  const DataSplits data = open_data(p, seed);
  const data::Dataset& train_set = *data.train;
  std::string loss_name = p.get("--loss");  // a resumed run's own unless given (below)

  // The model: from the checkpoint when resuming, else from the options.
  ModelSpec spec;
  int64_t global_batch = batch_size * dp.size();
  std::optional<SafetensorsFile> resume_file;  // read once: its metadata here, its tensors below
  if (p.flag_set("--resume")) {
    if (!fs::exists(last_path)) {
      throw IOError("--resume: no checkpoint to resume from at " + last_path);
    }
    resume_file = load_safetensors(last_path);
    std::map<std::string, std::string> prefixed;  // the checkpoint's user metadata, "user." removed
    for (const auto& [k, v] : resume_file->metadata) {
      if (k.rfind("user.", 0) == 0) prefixed[k.substr(5)] = v;
    }
    spec = model_spec_from_metadata(prefixed);
    // The data order and the splits depend on --data and --seed: a resumed
    // run must use the ones it started with.
    for (const auto& [key, now] : {std::pair<std::string, std::string>{"data", data.spec},
                                   std::pair<std::string, std::string>{"seed", std::to_string(seed)}}) {
      if (prefixed.count(key) && prefixed.at(key) != now) {
        throw UsageError("--resume: the run in " + out.string() + " used --" + key + " " + prefixed.at(key) +
                         ", not " + now);
      }
    }
    // The loss is the run's: taken from the checkpoint, and a different
    // --loss given now is refused rather than silently changing the objective.
    if (prefixed.count("loss")) {
      if (p.given("--loss") && parse_loss(loss_name, train_set.ignore_index()).kind != prefixed.at("loss")) {
        throw UsageError("--resume: the run in " + out.string() + " used --loss " + prefixed.at("loss") + ", not " +
                         loss_name);
      }
      loss_name = prefixed.at("loss");
    }
    // The global batch (--batch times the ranks) fixes the data order: a run
    // resumed on another number of ranks keeps it and splits it anew.
    if (prefixed.count("train.global_batch")) {
      global_batch = std::strtoll(prefixed.at("train.global_batch").c_str(), nullptr, 10);
    }
  } else {
    spec = model_spec_from(p, train_set.in_channels(), train_set.num_classes());
  }
  if (global_batch < dp.size()) {
    throw UsageError("the global batch " + std::to_string(global_batch) + " cannot be split over " +
                     std::to_string(dp.size()) + " ranks");
  }
  if (spec.segmenter.in_channels != train_set.in_channels() || spec.segmenter.num_classes != train_set.num_classes()) {
    throw ValueError("the model takes " + std::to_string(spec.segmenter.in_channels) + " channels and " +
                     std::to_string(spec.segmenter.num_classes) + " classes but the data has " +
                     std::to_string(train_set.in_channels()) + " and " + std::to_string(train_set.num_classes()));
  }
  const LossSpec loss_spec = parse_loss(loss_name, train_set.ignore_index());
  Generator gen(seed);
  std::shared_ptr<models::Segmenter> net = build_model(spec, gen);
  if (const std::string init = p.get("--init"); !init.empty() && !p.flag_set("--resume")) {
    const SafetensorsFile f = load_safetensors(init);
    if (f.metadata.count("format") != 0) models::load_weights(f, *net);  // a crfseg checkpoint: the whole model
    else models::load_weights(f, *net->encoder);                         // encoder weights
  }
  if (device.is_cuda()) net->to(device);  // before the optimizer, whose state is created on the parameters' device
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(p, net->parameters());
  if (const double mult = p.get_double("--crf-lr-mult", 0.0, 1e6); mult != 1.0) {
    if (!spec.crf) throw UsageError("--crf-lr-mult needs a model with --crf");
    for (const Tensor& t : net->child("final").parameters()) opt->set_lr_scale(t, mult);
  }
  std::unique_ptr<optim::LRScheduler> sched = make_scheduler(p, *opt, epochs);
  const models::TrainingParts parts{net.get(), opt.get(), sched.get(), &gen};

  data::LoaderOptions lo{.batch_size = global_batch, .shuffle = true, .drop_last = false, .seed = seed,
                         .num_workers = workers, .height = size, .width = size,
                         .augment = make_augment(p.get("--augment"), size)};
  lo.num_shards = dp.size(), lo.shard = dp.rank();  // this rank's slice of every global batch
  data::DataLoader train_loader(data.train, lo);
  data::LoaderOptions vo = lo;
  vo.shuffle = false;
  vo.augment = std::nullopt;
  vo.batch_size = std::max<int64_t>(1, global_batch / dp.size()), vo.num_shards = 1, vo.shard = 0;  // rank 0 validates
  data::DataLoader val_loader(data.val, vo);

  create_output_dir(out.string(), "crfseg train");
  // Rank 0 alone writes checkpoints, and only it can tell whether a writer's
  // pid is alive (other ranks may run on other nodes).
  if (dp.is_root()) remove_partial_checkpoints(out);
  const std::vector<std::string> class_names = train_set.class_names();
  MetricsLog log((out / "metrics.csv").string(), class_names);
  int64_t epoch = 0, first_batch = 0, step = 0;
  double best = -1;
  EpochStats stats{0, 0, 0, ConfusionMatrix(train_set.num_classes(), train_set.ignore_index())};
  if (p.flag_set("--resume")) {
    const models::LoadedCheckpoint ck = models::load_training_checkpoint(*resume_file, parts);
    resume_file.reset();  // the tensors now live in the model and optimizer
    epoch = ck.progress.epoch;
    step = ck.progress.step;
    best = std::isnan(ck.progress.best_metric) ? -1 : ck.progress.best_metric;
    const auto& m = ck.user_metadata;
    first_batch = std::strtoll(m.at("train.batch").c_str(), nullptr, 10);
    stats.loss_sum = std::strtod(m.at("train.loss_sum").c_str(), nullptr);
    stats.seconds = std::strtod(m.at("train.seconds").c_str(), nullptr);
    stats.images = std::strtoll(m.at("train.images").c_str(), nullptr, 10);
    stats.confusion.set_counts(split_counts(m.at("train.confusion")));
    log.load(epoch);
    if (dp.is_root()) {
      std::fprintf(stderr, "crfseg train: resuming %s at epoch %lld, batch %lld (step %lld)\n", last_path.c_str(),
                   static_cast<long long>(epoch + 1), static_cast<long long>(first_batch),
                   static_cast<long long>(step));
    }
  }

  dp.attach(*net, p.get_double("--bucket-mb", 0.0, 1e6), p.flag_set("--sync-bn"));  // rank 0's weights to all, gradient hooks

  auto save = [&](const std::string& path, int64_t batches_done) {
    if (!dp.is_root()) return;  // the ranks' weights are identical: rank 0 writes
    // The optimizer's state too: Adam's second moment overflows to inf in
    // f32 for a gradient element past ~5.8e20 (the f64 gradient norm stays
    // finite), and that parameter then stops moving.
    auto check_finite = [&](const char* whose, const std::string& name, const Tensor& t) {
      if (!nn::all_finite(t)) {
        throw ValueError(std::string(whose) + name + " holds non-finite values after " + std::to_string(step) +
                         " steps; not overwriting " + path + " (the last good checkpoint; try a lower --lr or --clip)");
      }
    };
    for (const auto& [name, t] : net->state_dict()) check_finite("the model's ", name, t);
    for (const auto& [name, t] : opt->state_tensors()) check_finite("the optimizer's ", name, t);
    std::map<std::string, std::string> meta = to_metadata(spec);
    meta["data"] = data.spec;
    meta["seed"] = std::to_string(seed);
    meta["size"] = std::to_string(size);
    meta["loss"] = loss_spec.kind;
    for (const std::string& key : data_option_names()) {
      meta["arg" + key] = p.get(key);
    }
    meta["train.batch"] = std::to_string(batches_done);
    meta["train.global_batch"] = std::to_string(global_batch);
    meta["train.loss_sum"] = fmt("%.17g", stats.loss_sum);
    meta["train.seconds"] = fmt("%.17g", stats.seconds);
    meta["train.images"] = std::to_string(stats.images);
    meta["train.confusion"] = join_comma(stats.confusion.counts(), [](int64_t x) { return std::to_string(x); });
    meta["classes"] = join_comma(class_names, [](const std::string& n) { return n; });
    models::save_training_checkpoint(path, parts, {.epoch = epoch, .step = step, .best_metric = best}, meta);
  };

  if (dp.is_root()) {
    std::printf("crfseg train: %s\n  train: %s\n  val:   %s\n  model: %s, %lld parameters\n", data.spec.c_str(),
                train_set.description().c_str(), data.val->description().c_str(), describe(spec).c_str(),
                static_cast<long long>(net->num_parameters()));
  }
  if (dp.is_root() && dp.size() > 1) {
    std::printf("  data parallel: %s, global batch %lld\n", dp.describe().c_str(),
                static_cast<long long>(global_batch));
  }
  std::fflush(stdout);
  // --profile: rank 0's session from this run's second step, closed after
  // N steps, at the epoch's end (validation is not a training step) or at
  // --stop-after. Its report is best effort: a failure to write it warns
  // (rank 0 alone throwing would leave the other ranks in a collective).
  const int64_t first_step = step;
  std::optional<profiler::Session> profile;
  auto finish_profile = [&] {
    const int64_t profiled = step - first_step - 1;
    const std::string path = (out / "profile.md").string();
    try {
      if (profiled > 0) {
        std::ofstream f(path);
        f << "# crfseg train --profile: " << profiled << " training steps (" << step - profiled + 1 << " to "
          << step << ")\n\n"
          << describe(spec) << ", batch " << batch_size << ", " << device.str() << "\n\n"
          << profile->table(40);
        if (!f) throw IOError("cannot write " + path);
        if (!quiet) {
          std::printf("\nprofile of %lld steps written to %s\n", static_cast<long long>(profiled), path.c_str());
        }
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "crfseg train: --profile: no report (%s)\n", e.what());
    }
    profile.reset();
  };
  net->train();
  const crf::PrefetchScope prefetch_scope;  // a batch read ahead and never trained on leaves no build running
  for (; epoch < epochs; ++epoch) {
    const int64_t batches = train_loader.num_batches();
    Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), batches);
    const auto t0 = std::chrono::steady_clock::now();
    const double seconds_before = stats.seconds;
    net->enable_final_layer(epoch >= crf_warmup);
    train_loader.start_epoch(epoch, first_batch);
    int64_t done = first_batch;
    first_batch = 0;
    // The loader's next batch on the device. With a CRF-RNN on CUDA its
    // lattices start building on a host thread there (images_to_device), so
    // reading one batch ahead, right after a step's forward is queued, gives
    // that build the rest of the step to finish in. The copies themselves
    // do not wait for that forward (ops::upload_ahead), so the host goes on
    // to queue the loss and the backward while the forward runs.
    // A failure to read it is raised where reading it used to be, at the
    // start of its own step, so the step in progress still completes.
    std::exception_ptr ahead_error;
    auto fetch = [&]() -> decltype(train_loader.next()) {
      try {
        auto b = [&] {
          const profiler::Scope scope("data");
          return train_loader.next();
        }();
        if (b) {
          const profiler::Scope scope("data to device");  // (a scope records nothing without a session)
          b->images = images_to_device(b->images, device, *net);
          b->masks = ops::upload_ahead(b->masks, device);
        }
        return b;
      } catch (...) {
        ahead_error = std::current_exception();
        return std::nullopt;
      }
    };
    auto ahead = fetch();
    for (;;) {
      // --profile: steps 2 .. N + 1 of this run (the first allocates the
      // caches), each part of the step a scope, waiting for data included
      // (the next step's: it is read during this one).
      if (profile_steps > 0 && dp.is_root() && step == first_step + 1 && !profile) profile.emplace(device);
      if (ahead_error) std::rethrow_exception(std::exchange(ahead_error, nullptr));
      auto batch = std::move(ahead);
      ahead.reset();
      if (!batch) break;
      const Tensor logits = (*net)(batch->images);
      if (!(stop_after > 0 && step + 1 >= stop_after)) ahead = fetch();  // (none after the last step of the run)
      const Tensor loss = [&] {
        const profiler::Scope scope("loss");
        return compute_loss(logits, batch->masks, loss_spec);
      }();
      // Divergence guard: a non-finite loss or gradient stops the run before
      // the step is applied (checkpoints are also refused when any state is
      // non-finite, see save()). Both are read after the backward is queued:
      // on a GPU, reading the loss first would make the host wait for the
      // forward before it could queue the backward.
      auto diverged = [&](const std::string& what, const std::string& where) {
        return ValueError(what + " at epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(done + 1) +
                          " (step " + std::to_string(step + 1) + ")" + where + "; stopping without applying the step (" +
                          (fs::exists(last_path) ? "the last good checkpoint is " + last_path
                                                 : std::string("no checkpoint was written yet")) +
                          "; try a lower --lr or --clip)");
      };
      opt->zero_grad();
      dp.begin_backward(batch->images.size(0), batch->global_size);
      {
        const profiler::Scope scope("backward");
        backward(loss);
        dp.end_backward();  // every rank now holds the global batch's gradient
      }
      // Over all ranks: the global batch's mean loss, the same on every rank.
      const double loss_value = dp.global_mean_loss(loss.item(), batch->images.size(0), batch->global_size);
      if (!std::isfinite(loss_value)) throw diverged("the loss is " + fmt("%g", loss_value), locate_nonfinite(
                                                       *net, logits, [&] { (void)(*net)(batch->images); }));
      const double gnorm = [&] {
        const profiler::Scope scope("gradient norm");
        return optim::grad_norm(net->parameters());
      }();
      if (!std::isfinite(gnorm)) {
        throw diverged("the gradient norm is " + fmt("%g", gnorm),
                       nn::describe_names("non-finite gradients", nn::nonfinite_gradients(*net)));
      }
      {
        const profiler::Scope scope("optimizer");
        if (clip > 0) optim::clip_grads_with_norm_(net->parameters(), clip, gnorm);  // the norm taken above
        opt->step();
      }
      ++step;
      ++done;
      {
        // On a GPU the counts stay there until the epoch's end or a
        // checkpoint reads them (over several ranks they are summed here).
        const profiler::Scope scope("metrics");
        NoGradGuard no_grad;
        dp.add_logits(stats.confusion, logits, batch->masks);
      }
      if (profile && step == first_step + 1 + profile_steps) finish_profile();
      const int64_t n = batch->global_size;  // over all ranks
      stats.loss_sum += loss_value * static_cast<double>(n);
      stats.images += n;
      stats.seconds = seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!quiet) {
        progress.update(done, "loss " + fmt("%.4f", stats.loss_sum / static_cast<double>(stats.images)) + "  " +
                                  fmt("%.1f", static_cast<double>(stats.images) / std::max(stats.seconds, 1e-9)) +
                                  " img/s  lr " + fmt("%.3g", opt->lr()));
      }
      if (checkpoint_every > 0 && done % checkpoint_every == 0 && done < batches) save(last_path, done);
      if (stop_after > 0 && step >= stop_after) {
        if (profile) finish_profile();
        save(last_path, done);
        if (dp.is_root()) {
          std::fprintf(stderr, "\ncrfseg train: stopped after %lld steps (--stop-after); resume with --resume\n",
                       static_cast<long long>(step));
        }
        return 0;
      }
    }
    if (profile) finish_profile();
    // End of epoch: validate, log, schedule, checkpoint.
    const EvalResult val = dp.is_root() ? evaluate(*net, val_loader, loss_spec)
                                        : EvalResult{.confusion = ConfusionMatrix(train_set.num_classes()),
                                                                    .boundary = ConfusionMatrix(train_set.num_classes())};
    EpochRow row{.epoch = epoch + 1, .lr = opt->lr(), .seconds = stats.seconds,
                 .train_loss = stats.loss_sum / static_cast<double>(std::max<int64_t>(stats.images, 1)),
                 .train_acc = stats.confusion.pixel_accuracy(), .train_miou = stats.confusion.mean_iou(),
                 .train_dice = stats.confusion.mean_dice(), .val_loss = val.loss,
                 .val_acc = val.confusion.pixel_accuracy(), .val_miou = val.confusion.mean_iou(),
                 .val_dice = val.confusion.mean_dice(), .val_boundary_miou = val.boundary.mean_iou(), .val_iou = {}};
    for (int64_t c = 0; c < val.confusion.num_classes(); ++c) row.val_iou.push_back(val.confusion.iou(c));
    if (!quiet) progress.finish("loss " + fmt("%.4f", row.train_loss) + "  val loss " + fmt("%.4f", row.val_loss) +
                                "  val mIoU " + fmt("%.4f", row.val_miou) + " (boundary " +
                                fmt("%.4f", row.val_boundary_miou) + ")  val acc " + fmt("%.4f", row.val_acc));
    if (dp.is_root()) {
      log.append(row);
      log.write_svg((out / "curves.svg").string(), "crfseg train " + data.spec + ": " + describe(spec));
    }
    sched->step();
    // A warm-up epoch validated without the CRF is not the deployed model.
    const bool deployable = !spec.crf || epoch >= crf_warmup;
    const bool improved = deployable && std::isfinite(row.val_miou) && row.val_miou > best;
    if (improved) best = row.val_miou;
    stats = EpochStats{0, 0, 0, ConfusionMatrix(train_set.num_classes(), train_set.ignore_index())};
    ++epoch;  // the checkpoint records completed epochs
    save(last_path, 0);
    if (improved) save(best_path, 0);
    --epoch;
    dp.barrier();  // the other ranks wait here, not in the next epoch's first collective
  }
  const std::vector<EpochRow>& rows = log.rows();
  if (!rows.empty() && dp.is_root()) {
    std::printf("final: val mIoU %.4f, val pixel accuracy %.4f (%s); %s\n", rows.back().val_miou,
                rows.back().val_acc,
                best >= 0 ? ("best val mIoU " + fmt("%.4f", best) + " in best.safetensors").c_str()
                          : "no best.safetensors: every epoch was a CRF warm-up epoch",
                (out / "metrics.csv").c_str());
  }
  return 0;
}

}  // namespace crfseg::app
