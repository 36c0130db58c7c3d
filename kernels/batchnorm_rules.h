// The CUDA batch norm's gradient with respect to its input, folded per
// channel (host-device code, so the CPU tests check the algebra).
//
// With xhat = (x - mean) is, the batch's sums Sg = sum gm and
// Sgx = sum gm xhat over the channel's M values, and gm the incoming
// gradient (masked by y > 0 when a ReLU is fused):
//   dx = w is (gm - Sg / M - xhat Sgx / M)
//      = A gm + (B (x - mean) + D),
//   A = w is,  B = -A is Sgx / M,  D = -A Sg / M.
// In eval the statistics are constants: dx = A gm (B = D = 0).
// The coefficients are formed once per channel in double (the value pass
// then has no division), and each value costs a subtraction and two
// multiply-adds, in double too (rounded once to the tensor's type, as the
// reference kernel's per-value formula is).
#pragma once

#include "kernels/hd.h"

namespace crfseg::kernels {

struct BatchNormDx {
  double a, b, d;
};

CRFSEG_HD inline BatchNormDx batchnorm_dx_coefficients(double weight, double invstd, double sum_g, double sum_gxhat,
                                                       double inv_count, bool training) {
  const double a = weight * invstd;
  if (!training) return {a, 0.0, 0.0};
  return {a, -a * invstd * sum_gxhat * inv_count, -a * sum_g * inv_count};
}

template <typename T>
CRFSEG_HD inline T batchnorm_dx_value(T a, T b, T d, T mean, T gm, T x) {
  return a * gm + (b * (x - mean) + d);
}

}  // namespace crfseg::kernels
