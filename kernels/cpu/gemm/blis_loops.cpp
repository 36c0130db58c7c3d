// The BLIS loop nest, packing routines and macro-kernel shared by the blocked
// SGEMM variants; see blis_loops.h for the loop structure and references.
//
// Packed layouts (both zero-padded to full micro-tiles, so the micro-kernel
// never needs bounds checks and never sees a transpose or a leading dim):
//   A block (mc x kc): ceil(mc / MR) micro-panels, each kc x MR with the MR
//     rows of one k adjacent: a_pack[panel][k][r]. alpha is folded in here
//     (MK multiplies instead of MN in the micro-kernel).
//   B block (kc x nc): ceil(nc / NR) micro-panels, each kc x NR with the NR
//     columns of one k adjacent: b_pack[panel][k][c].
// The micro-kernel then reads both panels with unit stride, k after k.
#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/cpu/gemm/blis_loops.h"
#include "kernels/cpu/gemm/transpose_pack.h"

namespace crfseg::kernels::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Column-block width for the per-thread grid: a KC x 256 packed B block,
// 256 KiB at KC = 256 (half of Zen 3's 512 KiB L2), was sized so packing
// writes and micro-kernel reads of B stay in L2 instead of going through L3
// as the shared NC-wide block does. At v4's KC = 1024 it is 1 MiB, all of
// Zen 5's L2; the convolutions that use this grid kept their times when v4
// went from KC = 512 to 1024 (session 30), so the width stayed.
constexpr int64_t kL2Columns = 256;

// Below this M*N*K (~100^3) a parallel region costs more than it saves.
constexpr int64_t kParallelMinWork = int64_t(1) << 20;

}  // namespace

void pack_a(const BlisConfig& cfg, bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, float alpha, float* dst) {
  const int64_t mr = cfg.mr;
  if (trans_a) {
    // A stores op(A)^T: for a fixed k the mc rows are one contiguous run,
    // read once and dealt out to the micro-panels. (Panel by panel, each
    // read 4 KiB-strided pieces of the same rows: with lda a multiple of
    // 1024 they all fall in one L1 set.)
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + (p0 + k) * lda + i0;
      for (int64_t ir = 0; ir < mc; ir += mr) {
        const int64_t rows = std::min(mr, mc - ir);
        float* out = dst + ir * kc + k * mr;
        for (int64_t r = 0; r < rows; ++r) out[r] = alpha * src[ir + r];
        for (int64_t r = rows; r < mr; ++r) out[r] = 0.0f;
      }
    }
    return;
  }
  for (int64_t ir = 0; ir < mc; ir += mr) {
    const int64_t rows = std::min(mr, mc - ir);
    float* panel = dst + ir * kc;
    if (mr <= 16) {
      // Each row of A is contiguous in k: a transposing copy (transpose_pack.h).
      const float* src[16];
      for (int64_t r = 0; r < rows; ++r) src[r] = A + (i0 + ir + r) * lda + p0;
      transpose_pack(src, static_cast<int>(rows), kc, alpha, panel, mr);
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = A + (i0 + ir + r) * lda + p0;
        for (int64_t k = 0; k < kc; ++k) panel[k * mr + r] = alpha * src[k];
      }
    }
    // Zero rows past the edge: they produce zero rows of the temporary tile,
    // which the macro-kernel never writes back.
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = rows; r < mr; ++r) panel[k * mr + r] = 0.0f;
  }
}

