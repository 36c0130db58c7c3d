// Generator and random initialisers (see random.h).
#include "tensor/random.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace crfseg {

void Generator::manual_seed(uint64_t seed) {
  seed_ = seed;
  engine_.seed(static_cast<uint32_t>(seed & 0xffffffffu));
  has_cached_normal_ = false;
}

float Generator::uniform_f32() {
  return static_cast<float>(next_u32() & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
}

double Generator::uniform_f64() {
  // 53 random bits from two draws: (a >> 5) * 2^26 + (b >> 6), over 2^53.
  const uint64_t a = next_u32() >> 5, b = next_u32() >> 6;
  return static_cast<double>(a * 67108864ull + b) * (1.0 / 9007199254740992.0);
}

double Generator::normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  // Box-Muller: u1 in (0, 1] keeps log finite.
  const double u1 = 1.0 - uniform_f64(), u2 = uniform_f64();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * std::numbers::pi * u2;
  cached_normal_ = radius * std::sin(theta);
  has_cached_normal_ = true;
  return radius * std::cos(theta);
}

std::string Generator::state() const {
  std::ostringstream out;
  out << seed_ << ' ' << has_cached_normal_ << ' ';
  out.precision(17);
  out << cached_normal_ << ' ' << engine_;
  return out.str();
}

void Generator::set_state(const std::string& state) {
  std::istringstream in(state);
  uint64_t seed = 0;
  bool cached = false;
  double value = 0.0;
  std::mt19937 engine;
  in >> seed >> cached >> value >> engine;
  CRFSEG_CHECK(!in.fail(), ValueError, "Generator::set_state: malformed state text (", state.size(), " chars)");
  seed_ = seed;
  has_cached_normal_ = cached;
  cached_normal_ = value;
  engine_ = engine;
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {

template <typename Draw>
void fill_random(const char* op, const Tensor& t, Draw draw) {
  check_defined(op, t, "t");
  if (t.device().is_cuda() || !t.is_contiguous()) {
    // Drawn into a contiguous host tensor, then copied over: a device
    // tensor or a view gets the same numbers, in its row-major order, as
    // a contiguous CPU tensor of its shape.
    const Tensor host = Tensor::empty(t.shape(), {t.dtype()});
    fill_random(op, host, draw);
    ops::copy_(t, host);
    return;
  }
  dispatch_float(t.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(draw(tag));
  });
  t.bump_version();
}

}  // namespace

void uniform_(const Tensor& t, double low, double high, Generator& gen) {
  fill_random("uniform_", t, [&](auto tag) -> double {
    using T = decltype(tag);
    const double u = std::is_same_v<T, float> ? gen.uniform_f32() : gen.uniform_f64();
    return low + (high - low) * u;
  });
}

void normal_(const Tensor& t, double mean, double std, Generator& gen) {
  fill_random("normal_", t, [&](auto) { return mean + std * gen.normal(); });
}

Tensor rand(const Shape& shape, TensorOptions options, Generator& gen) {
  Tensor t = Tensor::empty(shape, options);
  uniform_(t, 0.0, 1.0, gen);
  return t;
}

Tensor randn(const Shape& shape, TensorOptions options, Generator& gen) {
  Tensor t = Tensor::empty(shape, options);
  normal_(t, 0.0, 1.0, gen);
  return t;
}

Fans compute_fans(const Shape& shape) {
  CRFSEG_CHECK(shape.size() >= 2, ShapeError, "compute_fans: expected a weight with >= 2 dims, got ",
               shape_str(shape));
  int64_t receptive = 1;
  for (size_t d = 2; d < shape.size(); ++d) receptive *= shape[d];
  return {shape[1] * receptive, shape[0] * receptive};
}

void kaiming_uniform_(const Tensor& w, double a, Generator& gen) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(compute_fans(w.shape()).fan_in));
  uniform_(w, -bound, bound, gen);
}

void kaiming_normal_(const Tensor& w, double a, Generator& gen) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  normal_(w, 0.0, gain / std::sqrt(static_cast<double>(compute_fans(w.shape()).fan_in)), gen);
}

void xavier_uniform_(const Tensor& w, double gain, Generator& gen) {
  const Fans f = compute_fans(w.shape());
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(f.fan_in + f.fan_out));
  uniform_(w, -bound, bound, gen);
}

void xavier_normal_(const Tensor& w, double gain, Generator& gen) {
  const Fans f = compute_fans(w.shape());
  normal_(w, 0.0, gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out)), gen);
}

}  // namespace crfseg
