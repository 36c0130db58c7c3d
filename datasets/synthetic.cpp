// Synthetic shapes (see synthetic.h for what is drawn and why).
#include "datasets/synthetic.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "datasets/seeding.h"
#include "tensor/random.h"

namespace crfseg::data {

namespace {

enum class Kind { ellipse, rectangle, triangle };

// A shape in pixel coordinates; inside() tests a point.
struct Shape {
  Kind kind;
  double cx, cy, a, b, angle;  // centre, half-extents (or radii), rotation
  double cos_angle, sin_angle;  // cached: inside() runs 5 times per pixel and shape
  double tx[3], ty[3];         // triangle vertices
  int64_t label;
  std::vector<double> colour;  // added to the background, per channel

  bool inside(double x, double y) const {
    if (kind == Kind::triangle) {
      // Same sign of the three edge functions (either winding).
      double d[3];
      for (int k = 0; k < 3; ++k) {
        const int n = (k + 1) % 3;
        d[k] = (tx[n] - tx[k]) * (y - ty[k]) - (ty[n] - ty[k]) * (x - tx[k]);
      }
      return (d[0] >= 0 && d[1] >= 0 && d[2] >= 0) || (d[0] <= 0 && d[1] <= 0 && d[2] <= 0);
    }
    const double c = cos_angle, s = sin_angle;
    const double u = (x - cx) * c + (y - cy) * s, v = -(x - cx) * s + (y - cy) * c;
    if (kind == Kind::ellipse) return (u * u) / (a * a) + (v * v) / (b * b) <= 1.0;
    return std::abs(u) <= a && std::abs(v) <= b;
  }
};

double uniform(Generator& gen, double lo, double hi) { return lo + (hi - lo) * gen.uniform_f64(); }

Shape random_shape(Generator& gen, int64_t H, int64_t W, int64_t C, int64_t num_classes) {
  Shape s{};
  // Kinds available: 2 classes use all three kinds; 3 use ellipse/rectangle; 4 all, one class each.
  const int kinds = num_classes == 3 ? 2 : 3;
  const int kind = static_cast<int>(gen.next_u32() % kinds);
  s.kind = static_cast<Kind>(kind);
  s.label = num_classes == 2 ? 1 : kind + 1;
  const double side = static_cast<double>(std::min(H, W));
  const double r = side * uniform(gen, 0.10, 0.30);
  s.cx = uniform(gen, 0.15, 0.85) * static_cast<double>(W);
  s.cy = uniform(gen, 0.15, 0.85) * static_cast<double>(H);
  s.angle = uniform(gen, 0, std::numbers::pi);
  s.cos_angle = std::cos(s.angle);
  s.sin_angle = std::sin(s.angle);
  s.a = r * uniform(gen, 0.6, 1.0);
  s.b = r * uniform(gen, 0.45, 1.0);
  const double theta0 = uniform(gen, 0, 2 * std::numbers::pi);
  for (int k = 0; k < 3; ++k) {
    const double theta = theta0 + k * 2 * std::numbers::pi / 3 + uniform(gen, -0.35, 0.35);
    const double rk = r * uniform(gen, 0.8, 1.2);
    s.tx[k] = s.cx + rk * std::cos(theta);
    s.ty[k] = s.cy + rk * std::sin(theta);
  }
  const double contrast = uniform(gen, 0.20, 0.45);
  for (int64_t c = 0; c < C; ++c) s.colour.push_back(contrast * (C == 1 ? 1.0 : uniform(gen, 0.5, 1.0)));
  return s;
}

// Separable Gaussian blur of one H x W plane, edges clamped.
void blur_plane(float* plane, int64_t H, int64_t W, double sigma) {
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  double total = 0;
  for (int64_t k = -radius; k <= radius; ++k) total += kernel[k + radius] = std::exp(-0.5 * k * k / (sigma * sigma));
  for (double& k : kernel) k /= total;
  std::vector<float> tmp(static_cast<size_t>(H * W));
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      double acc = 0;
      for (int64_t k = -radius; k <= radius; ++k) acc += kernel[k + radius] * plane[y * W + std::clamp<int64_t>(x + k, 0, W - 1)];
      tmp[y * W + x] = static_cast<float>(acc);
    }
  }
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      double acc = 0;
      for (int64_t k = -radius; k <= radius; ++k) acc += kernel[k + radius] * tmp[std::clamp<int64_t>(y + k, 0, H - 1) * W + x];
      plane[y * W + x] = static_cast<float>(acc);
    }
  }
}

}  // namespace