namespace {

// Loops jr and ir over one packed A block (m x kc) and B block (kc x n),
// updating the m x n block of C at C (leading dim ldc). With b_in_place, the
// full NR-column panels are read from that row-major matrix (rows ldb
// apart) by cfg.ukernel_b_in_place (or, with stream_c and beta 0, its
// streaming form), and only a last, narrower panel from b_pack (at its
// packed offset).
void macro_kernel(const BlisConfig& cfg, int64_t m, int64_t n, int64_t kc, const float* a_pack, const float* b_pack,
                  float beta, float* C, int64_t ldc, const float* b_in_place = nullptr, int64_t ldb = 0,
                  bool stream_c = false) {
  const int64_t mr = cfg.mr, nr = cfg.nr;
  const SgemmInPlaceKernelFn in_place_kernel =
      stream_c && beta == 0.0f && cfg.ukernel_b_in_place_stream != nullptr ? cfg.ukernel_b_in_place_stream
                                                                           : cfg.ukernel_b_in_place;
  alignas(64) float tile[kMaxMicroTile];
  // The C tile at rows ir, columns jr.
  const auto update = [&](int64_t ir, int64_t jr) {
    const int64_t rows = std::min(mr, m - ir), cols = std::min(nr, n - jr);
    const float* a = a_pack + ir * kc;
    const float* b = b_pack + jr * kc;
    float* c = C + ir * ldc + jr;
    if (b_in_place != nullptr && cols == nr) {
      in_place_kernel(rows, kc, a, b_in_place + jr, ldb, beta, c, ldc);
      return;
    }
    if (rows == mr && cols == nr) {
      cfg.ukernel(kc, a, b, beta, c, ldc);
      return;
    }
    if (cols == nr && cfg.ukernel_rows != nullptr) {
      cfg.ukernel_rows(rows, kc, a, b, beta, c, ldc);
      return;
    }
    if (cols < nr && cfg.ukernel_cols != nullptr) {
      cfg.ukernel_cols(rows, cols, kc, a, b, beta, c, ldc);
      return;
    }
    // Edge tile: the micro-kernel writes a full MR x NR tile to scratch
    // (beta = 0, so scratch is not read), and only the valid part is merged.
    cfg.ukernel(kc, a, b, 0.0f, tile, nr);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) {
        float& out = c[r * ldc + j];
        out = beta == 0.0f ? tile[r * nr + j] : tile[r * nr + j] + beta * out;
      }
    }
  };
  if (cfg.a_resident) {
    // ir outside jr: one MR x KC micro-panel of A stays in L1 while the
    // packed B block streams past it from L2.
    for (int64_t ir = 0; ir < m; ir += mr)
      for (int64_t jr = 0; jr < n; jr += nr) update(ir, jr);
  } else {
    // jr outside ir: one KC x NR micro-panel of B (kc * nr * 4 bytes) stays
    // near while the whole packed A block streams past it from L2: in L1
    // when it fits, else in L2 with the micro-kernel prefetching it (v4's,
    // 128 KiB at KC = 1024).
    for (int64_t jr = 0; jr < n; jr += nr)
      for (int64_t ir = 0; ir < m; ir += mr) update(ir, jr);
  }
}

// C = beta * C for the K == 0 / alpha == 0 cases (BLAS: A and B unread).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
  }
}

}  // namespace

// Packs op(B)[p0 : p0+kc, j0 : j0+cols] (cols <= NR) into one NR-column
// micro-panel, zero-padding columns cols..NR-1.
// op(B)(k, j) is B[k * ldb + j], or B[j * ldb + k] when trans_b.
void pack_b_matrix(const void* matrix_operand, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                   float* dst) {
  const auto& op = *static_cast<const MatrixOperand*>(matrix_operand);
  if (!op.trans) {
    // Row k of B is contiguous in j: a straight copy of cols floats per k.
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = op.data + (p0 + k) * op.ld + j0;
      float* d = dst + k * nr;
      for (int64_t c = 0; c < cols; ++c) d[c] = src[c];
      for (int64_t c = cols; c < nr; ++c) d[c] = 0.0f;
    }
    return;
  }
  // B stores op(B)^T: column j of op(B) is contiguous in k, and lands with
  // stride NR. 16 columns at a time through transpose_pack: one float per
  // store, scalar, made this packer 40% of a 1x1 convolution's weight
  // gradient (256 -> 64 at 56^2, batch 8), twice its micro-kernel's time.
  constexpr int64_t kGroup = 16;  // transpose_pack's most rows
  for (int64_t c0 = 0; c0 < nr; c0 += kGroup) {
    const int64_t width = std::min(kGroup, nr - c0);
    const int rows = static_cast<int>(std::clamp<int64_t>(cols - c0, 0, width));
    if (rows > 0) {
      const float* src[kGroup];
      for (int r = 0; r < rows; ++r) src[r] = op.data + (j0 + c0 + r) * op.ld + p0;
      transpose_pack(src, rows, kc, 1.0f, dst + c0, nr);
    }
    if (rows < width)
      for (int64_t k = 0; k < kc; ++k) std::fill(dst + k * nr + c0 + rows, dst + k * nr + c0 + width, 0.0f);
  }
}

