// The SGEMM registry and the production dispatch rule.
//
// Rule: use the last available variant in ladder order that is preferred on
// this CPU (v5's block sizes were measured on Intel cores, v4's on AMD Zen),
// unless CRFSEG_SGEMM names another. Tests and benchmarks iterate sgemm_variants(),
// so a new variant is verified and timed by adding one line here.
#include <cstdlib>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm/gemm.h"
#include "tensor/error.h"

namespace crfseg::kernels::cpu {

namespace {
bool always() { return true; }
}  // namespace

const std::vector<SgemmVariant>& sgemm_variants() {
  static const std::vector<SgemmVariant> variants = {
      {"v0_naive", sgemm_v0_naive, "", always, nullptr},
      {"v1_loop_order", sgemm_v1_loop_order, "", always, nullptr},
      {"v2_blocking_packing", sgemm_v2_blocking_packing, "", always, sgemm_v2_config},
      {"v3_ukernel_avx2_6x16", sgemm_v3_ukernel_avx2_6x16, "needs AVX2+FMA", has_avx2_fma, sgemm_v3_config},
      {"v4_ukernel_avx512_12x32", sgemm_v4_ukernel_avx512_12x32, "needs AVX-512F", has_avx512f, sgemm_v4_config},
      {"v5_avx512_12x32_a_resident", sgemm_v5_avx512_12x32_a_resident, "needs AVX-512F", has_avx512f,
       sgemm_v5_config, is_intel_cpu},
  };
  return variants;
}

const SgemmVariant& sgemm_variant(const std::string& name) {
  std::string names;
  for (const SgemmVariant& v : sgemm_variants()) {
    if (v.name == name) return v;
    names += (names.empty() ? "" : ", ") + v.name;
  }
  CRFSEG_CHECK(false, ValueError, "sgemm: unknown variant \"", name, "\"; known: ", names);
  return sgemm_variants().front();
}

namespace {
const SgemmVariant& pick_production() {
  if (const char* env = std::getenv("CRFSEG_SGEMM")) {
    const SgemmVariant& v = sgemm_variant(env);
    CRFSEG_CHECK(v.available(), NotImplementedError, "sgemm: variant ", v.name, " ", v.constraints,
                 ", which this CPU lacks");
    return v;
  }
  const SgemmVariant* best = nullptr;
  for (const SgemmVariant& v : sgemm_variants()) {
    if (v.available() && (v.preferred == nullptr || v.preferred())) best = &v;
  }
  return *best;
}
}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static const SgemmFn fn = pick_production().fn;
  fn(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace crfseg::kernels::cpu

namespace crfseg::kernels::cpu {

const std::string& sgemm_production_name() { return pick_production().name; }

const BlisConfig& sgemm_blis_config() {
  static const BlisConfig& cfg = pick_production().blis ? pick_production().blis() : sgemm_v2_config();
  return cfg;
}

}  // namespace crfseg::kernels::cpu
