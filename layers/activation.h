// Parameter-free elementwise layers: ReLU and Dropout.
#pragma once

#include "autograd/functions.h"
#include "layers/module.h"
#include "tensor/random.h"

namespace crfseg::nn {

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};

// Zeroes each element with probability p in training mode and scales the
// rest by 1 / (1 - p); the identity in eval mode. Masks come from `gen`
// (default: the global generator), so a seeded run is reproducible.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr) : Module("Dropout"), p_(p), gen_(gen) {
    CRFSEG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "Dropout: expected p in [0, 1], got ", p);
  }
  Tensor forward(const Tensor& x) override {
    return dropout(x, p_, is_training(), gen_ ? *gen_ : default_generator());
  }
  std::string extra_repr() const override { return "p=" + std::to_string(p_); }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace crfseg::nn
