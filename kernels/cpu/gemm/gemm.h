// CPU SGEMM variants and their registry.
//
// Every variant has the signature of kernels::ref::gemm<float> (row-major,
// any transposes, alpha/beta, any M/N/K, leading dims >= row length) and must
// handle every size: tests/kernels/test_gemm.cpp runs each registered variant
// against the reference on awkward shapes, and bench/bench_gemm times them.
//
// The teaching ladder (one file each, numbered):
//   v0_naive       : the reference loop order i-j-k, float accumulation
//   v1_loop_order  : i-k-j so the inner loop streams rows of B and C (vectorises),
//                    OpenMP over rows of C
//   v2_blocking_packing    : BLIS loops (blis_loops.h), packed A/B panels,
//                            portable 6x16 C++ micro-kernel, OpenMP over ic
//   v3_ukernel_avx2_6x16   : v2 with an AVX2+FMA intrinsics micro-kernel
//   v4_ukernel_avx512_12x32: v3's loops with an AVX-512F 12x32 micro-kernel and block sizes for it
//   v5_avx512_12x32_a_resident: v4's micro-kernel with the macro-kernel's loops swapped (A's
//                            micro-panel in L1, B's block in L2) and block sizes for Intel cores;
//                            production on Intel CPUs, v4 elsewhere
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/gemm/blis_loops.h"

namespace crfseg::kernels::cpu {

using SgemmFn = void (*)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                         int64_t ldc);

struct SgemmVariant {
  std::string name;
  SgemmFn fn;
  std::string constraints;  // e.g. "needs AVX2"; "" when none
  bool (*available)();      // runtime CPU-feature check
  const BlisConfig& (*blis)();  // block sizes + micro-kernel of BLIS-style variants; nullptr otherwise
  // For the production pick: nullptr, or a check that this CPU is one the
  // variant was tuned for (an available variant that is not preferred is
  // still tested and benchmarked, just not picked).
  bool (*preferred)() = nullptr;
};

// All variants, in ladder order.
const std::vector<SgemmVariant>& sgemm_variants();
// Looks a variant up by name; throws ValueError listing the names otherwise.
const SgemmVariant& sgemm_variant(const std::string& name);

void sgemm_v0_naive(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                    float, float*, int64_t);
void sgemm_v1_loop_order(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t);
void sgemm_v2_blocking_packing(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                               int64_t, float, float*, int64_t);
// Needs AVX2+FMA: call only when has_avx2_fma().
void sgemm_v3_ukernel_avx2_6x16(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                int64_t, float, float*, int64_t);

// Needs AVX-512F: call only when has_avx512f().
void sgemm_v4_ukernel_avx512_12x32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                   const float*, int64_t, float, float*, int64_t);
// Needs AVX-512F: call only when has_avx512f().
void sgemm_v5_avx512_12x32_a_resident(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                      const float*, int64_t, float, float*, int64_t);

// Production entry: the last available variant in ladder order that is
// preferred on this CPU (SgemmVariant::preferred), unless the environment
// variable CRFSEG_SGEMM=<name> selects another (for performance research).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The name of the variant sgemm() runs (the dispatch rule above).
const std::string& sgemm_production_name();
// The BLIS configuration (micro-kernel, block sizes) of the production
// variant, or of v2 when the production variant is not BLIS-style. The
// convolutions use it to run their implicit-im2col GEMMs (kernels/cpu/conv2d.cpp).
const BlisConfig& sgemm_blis_config();
const BlisConfig& sgemm_v2_config();
const BlisConfig& sgemm_v3_config();
const BlisConfig& sgemm_v4_config();
// v4's micro-kernels with B prefetched a few k-steps ahead (v4's block sizes); v5 builds on it.
const BlisConfig& sgemm_v4_prefetch_b_config();
const BlisConfig& sgemm_v5_config();

// The f64 GEMM used by gradient checks: v1's loop order, in double.
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace crfseg::kernels::cpu
