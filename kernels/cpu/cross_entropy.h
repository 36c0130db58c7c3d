// Fused softmax cross-entropy with class weights and an ignore index, on
// logits viewed as [outer, C, inner] (e.g. N x C x (H*W)) and integer targets
// [outer, inner]. Mean reduction, with PyTorch's weighting:
//   loss = sum_p w[t_p] * (-log softmax(x_p)[t_p]) / sum_p w[t_p]
// over positions p whose target is not ignore_index (w = 1 when no weights).
// Backward, with incoming scalar gradient g and W = sum_p w[t_p]:
//   dx_p,c = g * w[t_p] / W * (softmax(x_p)_c - [c == t_p]),   0 at ignored p.
// The forward keeps log-probabilities for the backward (one pass each way).
// Sums run over a fixed number of chunks combined in order, so the loss is
// bit-identical for any thread count.
#pragma once

#include <cstdint>

namespace crfseg::kernels::cpu {

struct CrossEntropySums {
  double loss_sum;      // sum of w[t] * nll over valid positions
  double weight_sum;    // W
  int64_t first_bad;    // index of a target outside [0, C) (not ignored), or -1
};

// log_probs receives log_softmax(logits) over C. weight may be null.
template <typename T>
CrossEntropySums cross_entropy_forward(const T* logits, const int64_t* target, const T* weight, T* log_probs,
                                       int64_t outer, int64_t C, int64_t inner, int64_t ignore_index);

template <typename T>
void cross_entropy_backward(T grad, const T* log_probs, const int64_t* target, const T* weight, double weight_sum,
                            T* dlogits, int64_t outer, int64_t C, int64_t inner, int64_t ignore_index);

}  // namespace crfseg::kernels::cpu
