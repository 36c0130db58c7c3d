// CrfRnn: parameters, mode-dependent iteration count, input checks; the
// computation is crf_mean_field (crf/mean_field.*).
#include "crf/crf_rnn.h"

#include <cmath>
#include <memory>
#include <sstream>

#include "autograd/functions.h"
#include "crf/bilateral_prefetch.h"
#include "crf/mean_field_composed.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg::crf {

namespace {

Tensor scaled_identity(int64_t L, double diagonal, double off_diagonal, DType dtype) {
  std::vector<double> v(static_cast<size_t>(L * L));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) v[i * L + j] = i == j ? diagonal : off_diagonal;
  return ops::to_dtype(from_vector(v, {L, L}), dtype);
}

}  // namespace

CrfRnn::CrfRnn(const CrfRnnOptions& o) : Module("CrfRnn"), options(o) {
  CRFSEG_CHECK(o.num_classes >= 1 && o.image_channels >= 1, ValueError,
               "CrfRnn: expected num_classes >= 1 and image_channels >= 1, got ", o.num_classes, " and ",
               o.image_channels);
  CRFSEG_CHECK(o.train_iterations >= 1 && o.eval_iterations >= 1, ValueError,
               "CrfRnn: expected train_iterations and eval_iterations >= 1, got ", o.train_iterations, " and ",
               o.eval_iterations);
  CRFSEG_CHECK(o.theta_alpha > 0 && o.theta_beta > 0 && o.theta_gamma > 0 && o.image_scale > 0, ValueError,
               "CrfRnn: expected positive thetas and image_scale, got alpha ", o.theta_alpha, ", beta ", o.theta_beta,
               ", gamma ", o.theta_gamma, ", image_scale ", o.image_scale);
  CRFSEG_CHECK(o.dtype == DType::f32 || o.dtype == DType::f64, DTypeError,
               "CrfRnn: expected dtype f32 or f64, got ", dtype_name(o.dtype));
  const int64_t L = o.num_classes;
  if (o.parametrization == CrfParametrization::free) {
    spatial_weights = register_parameter("spatial_weights", scaled_identity(L, o.spatial_weight, 0.0, o.dtype));
    bilateral_weights = register_parameter("bilateral_weights", scaled_identity(L, o.bilateral_weight, 0.0, o.dtype));
    compatibility = register_parameter("compatibility", scaled_identity(L, 0.0, 1.0, o.dtype));  // Potts
  } else {
    // F F^T = weight * I needs weight >= 0 (a negative weight would repel).
    CRFSEG_CHECK(o.spatial_weight >= 0 && o.bilateral_weight >= 0, ValueError,
                 "CrfRnn: the convergent parametrization needs kernel weights >= 0, got spatial ", o.spatial_weight,
                 " and bilateral ", o.bilateral_weight);
    spatial_factor = register_parameter("spatial_factor", scaled_identity(L, std::sqrt(o.spatial_weight), 0.0, o.dtype));
    bilateral_factor =
        register_parameter("bilateral_factor", scaled_identity(L, std::sqrt(o.bilateral_weight), 0.0, o.dtype));
    compatibility = register_buffer("compatibility", scaled_identity(L, 0.0, 1.0, o.dtype));  // Potts, fixed
  }
}

CrfRnn::Pairwise CrfRnn::pairwise() const {
  if (options.parametrization == CrfParametrization::free) return {spatial_weights, bilateral_weights, compatibility};
  return convergent_pairwise(spatial_factor, bilateral_factor, compatibility);
}

CrfRnn::Pairwise CrfRnn::convergent_pairwise(const Tensor& spatial_factor, const Tensor& bilateral_factor,
                                             const Tensor& compatibility) {
  auto gram = [](const Tensor& f) { return matmul(f, transpose(f, 0, 1)); };  // F F^T: symmetric PSD
  return {gram(spatial_factor), gram(bilateral_factor), compatibility};
}

const char* crf_parametrization_name(CrfParametrization p) {
  return p == CrfParametrization::free ? "free" : "convergent";
}

CrfParametrization parse_crf_parametrization(const std::string& name, const std::string& what) {
  if (name == "free") return CrfParametrization::free;
  if (name == "convergent") return CrfParametrization::convergent;
  throw ValueError(what + ": expected free or convergent, got '" + name + "'");
}

MeanFieldOptions CrfRnn::mean_field_options() const {
  MeanFieldOptions m;
  m.iterations = is_training() ? options.train_iterations : options.eval_iterations;
  m.theta_alpha = options.theta_alpha;
  // Scaling the image by s is the same as dividing theta_beta by s.
  m.theta_beta = options.theta_beta / options.image_scale;
  m.theta_gamma = options.theta_gamma;
  m.mode = options.mode;
  return m;
}

Tensor CrfRnn::forward(const Tensor& unaries, const Tensor& image) {
  check_defined("CrfRnn", unaries, "unaries");
  check_defined("CrfRnn", image, "image");
  CRFSEG_CHECK(unaries.dim() == 4 && unaries.size(1) == options.num_classes, ShapeError,
               "CrfRnn: expected unaries [B, ", options.num_classes, ", H, W], got ", shape_str(unaries.shape()));
  CRFSEG_CHECK(image.dim() == 4 && image.size(1) == options.image_channels, ShapeError, "CrfRnn: expected image [B, ",
               options.image_channels, ", H, W] (image_channels = ", options.image_channels, "), got ",
               shape_str(image.shape()));
  const Pairwise p = pairwise();
  return crf_mean_field(unaries, image, p.spatial_weights, p.bilateral_weights, p.compatibility, mean_field_options());
}

void CrfRnn::prefetch_lattices(const Tensor& host_image, const Tensor& image) const {
  check_defined("CrfRnn::prefetch_lattices", image, "image");
  if (!image.device().is_cuda()) return;
  const MeanFieldOptions o = mean_field_options();
  if (o.mode == FilterMode::lattice && cuda_lattice_build() == LatticeBuild::device) return;
  prefetch_bilateral(host_image, image, o);
}

std::function<Tensor(const Tensor&, const Tensor&)> CrfRnn::as_final_layer() {
  // A raw `this`: the segmenter owns this module as its child "final", so
  // the module lives as long as the function does (see the header).
  return [this](const Tensor& logits, const Tensor& image) { return forward(logits, image); };
}

std::string CrfRnn::extra_repr() const {
  std::ostringstream s;
  s << "classes=" << options.num_classes << ", image_channels=" << options.image_channels
    << ", iterations=" << options.train_iterations << "/" << options.eval_iterations
    << ", theta_alpha=" << options.theta_alpha << ", theta_beta=" << options.theta_beta
    << ", theta_gamma=" << options.theta_gamma << ", mode=" << filter_mode_name(options.mode)
    << ", parametrization=" << crf_parametrization_name(options.parametrization);
  if (options.image_scale != 1.0) s << ", image_scale=" << options.image_scale;
  return s.str();
}

}  // namespace crfseg::crf
