// The BLIS loop nest shared by the blocked SGEMM variants (v2, v3).
//
// C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C, row-major.
// The five loops around one MR x NR micro-kernel (Van Zee & van de Geijn,
// "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", TOMS 2015;
// Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication"):
//   jc over N in steps of NC : one KC x NC block of op(B) is packed (-> L3)
//     pc over K in steps of KC
//       ic over M in steps of MC : one MC x KC block of op(A) is packed (-> L2)
//         jr over NC in steps of NR : one KC x NR micro-panel of B (-> L1, or L2 if larger)
//           ir over MC in steps of MR : micro-kernel, MR x NR tile of C in registers
// Variants differ only in the micro-kernel and the block sizes, which each
// variant file keeps in one BlisConfig next to its micro-kernel.
// Test: build/tests/test_kernels; bench: build/bench/bench_gemm.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tensor/cpu_allocator.h"

namespace crfseg::kernels::cpu {

// One micro-kernel call computes, for a full MR x NR tile,
//   C[i, j] = sum_k a[k * MR + i] * b[k * NR + j] + beta * C[i, j]
// where a is an MR-row micro-panel of packed A (alpha already folded in) and
// b an NR-column micro-panel of packed B, both kc deep. beta == 0 must
// overwrite C without reading it (old C may hold NaN), as in BLAS.
using SgemmMicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float beta, float* C,
                                    int64_t ldc);

// Block sizes and the micro-kernel of one variant. mc must be a multiple of
// mr and nc a multiple of nr; mr * nr must not exceed kMaxMicroTile.
// Optional micro-kernel for the last, partial row panel: rows < mr rows of
// the tile (the A micro-panel is still packed with stride mr), all nr
// columns, written straight into C with beta. Without it the full kernel
// computes an mr-row tile into scratch and the padded rows are wasted work:
// for M = 64 and mr = 12, a sixth of the panels would do 12 rows for 4.
using SgemmEdgeKernelFn = void (*)(int64_t rows, int64_t kc, const float* a, const float* b, float beta, float* C,
                                   int64_t ldc);
// Optional micro-kernel that reads B in place: rows <= mr rows of the tile,
// all nr columns, with row k of the B panel at b + k * ldb (a plain
// row-major matrix) instead of a packed micro-panel. Sums in the same order
// as the packed kernels, so the result is bit for bit the same.
using SgemmInPlaceKernelFn = void (*)(int64_t rows, int64_t kc, const float* a, const float* b, int64_t ldb,
                                      float beta, float* C, int64_t ldc);

// Optional micro-kernel for the last, narrower column panel: rows <= mr
// rows and cols < nr columns of the tile (the packed B panel is still nr
// wide, zero past cols), written straight into C with beta. Without it the
// full kernel computes an mr x nr tile into scratch, merged into C element
// by element: a panel of 16 columns did twice its work (the Winograd
// forward of a batch-1 16^2 layer has 16 tiles, all such panels).
using SgemmColsKernelFn = void (*)(int64_t rows, int64_t cols, int64_t kc, const float* a, const float* b, float beta,
                                   float* C, int64_t ldc);

struct BlisConfig {
  int64_t mr, nr;  // micro-tile held in registers
  int64_t mc;      // rows of the packed A block (sized for L2)
  int64_t kc;      // depth of both packed blocks (the longest; see v4's notes on choosing it)
  int64_t nc;      // columns of the packed B block (sized for L3)
  SgemmMicroKernelFn ukernel;
  SgemmEdgeKernelFn ukernel_rows = nullptr;  // optional, see above
  // The macro-kernel's loop order. false (BLIS's): jr outside ir, one B
  // micro-panel stays near (L1, or L2 when larger) while the A block
  // streams past it from L2.
  // true: ir outside jr, one A micro-panel (mr x kc) stays in L1 while the
  // B block (kc x nc, then sized for L2) streams past it. v5 explains when
  // that wins.
  bool a_resident = false;
  SgemmInPlaceKernelFn ukernel_b_in_place = nullptr;  // optional, see above
  // Optional: ukernel_b_in_place, but where beta == 0 it writes C's rows
  // with streaming stores (where 64-byte aligned, whole lines) and does
  // not prefetch them: for a large C written once, in one depth slice,
  // and read only after all the GEMMs (blis_block's stream_c). The caller
  // fences (_mm_sfence) before another thread reads C.
  SgemmInPlaceKernelFn ukernel_b_in_place_stream = nullptr;
  SgemmColsKernelFn ukernel_cols = nullptr;  // optional, see above
};

