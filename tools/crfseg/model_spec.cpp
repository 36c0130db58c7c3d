// ModelSpec: options, metadata round trip and model construction; see model_spec.h.
#include "tools/crfseg/model_spec.h"

#include <cstdio>
#include <sstream>

#include "tensor/ops.h"
#include "tools/crfseg/join.h"

namespace crfseg::app {

void add_model_options(ArgParser& p) {
  p.option("--encoder", "NAME", "unet", "encoder: unet, resnet50, vgg16 or vgg16_bn")
      .option("--base", "W", "32", "U-Net encoder base width (channels of the first level)")
      .option("--depth", "D", "4", "U-Net encoder depth (number of poolings)")
      .option("--up", "MODE", "transposed", "decoder up-sampling: transposed or bilinear")
      .flag("--no-batch-norm", "U-Net encoder and decoder without batch norm")
      .flag("--imagenet-norm", "normalise inputs with ImageNet statistics inside the model (pretrained encoders)")
      .flag("--crf", "add the CRF-RNN final layer (mean-field, permutohedral lattice)")
      .option("--crf-iters", "T", "5", "CRF mean-field iterations in training")
      .option("--crf-eval-iters", "T", "10", "CRF mean-field iterations at evaluation and prediction")
      .option("--crf-theta-alpha", "X", "160", "CRF bilateral kernel: spatial bandwidth (pixels)")
      .option("--crf-theta-beta", "X", "3", "CRF bilateral kernel: intensity bandwidth (0-255 units)")
      .option("--crf-theta-gamma", "X", "3", "CRF spatial kernel bandwidth (pixels)")
      .option("--crf-mode", "MODE", "lattice", "CRF filter: lattice (fast) or dense (exact, O(N^2), tiny images)")
      .option("--crf-weights", "S,B", "1,1", "CRF initial spatial and bilateral kernel weights (times identity)")
      .option("--crf-param", "NAME", "convergent",
              "CRF pairwise parametrization: free (Zheng et al.) or convergent (PSD kernel weights, Potts)");
}

namespace {

crf::FilterMode parse_mode(const std::string& s) {
  if (s == "lattice") return crf::FilterMode::lattice;
  if (s == "dense") return crf::FilterMode::dense;
  throw UsageError("--crf-mode must be lattice or dense, got '" + s + "'");
}

models::UpMode parse_up(const std::string& s) {
  if (s == "transposed") return models::UpMode::transposed;
  if (s == "bilinear") return models::UpMode::bilinear;
  throw UsageError("--up must be transposed or bilinear, got '" + s + "'");
}

void finish(ModelSpec& spec) {
  spec.crf_options.num_classes = spec.segmenter.num_classes;
  spec.crf_options.image_channels = spec.segmenter.in_channels;
  spec.crf_options.image_scale = 255.0;  // datasets give images on [0, 1]
  spec.crf_options.dtype = spec.segmenter.dtype;
}

}  // namespace

ModelSpec model_spec_from(const ArgParser& p, int64_t in_channels, int64_t num_classes) {
  ModelSpec spec;
  auto& s = spec.segmenter;
  s.encoder = p.get("--encoder");
  if (s.encoder != "unet" && s.encoder != "resnet50" && s.encoder != "vgg16" && s.encoder != "vgg16_bn") {
    throw UsageError("unknown encoder '" + s.encoder + "' (choose unet, resnet50, vgg16 or vgg16_bn)");
  }
  s.in_channels = in_channels;
  s.num_classes = num_classes;
  s.base_width = p.get_int("--base", 1, 1024);
  s.depth = p.get_int("--depth", 1, 8);
  s.up_mode = parse_up(p.get("--up"));
  s.batch_norm = !p.flag_set("--no-batch-norm");
  if (p.flag_set("--imagenet-norm")) {
    if (in_channels != 3) {
      throw UsageError("--imagenet-norm needs 3-channel images, the data has " + std::to_string(in_channels));
    }
    s.input_mean = models::kImageNetMean;
    s.input_std = models::kImageNetStd;
  }
  spec.crf = p.flag_set("--crf");
  auto& c = spec.crf_options;
  c.train_iterations = p.get_int("--crf-iters", 1, 100);
  c.eval_iterations = p.get_int("--crf-eval-iters", 1, 100);
  c.theta_alpha = p.get_double("--crf-theta-alpha", 1e-6);
  c.theta_beta = p.get_double("--crf-theta-beta", 1e-6);
  c.theta_gamma = p.get_double("--crf-theta-gamma", 1e-6);
  c.mode = parse_mode(p.get("--crf-mode"));
  try {
    c.parametrization = crf::parse_crf_parametrization(p.get("--crf-param"), "--crf-param");
  } catch (const ValueError& e) {
    throw UsageError(e.what());
  }
  {
    const std::string w = p.get("--crf-weights");
    char* end = nullptr;
    c.spatial_weight = std::strtod(w.c_str(), &end);
    if (*end != ',') throw UsageError("--crf-weights expects two numbers S,B, got '" + w + "'");
    const char* rest = end + 1;
    c.bilateral_weight = std::strtod(rest, &end);
    if (end == rest || *end != '\0') throw UsageError("--crf-weights expects two numbers S,B, got '" + w + "'");
  }
  finish(spec);
  return spec;
}

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::vector<double> split(const std::string& key, const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    char* end = nullptr;
    out.push_back(std::strtod(cell.c_str(), &end));
    CRFSEG_CHECK(!cell.empty() && *end == '\0', IOError, "model metadata '", key, "' holds '", s,
                 "'; expected comma-separated numbers");
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> to_metadata(const ModelSpec& spec) {
  const auto& s = spec.segmenter;
  const auto& c = spec.crf_options;
  return {
      {"model.encoder", s.encoder},
      {"model.in_channels", std::to_string(s.in_channels)},
      {"model.num_classes", std::to_string(s.num_classes)},
      {"model.base_width", std::to_string(s.base_width)},
      {"model.depth", std::to_string(s.depth)},
      {"model.batch_norm", s.batch_norm ? "1" : "0"},
      {"model.up_mode", s.up_mode == models::UpMode::transposed ? "transposed" : "bilinear"},
      {"model.input_mean", join_comma(s.input_mean, num)},
      {"model.input_std", join_comma(s.input_std, num)},
      {"model.crf", spec.crf ? "1" : "0"},
      {"model.crf_train_iterations", std::to_string(c.train_iterations)},
      {"model.crf_eval_iterations", std::to_string(c.eval_iterations)},
      {"model.crf_theta_alpha", num(c.theta_alpha)},
      {"model.crf_theta_beta", num(c.theta_beta)},
      {"model.crf_theta_gamma", num(c.theta_gamma)},
      {"model.crf_mode", c.mode == crf::FilterMode::lattice ? "lattice" : "dense"},
      {"model.crf_weights", num(c.spatial_weight) + "," + num(c.bilateral_weight)},
      {"model.crf_parametrization", crf::crf_parametrization_name(c.parametrization)},
  };
}

ModelSpec model_spec_from_metadata(const std::map<std::string, std::string>& m) {
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = m.find(key);
    CRFSEG_CHECK(it != m.end(), IOError, "checkpoint metadata lacks '", key,
                 "' (not written by crfseg train, or by an older version)");
    return it->second;
  };
  auto integer = [&](const std::string& key) {
    const std::string& v = get(key);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    CRFSEG_CHECK(!v.empty() && *end == '\0', IOError, "checkpoint metadata '", key, "' holds '", v,
                 "'; expected an integer");
    return static_cast<int64_t>(x);
  };
  auto real = [&](const std::string& key) {
    const std::vector<double> v = split(key, get(key));
    CRFSEG_CHECK(v.size() == 1, IOError, "checkpoint metadata '", key, "' holds '", get(key), "'; expected a number");
    return v[0];
  };
  ModelSpec spec;
  auto& s = spec.segmenter;
  s.encoder = get("model.encoder");
  s.in_channels = integer("model.in_channels");
  s.num_classes = integer("model.num_classes");
  s.base_width = integer("model.base_width");
  s.depth = integer("model.depth");
  s.batch_norm = integer("model.batch_norm") != 0;
  try {
    s.up_mode = parse_up(get("model.up_mode"));
    spec.crf_options.mode = parse_mode(get("model.crf_mode"));
  } catch (const UsageError& e) {
    throw IOError(std::string("checkpoint metadata: ") + e.what());
  }
  s.input_mean = split("model.input_mean", get("model.input_mean"));
  s.input_std = split("model.input_std", get("model.input_std"));
  spec.crf = integer("model.crf") != 0;
  auto& c = spec.crf_options;
  c.train_iterations = integer("model.crf_train_iterations");
  c.eval_iterations = integer("model.crf_eval_iterations");
  c.theta_alpha = real("model.crf_theta_alpha");
  c.theta_beta = real("model.crf_theta_beta");
  c.theta_gamma = real("model.crf_theta_gamma");
  const std::vector<double> w = split("model.crf_weights", get("model.crf_weights"));
  CRFSEG_CHECK(w.size() == 2, IOError, "checkpoint metadata 'model.crf_weights' holds ", w.size(), " numbers; expected 2");
  c.spatial_weight = w[0];
  c.bilateral_weight = w[1];
  // Checkpoints from before the convergent parametrization lack the key: free.
  if (auto it = m.find("model.crf_parametrization"); it != m.end()) {
    try {
      c.parametrization = crf::parse_crf_parametrization(it->second, "checkpoint metadata 'model.crf_parametrization'");
    } catch (const ValueError& e) {
      throw IOError(e.what());
    }
  }
  finish(spec);
  return spec;
}

std::shared_ptr<models::Segmenter> build_model(const ModelSpec& spec, Generator& gen) {
  auto net = std::make_shared<models::Segmenter>(spec.segmenter, gen);
  if (spec.crf) {
    auto crf_layer = std::make_shared<crf::CrfRnn>(spec.crf_options);
    net->set_final_layer(crf_layer, crf_layer->as_final_layer());
  }
  return net;
}

Tensor images_to_device(const Tensor& host_images, Device device, const models::Segmenter& net) {
  const crf::CrfRnn* crf_layer = nullptr;
  if (device.is_cuda() && host_images.device().is_cpu() && net.final_layer_enabled()) {
    for (const auto& [name, module] : net.named_children()) {
      if (name == "final") crf_layer = dynamic_cast<const crf::CrfRnn*>(module.get());
    }
  }
  if (crf_layer == nullptr) return ops::upload_ahead(host_images, device);
  // The build starts first, before the copy. The device tensor exists,
  // unfilled, when the prefetch records it; filling a tensor nothing has
  // read yet is its creation, so its version stays the one the prefetch
  // recorded.
  const Tensor host = ops::contiguous(host_images);
  return ops::upload_ahead(host, device, [&](const Tensor& images) { crf_layer->prefetch_lattices(host, images); });
}

std::string describe(const ModelSpec& spec) {
  const auto& s = spec.segmenter;
  std::ostringstream out;
  out << s.encoder;
  if (s.encoder == "unet") out << " (base " << s.base_width << ", depth " << s.depth << ")";
  if (spec.crf) {
    const auto& c = spec.crf_options;
    out << " + CRF-RNN (" << c.train_iterations << "/" << c.eval_iterations << " iterations, theta " << c.theta_alpha
        << "/" << c.theta_beta << "/" << c.theta_gamma << (c.mode == crf::FilterMode::dense ? ", dense" : "")
        << (c.parametrization == crf::CrfParametrization::convergent ? ", convergent" : "") << ")";
  }
  out << ", " << s.in_channels << " -> " << s.num_classes << " classes";
  return out.str();
}

}  // namespace crfseg::app
