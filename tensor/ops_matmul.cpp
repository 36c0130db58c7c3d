// matmul: batched, broadcasting a @ b on top of the CPU GEMM kernels.
//
// A transposed view (last two strides swapped) is passed to GEMM as a
// transpose flag instead of being copied, so x @ w.T costs no copy.
#include "kernels/cpu/gemm/gemm.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/ops_cuda.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/gemm/gemm.h"
#endif

namespace crfseg::ops {

namespace {

// How a 2-D matrix view maps onto GEMM's (pointer, trans, ld) arguments.
struct MatrixArg {
  bool trans;
  int64_t ld;
};

// Describes t's last two dims (rows x cols, strides rs, cs) as GEMM
// arguments: unit column stride -> plain with ld = rs; unit row stride ->
// transposed with ld = cs; neither -> {false, -1}, and the caller copies.
// GEMM only reads A and B, so a 0 or unusual ld is harmless here.
MatrixArg as_gemm_arg(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  const int64_t rs = t.stride(-2), cs = t.stride(-1);
  if (cs == 1 || cols == 1) return {false, rows == 1 ? cols : rs};
  if (rs == 1 || rows == 1) return {true, cs};
  return {false, -1};
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_defined("matmul", a_in, "a");
  check_defined("matmul", b_in, "b");
  CRFSEG_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, ShapeError, "matmul: expected tensors with >= 2 dims, got ",
               shape_str(a_in.shape()), " and ", shape_str(b_in.shape()));
  CRFSEG_CHECK(a_in.dtype() == b_in.dtype(), DTypeError, "matmul: expected operands of the same dtype, got ",
               dtype_name(a_in.dtype()), " and ", dtype_name(b_in.dtype()));
  check_same_device("matmul", a_in, b_in);
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  CRFSEG_CHECK(b_in.size(-2) == K, ShapeError, "matmul: inner dims differ: ", shape_str(a_in.shape()), " @ ",
               shape_str(b_in.shape()), " (", K, " vs ", b_in.size(-2), ")");

  // Broadcast the batch dims, then view both operands as [batch, rows, cols].
  const Shape a_batch(a_in.shape().begin(), a_in.shape().end() - 2);
  const Shape b_batch(b_in.shape().begin(), b_in.shape().end() - 2);
  const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape a_full = batch, b_full = batch, out_shape = batch;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  out_shape.insert(out_shape.end(), {M, N});
  Tensor a = expand(a_in, a_full), b = expand(b_in, b_full);
  MatrixArg ga = as_gemm_arg(a), gb = as_gemm_arg(b);
  if (ga.ld < 0) { a = contiguous(a); ga = as_gemm_arg(a); }
  if (gb.ld < 0) { b = contiguous(b); gb = as_gemm_arg(b); }
  if (a.device().is_cuda()) {
    // cuBLAS needs ld >= the stored row length (>= 1), which a broadcast
    // (stride 0) row or column does not give: copy such an operand.
    auto valid = [](const Tensor& t, const MatrixArg& g) {
      const int64_t stored_cols = g.trans ? t.size(-2) : t.size(-1);
      return g.ld >= std::max<int64_t>(1, stored_cols);
    };
    if (!valid(a, ga)) { a = contiguous(a); ga = as_gemm_arg(a); }
    if (!valid(b, gb)) { b = contiguous(b); gb = as_gemm_arg(b); }
  }

  Tensor out = Tensor::empty(out_shape, a.options());
  const int64_t nbatch = numel(batch);
  const Strides bstrides = contiguous_strides(batch);
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < nbatch; ++i) {
      int64_t oa = 0, ob = 0, rest = i;
      for (size_t d = 0; d < batch.size(); ++d) {
        const int64_t idx = rest / bstrides[d];
        rest %= bstrides[d];
        oa += idx * a.strides()[d];
        ob += idx * b.strides()[d];
      }
      const T* pa = a.data<T>() + oa;
      const T* pb = b.data<T>() + ob;
      T* pc = out.data<T>() + i * M * N;
#ifdef CRFSEG_WITH_CUDA
      if (out.device().is_cuda()) {
        const auto stream = detail::stream_of(out);
        if constexpr (std::is_same_v<T, float>) {
          kernels::cuda::sgemm(ga.trans, gb.trans, M, N, K, 1.0f, pa, ga.ld, pb, gb.ld, 0.0f, pc,
                               std::max<int64_t>(N, 1), stream);
        } else {
          kernels::cuda::dgemm(ga.trans, gb.trans, M, N, K, 1.0, pa, ga.ld, pb, gb.ld, 0.0, pc,
                               std::max<int64_t>(N, 1), stream);
        }
        continue;
      }
#endif
      check_cpu("matmul", out);
      if constexpr (std::is_same_v<T, float>) {
        kernels::cpu::sgemm(ga.trans, gb.trans, M, N, K, 1.0f, pa, ga.ld, pb, gb.ld, 0.0f, pc, std::max<int64_t>(N, 1));
      } else {
        kernels::cpu::dgemm(ga.trans, gb.trans, M, N, K, 1.0, pa, ga.ld, pb, gb.ld, 0.0, pc, std::max<int64_t>(N, 1));
      }
    }
  });
  return out;
}

}  // namespace crfseg::ops