// Largest MR * NR the edge-tile scratch buffer supports (16 x 32 floats).
inline constexpr int64_t kMaxMicroTile = 512;

// Packs KC x NR micro-panels of some implicit B matrix: writes
// op(B)[p0 : p0+kc, j0 : j0+cols] (cols <= nr) as dst[k * nr + c], zero for
// c >= cols. A plain matrix uses pack_b_matrix; convolutions pass packers
// that read im2col entries straight from the image (kernels/cpu/conv2d.cpp),
// so no im2col buffer is ever built.
// Optional pack_block packs a whole KC x n block, ceil(n / nr) such
// micro-panels kc * nr floats apart, in one call, for packers that read the
// source faster in another order than panel by panel.
// Optional in_place: op(B)(k, j) = in_place[k * in_place_ld + j], a plain
// row-major matrix that blis_block may read without packing (full NR-wide
// panels, with a config's ukernel_b_in_place; the last, narrower panel is
// still packed). A 1x1 convolution's input image is such a B, and packing it
// was a third of the layer's GEMM time on ResNet-50's shapes.
struct BPanelPacker {
  using Fn = void (*)(const void* ctx, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr, float* dst);
  Fn pack;
  const void* ctx;
  Fn pack_block = nullptr;  // (ctx, p0, kc, j0, n, nr, dst)
  const float* in_place = nullptr;
  int64_t in_place_ld = 0;
};

// A row-major matrix (or its transpose) as a B operand.
struct MatrixOperand {
  const float* data;
  int64_t ld;
  bool trans;
};
void pack_b_matrix(const void* matrix_operand, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                   float* dst);
// The same for a whole block (BPanelPacker::pack_block): a row-major B is
// read row by row across all the block's panels, one contiguous run per row
// instead of NR floats of every row per panel (rows of a wide B lie far
// apart, and panel by panel the prefetchers see only short runs).
void pack_b_matrix_block(const void* matrix_operand, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr,
                         float* dst);
// The packer of m (which must outlive it); with in_place, a row-major m's
// full panels are read where they lie instead of packed (see in_place above).
inline BPanelPacker matrix_packer(const MatrixOperand& m, bool in_place) {
  BPanelPacker p{pack_b_matrix, &m, pack_b_matrix_block};
  if (in_place && !m.trans) {
    p.in_place = m.data;
    p.in_place_ld = m.ld;
  }
  return p;
}

// Per-thread packing buffers for blis_block, sized for blocks of at most
// cfg.mc rows and `max_cols` columns.
class BlisWorkspace {
 public:
  BlisWorkspace(const BlisConfig& cfg, int64_t K, int64_t max_cols);
  BlisWorkspace(const BlisWorkspace&) = delete;
  BlisWorkspace& operator=(const BlisWorkspace&) = delete;
  float* a() const { return a_.get(); }
  float* b() const { return b_.get(); }

 private:
  CpuArray<float> a_, b_;
};

// `count` workspaces, one per thread of a parallel region, made before the
// region starts: an out-of-memory error then reaches the caller instead of
// terminating the program inside OpenMP.
std::vector<std::unique_ptr<BlisWorkspace>> per_thread_workspaces(const BlisConfig& cfg, int count, int64_t K,
                                                                   int64_t max_cols);

// The A operand of blis_block: a plain row-major matrix (or its transpose)
// packed block by block as the loops reach it, or a matrix packed once up
// front by prepack_a and shared by all threads (convolution weights: packing
// them once instead of once per output block).
struct AOperand {
  const float* data;        // matrix: row 0 of the block; prepacked: prepack_a's buffer
  int64_t ld = 0;           // matrix only
  bool trans = false;       // matrix only
  float alpha = 1.0f;       // matrix only (prepack_a folds alpha in)
  int64_t packed_rows = 0;  // > 0 marks a prepacked operand: round_up(M, MR) of the packed matrix
  int64_t row0 = 0;         // prepacked only: the block's first row, a multiple of MR
};