SyntheticDataset::SyntheticDataset(SyntheticOptions options) : options_(std::move(options)) {
  const SyntheticOptions& o = options_;
  CRFSEG_CHECK(o.size >= 1, ValueError, "SyntheticDataset: size must be >= 1, got ", o.size);
  CRFSEG_CHECK(o.height >= 8 && o.width >= 8, ValueError, "SyntheticDataset: expected images of at least 8x8, got ",
               o.height, "x", o.width);
  CRFSEG_CHECK(o.channels == 1 || o.channels == 3, ValueError, "SyntheticDataset: channels must be 1 or 3, got ",
               o.channels);
  CRFSEG_CHECK(o.num_classes >= 2 && o.num_classes <= 4, ValueError,
               "SyntheticDataset: num_classes must be 2, 3 or 4, got ", o.num_classes);
  CRFSEG_CHECK(o.max_shapes >= 1, ValueError, "SyntheticDataset: max_shapes must be >= 1, got ", o.max_shapes);
  CRFSEG_CHECK(o.noise_std >= 0 && o.blur_sigma >= 0 && o.drift >= 0, ValueError,
               "SyntheticDataset: noise_std, blur_sigma and drift must be >= 0, got ", o.noise_std, ", ", o.blur_sigma,
               ", ", o.drift);
}

Sample SyntheticDataset::get(int64_t index) const {
  check_index(index, "SyntheticDataset::get");
  const SyntheticOptions& o = options_;
  const int64_t H = o.height, W = o.width, C = o.channels;
  // The draw order below is part of the dataset's definition: changing it
  // changes every sample.
  Generator gen(derive_seed(o.seed, SeedDomain::synthetic, {static_cast<uint64_t>(index)}));
  std::vector<double> background(static_cast<size_t>(C));
  for (double& b : background) b = uniform(gen, 0.10, 0.40);
  const double ramp_x = uniform(gen, -0.5, 0.5), ramp_y = uniform(gen, -0.5, 0.5), bowl = uniform(gen, -0.5, 0.5);
  const int64_t n_shapes = 1 + static_cast<int64_t>(gen.next_u32() % static_cast<uint32_t>(o.max_shapes));
  std::vector<Shape> shapes;
  for (int64_t k = 0; k < n_shapes; ++k) shapes.push_back(random_shape(gen, H, W, C, o.num_classes));

  Tensor image = Tensor::empty({C, H, W});
  Tensor mask = Tensor::empty({H, W}, {DType::i64});
  float* img = image.data<float>();
  int64_t* lab = mask.data<int64_t>();
  static constexpr double kSub[2] = {0.25, 0.75};  // 2x2 supersampling offsets within a pixel
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const double u = 2.0 * (x + 0.5) / W - 1.0, v = 2.0 * (y + 0.5) / H - 1.0;
      const double drift = o.drift * (ramp_x * u + ramp_y * v + bowl * (u * u + v * v - 2.0 / 3.0));
      // The label: the topmost shape containing the pixel centre.
      int64_t label = 0;
      for (const Shape& s : shapes) {
        if (s.inside(x + 0.5, y + 0.5)) label = s.label;
      }
      lab[y * W + x] = label;
      // The intensity: the average over 4 sub-samples of the topmost shape's colour.
      std::vector<double> value(static_cast<size_t>(C), 0.0);
      for (double dy : kSub) {
        for (double dx : kSub) {
          const Shape* top = nullptr;
          for (const Shape& s : shapes) {
            if (s.inside(x + dx, y + dy)) top = &s;
          }
          for (int64_t c = 0; c < C; ++c) value[c] += 0.25 * (top ? top->colour[c] : 0.0);
        }
      }
      for (int64_t c = 0; c < C; ++c) img[(c * H + y) * W + x] = static_cast<float>(background[c] + drift + value[c]);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    float* plane = img + c * H * W;
    if (o.blur_sigma > 0) blur_plane(plane, H, W, o.blur_sigma);
    for (int64_t p = 0; p < H * W; ++p) {
      plane[p] = static_cast<float>(std::clamp(plane[p] + o.noise_std * gen.normal(), 0.0, 1.0));
    }
  }
  normalize_(image, o.normalization);
  return {image, mask, "synthetic_" + std::to_string(index)};
}

std::vector<std::string> SyntheticDataset::class_names() const {
  if (options_.num_classes == 2) return {"background", "shape"};
  if (options_.num_classes == 3) return {"background", "ellipse", "rectangle"};
  return {"background", "ellipse", "rectangle", "triangle"};
}

std::string SyntheticDataset::description() const {
  return "synthetic shapes (seed " + std::to_string(options_.seed) + "): " + std::to_string(size()) + " images of " +
         std::to_string(options_.height) + "x" + std::to_string(options_.width) + "x" +
         std::to_string(options_.channels) + ", " + std::to_string(options_.num_classes) + " classes";
}

}  // namespace crfseg::data