void pack_b_matrix_block(const void* matrix_operand, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr,
                         float* dst) {
  const auto& op = *static_cast<const MatrixOperand*>(matrix_operand);
  if (op.trans) {  // columns of op(B) are contiguous: panel by panel already reads them in order
    for (int64_t jp = 0; jp < n; jp += nr) {
      pack_b_matrix(matrix_operand, p0, kc, j0 + jp, std::min(nr, n - jp), nr, dst + jp * kc);
    }
    return;
  }
  const int64_t full = n / nr, tail = n % nr;
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = op.data + (p0 + k) * op.ld + j0;
    float* d = dst + k * nr;
    for (int64_t p = 0; p < full; ++p) std::copy(src + p * nr, src + (p + 1) * nr, d + p * kc * nr);
    if (tail > 0) {
      float* t = d + full * kc * nr;
      std::copy(src + full * nr, src + n, t);
      std::fill(t + tail, t + nr, 0.0f);
    }
  }
}

BlisWorkspace::BlisWorkspace(const BlisConfig& cfg, int64_t K, int64_t max_cols)
    : a_(cpu_array<float>(cfg.mc * std::min(cfg.kc, std::max<int64_t>(K, 1)))),
      b_(cpu_array<float>(std::min(cfg.kc, std::max<int64_t>(K, 1)) *
                          std::min(cfg.nc, round_up(std::max<int64_t>(max_cols, 1), cfg.nr)))) {}

CpuArray<float> prepack_a(const BlisConfig& cfg, bool trans, const float* A, int64_t lda, int64_t M, int64_t K,
                          float alpha) {
  const int64_t mpad = round_up(M, cfg.mr);
  CpuArray<float> packed = cpu_array<float>(mpad * K);
  // Tasks of (KC block, 8 MR panels): the callers (convolution weights, up
  // to 2048 x 4608) run this before their parallel region, so on one thread
  // it would leave the others idle. Rows from i0 of block pc start at
  // pc * mpad + i0 * kc, as one pack_a call over all M rows would put them.
  const int64_t chunk = 8 * cfg.mr, row_tasks = ceil_div(std::max<int64_t>(M, 1), chunk);
  const int64_t tasks = ceil_div(K, cfg.kc) * row_tasks;
  const bool parallel = M * K >= (int64_t{1} << 16) && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t pc = (t / row_tasks) * cfg.kc, i0 = (t % row_tasks) * chunk;
    const int64_t kc = std::min(cfg.kc, K - pc), mc = std::min(chunk, M - i0);
    if (mc > 0) pack_a(cfg, trans, A, lda, i0, mc, pc, kc, alpha, packed.get() + pc * mpad + i0 * kc);
  }
  return packed;
}

