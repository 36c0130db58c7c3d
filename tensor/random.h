// Seeded random numbers and weight initialisation.
//
// Generator wraps a 32-bit Mersenne Twister (std::mt19937, the engine torch's
// CPU generator uses). Streams are fully determined by the seed and do not
// depend on the thread count: tensors are filled sequentially.
//  - uniform f32 takes the low 24 bits of one draw (x & 0xFFFFFF) * 2^-24,
//    the formula torch uses for float uniform_.
//  - normal uses Box-Muller on pairs of uniforms.
// Bit-for-bit agreement with torch streams is not claimed (not yet tested).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "tensor/tensor.h"

namespace crfseg {

class Generator {
 public:
  explicit Generator(uint64_t seed = 5489) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }

  uint32_t next_u32() { return static_cast<uint32_t>(engine_()); }
  float uniform_f32();   // [0, 1), 24 bits
  double uniform_f64();  // [0, 1), 53 bits
  double normal();       // standard normal (Box-Muller, caches the second value)

  // The full engine state as text, for training checkpoints.
  std::string state() const;
  // Restores a state from state(); throws ValueError on malformed text.
  void set_state(const std::string& state);

 private:
  std::mt19937 engine_;
  uint64_t seed_ = 0;
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// The process-wide default generator used when none is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the default generator

// Fill in place (CPU f32/f64; bump the version counter).
void uniform_(const Tensor& t, double low, double high, Generator& gen = default_generator());
void normal_(const Tensor& t, double mean, double std, Generator& gen = default_generator());

Tensor rand(const Shape& shape, TensorOptions options = {}, Generator& gen = default_generator());
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator& gen = default_generator());

// Fans as torch.nn.init computes them: for a weight [out, in, r, s, ...],
// fan_in = in * r * s..., fan_out = out * r * s...
struct Fans {
  int64_t fan_in, fan_out;
};
Fans compute_fans(const Shape& weight_shape);

// He init for ReLU nets, gain sqrt(2 / (1 + a^2)), on fan_in (torch defaults).
void kaiming_uniform_(const Tensor& w, double a = 0.0, Generator& gen = default_generator());
void kaiming_normal_(const Tensor& w, double a = 0.0, Generator& gen = default_generator());
// Glorot init: bound = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& w, double gain = 1.0, Generator& gen = default_generator());
void xavier_normal_(const Tensor& w, double gain = 1.0, Generator& gen = default_generator());

}  // namespace crfseg