// Packs alpha * op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row micro-panels at
// dst (the layout of one KC slice of prepack_a's, rows from i0).
// op(A)(i, k) is A[i * lda + k], or A[k * lda + i] when trans_a.
void pack_a(const BlisConfig& cfg, bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, float alpha, float* dst);

// Packs all of alpha * op(A) (M x K) in the layout blis_block reads: for
// each KC slice starting at pc, round_up(M, MR) rows of MR-row micro-panels
// at offset pc * round_up(M, MR). Returns the buffer (round_up(M, MR) * K
// floats, left uninitialised before packing: no wasted zero fill).
CpuArray<float> prepack_a(const BlisConfig& cfg, bool trans, const float* A, int64_t lda, int64_t M, int64_t K,
                          float alpha);

// One thread's share: the m x n block of C at C (leading dim ldc) becomes
//   op(A)[0:m, 0:K] * op(B)[0:K, j0:j0+n] + beta * C
// with B given by a packer (j0 is passed through to it). Runs the jc, pc,
// ic, jr, ir loops single-threaded; callers parallelise over blocks.
// n must not exceed the workspace's max_cols.
// stream_c: where B is read in place, beta is 0 and K fits one depth
// slice (K <= cfg.kc), C goes out with streaming stores
// (cfg.ukernel_b_in_place_stream, where the config has it): no read of
// each C line before it is written, and the A and B blocks stay in L2.
// For a C too large for the caches that is read only after the parallel
// region (the Winograd products: 256 -> 256 at 64^2, batch 4, the 36
// products -6%). The caller fences before another thread reads C.
void blis_block(const BlisConfig& cfg, int64_t m, int64_t n, int64_t K, const AOperand& a, const BPanelPacker& b,
                int64_t j0, float beta, float* C, int64_t ldc, const BlisWorkspace& ws, bool stream_c = false);

// How an M x N output is cut into blocks for independent threads: rows in
// steps of mb (a multiple of MR), columns in steps of nb (a multiple of NR).
struct BlockGrid {
  int64_t mb, nb;
  int64_t row_blocks, col_blocks;
};
// Picks a grid with at least `min_blocks` blocks (when M and N allow it),
// row blocks no taller than MC and column blocks no wider than
// min(NC, max_nb) (rounded down to a multiple of NR, at least NR).
// a_prepacked: A was packed once for every block (prepack_a), so a row block
// may be taller than MC (blis_block steps through it MC rows at a time over
// one packed B block) and only B is repacked per extra row block. Then, when
// A is the larger operand (M > N), the rows are cut into exactly min_blocks
// blocks and each thread packs B once; otherwise all rows form one block and
// the columns alone are split, so B is packed exactly once.
BlockGrid choose_block_grid(const BlisConfig& cfg, int64_t M, int64_t N, int64_t min_blocks, int64_t max_nb,
                            bool a_prepacked = false);

// C [M, N] = A . op(B) + beta * C with A packed once by prepack_a (M rows,
// K deep, alpha folded in) and B given by a packer: the blocks of
// choose_block_grid (a_prepacked, at most 256 columns wide) shared among
// num_threads threads, each running blis_block. Each element of C is summed
// in the same order whatever the thread count.
void blis_sgemm_packed_a(const BlisConfig& cfg, int num_threads, const float* a_packed, int64_t M, int64_t N,
                         int64_t K, const BPanelPacker& b, float beta, float* C, int64_t ldc);
// Runs the five loops with cfg's micro-kernel. Same contract as SgemmFn:
// any M, N, K >= 0, any transposes, leading dims >= row length.
// Parallel (OpenMP) over ic blocks when M has enough of them for every
// thread, else over a 2-D grid of blocks (choose_block_grid) with private
// packing, which keeps short-and-wide products such as 64 x 4096 busy.
void blis_sgemm(const BlisConfig& cfg, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace crfseg::kernels::cpu
