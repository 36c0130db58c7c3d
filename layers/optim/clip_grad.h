// Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.
//
// The norm is taken over all gradients together, as if they were
// concatenated into one vector:
//   total = (sum over every gradient element x of |x|^p)^(1/p),  or max |x| for p = inf.
// When total exceeds max_norm, every gradient is scaled in place by
//   scale = max_norm / (total + 1e-6)
// (the 1e-6 keeps a zero norm from dividing by zero), so the clipped norm is
// just under max_norm. Parameters without a gradient are ignored.
// Reference: https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html
#pragma once

#include <limits>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::optim {

// The total p-norm of the gradients of `params` (0 when none has one), for
// logging. norm_type > 0 or +infinity; gradients f32/f64 on the CPU.
// Accumulates in double over fixed blocks, so the result does not depend on
// the thread count. Throws ValueError for a bad norm_type, DTypeError and
// NotImplementedError for unsupported gradients.
double grad_norm(const std::vector<Tensor>& params, double norm_type = 2.0);

// Clips the gradients of `params` in place to a total norm of at most
// max_norm (finite, >= 0) and returns the total norm before clipping.
// With error_if_nonfinite a NaN or infinite total throws ValueError and
// leaves the gradients unchanged; without it a NaN total scales the
// gradients to NaN, as torch does. Other errors as grad_norm.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// The scaling step of clip_grad_norm_ with the total norm already known
// (torch.nn.utils.clip_grads_with_norm_): every gradient times
// max_norm / (total_norm + 1e-6) when that is below 1 (or NaN). For a
// caller that has just taken grad_norm, e.g. to log it: the norm is not
// taken twice (on a GPU, one read of the device fewer).
void clip_grads_with_norm_(const std::vector<Tensor>& params, double max_norm, double total_norm);

// +infinity, to spell norm_type = inf.
inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();

}  // namespace crfseg::optim