void blis_block(const BlisConfig& cfg, int64_t m, int64_t n, int64_t K, const AOperand& a, const BPanelPacker& b,
                int64_t j0, float beta, float* C, int64_t ldc, const BlisWorkspace& ws, bool stream_c) {
  if (m <= 0 || n <= 0) return;
  if (K <= 0 || (a.packed_rows == 0 && a.alpha == 0.0f)) {
    scale_c(m, n, beta, C, ldc);
    return;
  }
  const bool in_place = b.in_place != nullptr && cfg.ukernel_b_in_place != nullptr;
  // Only a single depth slice streams: a second one would read back from
  // memory the C its first slice had just sent around the caches.
  stream_c = stream_c && K <= cfg.kc;
  for (int64_t jc = 0; jc < n; jc += cfg.nc) {
    const int64_t nc = std::min(cfg.nc, n - jc);
    for (int64_t pc = 0; pc < K; pc += cfg.kc) {
      const int64_t kc = std::min(cfg.kc, K - pc);
      const float beta_pc = pc == 0 ? beta : 1.0f;
      if (in_place) {  // only a last, narrower panel is packed
        const int64_t full = nc / cfg.nr * cfg.nr;
        if (full < nc) b.pack(b.ctx, pc, kc, j0 + jc + full, nc - full, cfg.nr, ws.b() + full * kc);
      } else if (b.pack_block != nullptr) {
        b.pack_block(b.ctx, pc, kc, j0 + jc, nc, cfg.nr, ws.b());
      } else {
        for (int64_t jp = 0; jp < nc; jp += cfg.nr) {
          b.pack(b.ctx, pc, kc, j0 + jc + jp, std::min(cfg.nr, nc - jp), cfg.nr, ws.b() + jp * kc);
        }
      }
      for (int64_t ic = 0; ic < m; ic += cfg.mc) {
        const int64_t mc = std::min(cfg.mc, m - ic);
        const float* a_block;
        if (a.packed_rows > 0) {
          a_block = a.data + pc * a.packed_rows + (a.row0 + ic) * kc;
        } else {
          pack_a(cfg, a.trans, a.data, a.ld, ic, mc, pc, kc, a.alpha, ws.a());  // rows from ic of this block
          a_block = ws.a();
        }
        macro_kernel(cfg, mc, nc, kc, a_block, ws.b(), beta_pc, C + ic * ldc + jc, ldc,
                     in_place ? b.in_place + pc * b.in_place_ld + j0 + jc : nullptr, b.in_place_ld, stream_c);
      }
    }
  }
}

BlockGrid choose_block_grid(const BlisConfig& cfg, int64_t M, int64_t N, int64_t min_blocks, int64_t max_nb,
                            bool a_prepacked) {
  const int64_t nc = std::max(cfg.nr, std::min(cfg.nc, max_nb / cfg.nr * cfg.nr));
  BlockGrid g;
  // Rows: as few blocks as MC allows (each row block repacks all of B); with
  // a prepacked A, one block per thread when A is the larger operand, else
  // one block of all rows.
  if (a_prepacked) {
    g.row_blocks = M > N ? std::min<int64_t>(std::max<int64_t>(min_blocks, 1), ceil_div(M, cfg.mr)) : 1;
  } else {
    g.row_blocks = std::max<int64_t>(1, ceil_div(M, cfg.mc));
  }
  g.mb = round_up(ceil_div(std::max<int64_t>(M, 1), g.row_blocks), cfg.mr);
  g.row_blocks = std::max<int64_t>(1, ceil_div(M, g.mb));
  // Columns: enough blocks for min_blocks in total, none wider than NC and,
  // where N allows, none narrower than 4 micro-panels (packing A per block
  // must stay cheap next to the block's flops).
  int64_t col_blocks = std::max(ceil_div(min_blocks, g.row_blocks), ceil_div(N, nc));
  col_blocks = std::min(col_blocks, std::max<int64_t>(1, ceil_div(N, 4 * cfg.nr)));
  col_blocks = std::max(col_blocks, ceil_div(N, nc));
  g.nb = round_up(ceil_div(std::max<int64_t>(N, 1), std::max<int64_t>(col_blocks, 1)), cfg.nr);
  g.col_blocks = std::max<int64_t>(1, ceil_div(N, g.nb));
  // Balance: when there are more blocks than threads, make the count a
  // multiple of min_blocks (e.g. 4 blocks for 2 threads, not 3), so no
  // thread does one block more than the others.
  // Blocks are whole micro-panels wide, so asking for cb blocks may give
  // fewer (N = 2304, a 256-channel weight gradient: 10 asked, 9 of 256
  // columns, one thread doing 5 and the other 4); the count that matters
  // is the one the rounded width gives, tried up to one panel per block
  // (there: 12 blocks of 192).
  if (min_blocks > 1 && (g.row_blocks * g.col_blocks) % min_blocks != 0) {
    for (int64_t cb = g.col_blocks + 1; cb <= ceil_div(N, cfg.nr); ++cb) {
      const int64_t nb = round_up(ceil_div(std::max<int64_t>(N, 1), cb), cfg.nr);
      if ((g.row_blocks * ceil_div(N, nb)) % min_blocks == 0) {
        g.nb = nb;
        g.col_blocks = ceil_div(N, nb);
        break;
      }
    }
  }
  // Too few rows and columns for min_blocks: split rows further (MR-high blocks at least).
  if (g.row_blocks * g.col_blocks < min_blocks && M > cfg.mr) {
    const int64_t want_rows = std::min(ceil_div(min_blocks, g.col_blocks), ceil_div(M, cfg.mr));
    g.mb = round_up(ceil_div(M, want_rows), cfg.mr);
    g.row_blocks = ceil_div(M, g.mb);
  }
  return g;
}

