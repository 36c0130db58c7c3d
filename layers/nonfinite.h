// Finding where a NaN or an infinity came from, for training's divergence
// guard (tools/crfseg/train.cpp): which parameters hold non-finite values
// or gradients, and which layer's output first turned non-finite.
//
// All of these read tensors on the host (CUDA tensors are copied) and are
// meant for the slow path after a non-finite loss or gradient was seen, not
// for every step.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "layers/module.h"

namespace crfseg::nn {

// True when every element of a floating-point tensor is finite (integer
// tensors always are; an undefined tensor counts as finite).
bool all_finite(const Tensor& t);

// Dotted names of the parameters whose values hold a NaN or an infinity, in
// registration order.
std::vector<std::string> nonfinite_parameters(const Module& model);
// Dotted names of the parameters whose gradients hold a NaN or an infinity.
std::vector<std::string> nonfinite_gradients(const Module& model);

// Runs `forward` (which must call into `model`) without recording a graph and
// returns "path (Type)" of the first module of `model` whose output held a
// non-finite value, in completion order (so the innermost module where it
// first appeared), or nullopt when every observed output was finite.
std::optional<std::string> first_nonfinite_output(Module& model, const std::function<void()>& forward);

// A sentence for an error message: "; <what> in NAME (and N others)", or ""
// when `names` is empty.
std::string describe_names(const std::string& what, const std::vector<std::string>& names);

}  // namespace crfseg::nn
