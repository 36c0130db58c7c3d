// Transposing copies for the GEMM packers: the rows of a few source rows
// become the columns of the packed panel.
//
// Both packers of a weight-gradient GEMM (dW = dy . col(x)^T, whose depth
// is the pixels, the contiguous axis of both operands) and the packing of a
// row-major A operand write with stride MR or NR what they read with stride
// 1: one float per store. Scalar, that took 2-3 cycles per float on Zen 5
// and cost more than the micro-kernel did on the U-Net's 64-channel layers.
// The AVX-512 version moves 16 x 16 tiles through registers (64 shuffles per
// 256 floats) and stores whole packed rows.
// Test: tests/kernels/test_gemm.cpp ("transpose_pack ..."); the packers'
// callers are covered by the GEMM and convolution tests.
#pragma once

#include <cstdint>

namespace crfseg::kernels::cpu {

// dst[k * ld_dst + r] = alpha * src[r][k] for r < rows, k < kc; rows <= 16.
// Entries of dst rows with r >= rows are left as they are.
// transpose_pack_ref is the plain loop; transpose_pack runs the AVX-512 one
// where the CPU has it (cpu_features.h), else the plain loop.
void transpose_pack_ref(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst);
void transpose_pack(const float* const* src, int rows, int64_t kc, float alpha, float* dst, int64_t ld_dst);

}  // namespace crfseg::kernels::cpu