namespace {
// Short-and-wide products (M below a few MR per thread): every thread takes
// whole blocks of a 2-D grid and packs its own B; A, the small operand, is
// packed once for all of them (prepack_a).
void sgemm_block_grid(const BlisConfig& cfg, int num_threads, bool trans_a, int64_t M, int64_t N, int64_t K,
                      float alpha, const float* A, int64_t lda, const MatrixOperand& b_operand, float beta, float* C,
                      int64_t ldc) {
  // A is packed once, up front, and shared: the blocks then only pack B.
  const CpuArray<float> a_packed = prepack_a(cfg, trans_a, A, lda, M, K, alpha);
  blis_sgemm_packed_a(cfg, num_threads, a_packed.get(), M, N, K, {pack_b_matrix, &b_operand, pack_b_matrix_block},
                      beta, C, ldc);
}
}  // namespace

std::vector<std::unique_ptr<BlisWorkspace>> per_thread_workspaces(const BlisConfig& cfg, int count, int64_t K,
                                                                   int64_t max_cols) {
  std::vector<std::unique_ptr<BlisWorkspace>> workspaces;
  for (int t = 0; t < count; ++t) workspaces.push_back(std::make_unique<BlisWorkspace>(cfg, K, max_cols));
  return workspaces;
}

void blis_sgemm_packed_a(const BlisConfig& cfg, int num_threads, const float* a_packed, int64_t M, int64_t N,
                         int64_t K, const BPanelPacker& b, float beta, float* C, int64_t ldc) {
  const BlockGrid g = choose_block_grid(cfg, M, N, num_threads, kL2Columns, /*a_prepacked=*/true);
  const int64_t a_rows = round_up(M, cfg.mr);
  const auto workspaces = per_thread_workspaces(cfg, num_threads, K, g.nb);
#pragma omp parallel num_threads(num_threads)
  {
    const BlisWorkspace& ws = *workspaces[omp_get_thread_num()];
#pragma omp for schedule(static)
    for (int64_t t = 0; t < g.row_blocks * g.col_blocks; ++t) {
      const int64_t i0 = (t / g.col_blocks) * g.mb, j0 = (t % g.col_blocks) * g.nb;
      const AOperand a{a_packed, 0, false, 1.0f, a_rows, i0};
      blis_block(cfg, std::min(g.mb, M - i0), std::min(g.nb, N - j0), K, a, b, j0, beta, C + i0 * ldc + j0, ldc,
                 ws);
    }
  }
}

void blis_sgemm(const BlisConfig& cfg, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int num_threads = M * N * K >= kParallelMinWork ? omp_get_max_threads() : 1;

  // Thread partitioning: threads split the ic loop. Every thread reads the
  // same packed B block (packed cooperatively, shared through L3) and packs
  // its own A block into its private buffer (its own L2 on Zen/Intel cores),
  // so threads write disjoint row ranges of C: no races, no atomics, and the
  // result does not depend on the thread count.
  // Load balance: the number of ic blocks is rounded up to a multiple of the
  // thread count, and the MR-row panels are dealt out evenly over the
  // blocks (block ib starts at panel floor(ib * panels / blocks)), so every
  // thread's contiguous run of blocks holds the same number of panels, give
  // or take one. Rounding one block height up to a multiple of MR instead
  // lost whole blocks: M = 4096, MC = 144 gave 29 blocks (28 of 144 rows,
  // one of 64), 15 for one thread and 14 for the other, 2160 rows against
  // 1936, and M = 2048 gave 1056 rows against 992; the lighter thread then
  // idles 6-10% of every pc step at the barrier (bench/NOTES.md). With fewer
  // MC-row blocks than threads, the 2-D grid above runs instead.
  const MatrixOperand b_operand{B, ldb, trans_b};
  if (num_threads > 1 && ceil_div(M, cfg.mc) < num_threads) {
    sgemm_block_grid(cfg, num_threads, trans_a, M, N, K, alpha, A, lda, b_operand, beta, C, ldc);
    return;
  }
  const int64_t panels = ceil_div(M, cfg.mr);
  const int64_t ic_blocks = std::min(panels, round_up(ceil_div(M, cfg.mc), num_threads));
  const int64_t mc = ceil_div(panels, ic_blocks) * cfg.mr;  // the tallest block; at most MC
  const auto block_row = [&](int64_t ib) { return std::min(M, ib * panels / ic_blocks * cfg.mr); };
  // K in slices of KC, as everywhere else (prepack_a, blis_block and the
  // convolutions' packed weights): which path runs depends on the thread
  // count, so any other cut would change the sums' grouping, and the
  // result's bits, with it. (Equal slices, 3 x 683 for K = 2048 at KC =
  // 768 instead of 768 + 768 + 512, measured 0-1.3% faster; not worth that.)
  const int64_t kc_max = std::min(cfg.kc, K);
  const int64_t nc_max = std::min(cfg.nc, round_up(N, cfg.nr));
  // Scratch through the CPU cache (tensor/cpu_allocator.h), like BlisWorkspace's.
  const CpuArray<float> b_pack = cpu_array<float>(kc_max * nc_max);
  const CpuArray<float> a_pack = cpu_array<float>(int64_t(num_threads) * mc * kc_max);  // mc is a multiple of mr: no padding needed

#pragma omp parallel num_threads(num_threads)
  {
    float* my_a_pack = a_pack.get() + int64_t(omp_get_thread_num()) * mc * kc_max;
    // Every thread runs the jc and pc loops (same trip counts); the work
    // inside is shared by the two `omp for` loops, whose implicit barriers
    // make B fully packed before use, and unused before it is repacked.
    for (int64_t jc = 0; jc < N; jc += cfg.nc) {
      const int64_t nc = std::min(cfg.nc, N - jc);
      const int64_t b_panels = ceil_div(nc, cfg.nr);
      for (int64_t pc = 0; pc < K; pc += cfg.kc) {
        const int64_t kc = std::min(cfg.kc, K - pc);
        // beta applies once, on the first slice of K; later slices accumulate.
        const float beta_pc = pc == 0 ? beta : 1.0f;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < b_panels; ++p) {
          const int64_t j0 = p * cfg.nr;
          pack_b_matrix(&b_operand, pc, kc, jc + j0, std::min(cfg.nr, nc - j0), cfg.nr, b_pack.get() + j0 * kc);
        }
#pragma omp for schedule(static)
        for (int64_t ib = 0; ib < ic_blocks; ++ib) {
          const int64_t ic = block_row(ib);
          const int64_t m = block_row(ib + 1) - ic;
          pack_a(cfg, trans_a, A, lda, ic, m, pc, kc, alpha, my_a_pack);
          macro_kernel(cfg, m, nc, kc, my_a_pack, b_pack.get(), beta_pc, C + ic * ldc + jc, ldc);
        }
      }
    }
  }
}

}  // namespace crfseg::kernels::cpu
