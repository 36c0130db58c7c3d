// CudaPermutohedralFilter: uploads a host-built PermutohedralLattice's
// tables once and runs the CUDA splat / blur / slice kernels on them (see
// crf/permutohedral_cuda.h; the kernels are kernels/cuda/permutohedral.cu).
//
// Layout on the device (one allocation per table, owned by DeviceBuffer):
//   splat_offsets int64 [M + 1], splat_points int32 and splat_weights f32
//   [N (d + 1)] (the host's (point, weight) pairs split into two arrays, so
//   a warp reading consecutive entries reads contiguous words), neighbours
//   int32 [(d + 1) x M x 2], vertices int32 and barycentric f32 [N x (d + 1)].
// Scratch for the two ping-pong value buffers comes per call from the
// caching allocator on the caller's stream and goes back to that stream's
// pool on return, which keeps filter() const and safe to call concurrently
// on different streams.
//
// Built without CUDA (no CRFSEG_WITH_CUDA), the constructor throws
// DeviceError, mirroring tensor/cuda_memory.cpp; the rest compiles but is
// unreachable.
#include "crf/permutohedral_cuda.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "crf/device_buffer.h"
#include "crf/lattice_steps.h"
#include "tensor/ops.h"
#include "kernels/lattice_rules.h"
#include "tensor/cuda_memory.h"
#include "tensor/error.h"

#ifdef CRFSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/lattice_build.h"
#include "kernels/cuda/permutohedral.h"
#endif

namespace crfseg::crf {

namespace {

constexpr const char* kOp = "CudaPermutohedralFilter";

// The batch build's checks (lattice_tables_sorted and
// CudaPermutohedralFilter::build): throws for sizes that disagree; false
// where the batch build does not apply (the dimension).
bool batch_build_applies(const char* op, int64_t feature_count, int64_t images, int64_t points, int64_t dim) {
  CRFSEG_CHECK(images >= 1 && points >= 1 && dim >= 1, ValueError, op,
               ": expected at least one image, one point and one feature dimension, got ", images, " images of ",
               points, " points of dimension ", dim);
  CRFSEG_CHECK(feature_count == images * points * dim, ValueError, op, ": expected ", images, " x ", points, " x ",
               dim, " = ", images * points * dim, " features, got ", feature_count);
  CRFSEG_CHECK(images * points * (dim + 1) < std::numeric_limits<int32_t>::max(), ValueError, op, ": ",
               images * points, " points of dimension ", dim, " exceed the 32-bit lattice indices");
  return dim >= kernels::kLatticeBatchMinDim && dim <= kernels::kLatticeBatchMaxDim;
}

void check_in_range(const char* op, bool in_range) {
  CRFSEG_CHECK(in_range, ValueError, op,
               ": features out of the lattice's range (NaN, infinite, or so large that the 32-bit lattice "
               "coordinates overflow); are they divided by theta?");
}

}  // namespace

std::optional<LatticeTables> lattice_tables_sorted(const std::vector<double>& features, int64_t images,
                                                   int64_t points, int64_t dim) {
  const char* op = "lattice_tables_sorted";
  if (!batch_build_applies(op, static_cast<int64_t>(features.size()), images, points, dim)) return std::nullopt;
  const int64_t d = dim, d1 = d + 1, N = images * points, E = N * d1;
  // 1. Embed, and the keys' bounds: the CPU build's own steps.
  LatticeTables t;
  std::vector<double> scale(static_cast<size_t>(d));
  kernels::lattice_embed_scale(d, scale.data());
  std::vector<int32_t> keys(static_cast<size_t>(E * d));
  t.barycentric.resize(static_cast<size_t>(E));
  check_in_range(op, detail::embed_points(features.data(), N, d, scale.data(), keys.data(), t.barycentric.data(),
                                          nullptr));
  const detail::KeyBounds bounds = detail::key_bounds(keys.data(), E, d);
  kernels::LatticeBatchBox box;
  if (!kernels::lattice_batch_box(bounds.lo.data(), bounds.hi.data(), d, images, &box)) return std::nullopt;
  return kernels::with_batch_dim(d, [&]<int kD>() -> std::optional<LatticeTables> {
    // 2-3. Code, sort stably (std::stable_sort for CUB's radix sort), count the distinct codes.
    std::vector<uint64_t> code(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) code[e] = kernels::lattice_batch_code<kD>(keys.data(), e, points * d1, box);
    std::vector<uint32_t> entry(static_cast<size_t>(E));
    std::iota(entry.begin(), entry.end(), 0u);
    std::stable_sort(entry.begin(), entry.end(), [&](uint32_t a, uint32_t b) { return code[a] < code[b]; });
    std::vector<uint64_t> code_sorted(static_cast<size_t>(E));
    for (int64_t x = 0; x < E; ++x) code_sorted[x] = code[entry[x]];
    std::vector<int32_t> count(static_cast<size_t>(E));
    for (int64_t x = 0, c = 0; x < E; ++x) {
      c += kernels::lattice_is_head(code_sorted.data(), x) ? 1 : 0;
      count[x] = static_cast<int32_t>(c);
    }
    const int64_t M = count[E - 1];
    // 4-5. The tables and the blur links.
    std::vector<uint64_t> point_code(static_cast<size_t>(M));
    t.splat_offsets.resize(static_cast<size_t>(M + 1));
    t.splat_points.resize(static_cast<size_t>(E));
    t.splat_weights.resize(static_cast<size_t>(E));
    t.vertices.resize(static_cast<size_t>(E));
    for (int64_t x = 0; x < E; ++x) {
      kernels::lattice_table_entry(x, E, d1, code_sorted.data(), entry.data(), count.data(), t.barycentric.data(),
                                   point_code.data(), t.splat_offsets.data(), t.splat_points.data(),
                                   t.splat_weights.data(), t.vertices.data());
    }
    t.neighbours.assign(static_cast<size_t>(d1 * M * 2), static_cast<int32_t>(M));
    for (int64_t j = 0; j < d1; ++j) {
      for (int64_t p = 0; p < M; ++p) kernels::lattice_link(p, j, M, point_code.data(), box.step[j], t.neighbours.data());
    }
    t.num_points = N;
    t.num_lattice = M;
    t.dim = kD;
    t.alpha = lattice_slice_scale(kD);
    return std::move(t);
  });
}

struct CudaPermutohedralFilter::DeviceTables {
  DeviceBuffer splat_offsets, splat_points, splat_weights, neighbours, vertices, barycentric;
};

LatticeTables lattice_tables(const std::vector<const PermutohedralLattice*>& lattices) {
  CRFSEG_CHECK(!lattices.empty(), ValueError, "lattice_tables: expected at least one lattice, got none");
  LatticeTables t;
  t.dim = lattices[0]->feature_dim();
  t.alpha = lattices[0]->slice_scale();
  for (const PermutohedralLattice* l : lattices) {
    CRFSEG_CHECK(l->feature_dim() == t.dim, ValueError, "lattice_tables: expected lattices of one dimension (",
                 t.dim, "), got one of ", l->feature_dim());
    t.num_points += l->num_points();
    t.num_lattice += l->num_lattice_points();
  }
  // num_lattice itself is an index (the zero row).
  CRFSEG_CHECK(t.num_points < (int64_t{1} << 31) && t.num_lattice < (int64_t{1} << 31), NotImplementedError,
               "lattice_tables: ", t.num_points, " points and ", t.num_lattice,
               " lattice points do not fit 32-bit indices");
  // Each lattice's rows and entries start where the previous ones end; with
  // those offsets known, the lattices fill their disjoint ranges in
  // parallel. A batch of 16 noisy 256^2 images has ~6M lattice points and
  // 70M neighbour entries: 1.9 s on the CPU machine's 2 threads with
  // push_back into fresh std::vectors (page faults, mostly), 0.19 s now.
  const int64_t d1 = t.dim + 1, M = t.num_lattice, count = static_cast<int64_t>(lattices.size());
  std::vector<int64_t> point0(static_cast<size_t>(count)), lattice0(point0.size()), entry0(point0.size());
  int64_t entries = 0;
  for (int64_t b = 0, p = 0, m = 0; b < count; ++b) {
    const PermutohedralLattice& l = *lattices[static_cast<size_t>(b)];
    point0[static_cast<size_t>(b)] = p;
    lattice0[static_cast<size_t>(b)] = m;
    entry0[static_cast<size_t>(b)] = entries;
    // Every element of the tables is written below (CpuVector does not zero them).
    const size_t lm = static_cast<size_t>(l.num_lattice_points());
    CRFSEG_CHECK(l.splat_offsets().size() == lm + 1 &&
                     static_cast<int64_t>(l.splat_entries().size()) == l.splat_offsets()[lm] &&
                     static_cast<int64_t>(l.vertices().size()) == l.num_points() * d1 &&
                     l.barycentric_weights().size() == l.vertices().size(),
                 ValueError, "lattice_tables: lattice ", b, "'s tables disagree with its sizes");
    p += l.num_points();
    m += l.num_lattice_points();
    entries += l.splat_offsets()[lm];
  }
  t.splat_offsets.resize(static_cast<size_t>(M + 1));
  t.splat_points.resize(static_cast<size_t>(entries));
  t.splat_weights.resize(static_cast<size_t>(entries));
  t.neighbours.resize(static_cast<size_t>(d1 * M * 2));
  t.vertices.resize(static_cast<size_t>(t.num_points * d1));
  t.barycentric.resize(t.vertices.size());
  // One lattice (the spatial filter, a batch of 1) keeps the parallel loop
  // inside blur_neighbours; an exception (an allocation) must not leave the
  // parallel region, so each lattice's is kept and the first rethrown.
  std::vector<std::exception_ptr> errors(static_cast<size_t>(count));
#pragma omp parallel for schedule(dynamic, 1) if (count > 1)
  for (int64_t b = 0; b < count; ++b) {
    try {
      const PermutohedralLattice& l = *lattices[static_cast<size_t>(b)];
      const size_t bi = static_cast<size_t>(b);
      const int64_t m = l.num_lattice_points(), n = l.num_points();
      const int64_t p0 = point0[bi], m0 = lattice0[bi], e0 = entry0[bi];
      const auto& offsets = l.splat_offsets();
      for (int64_t p = 0; p < m; ++p)
        t.splat_offsets[static_cast<size_t>(m0 + p)] = e0 + offsets[static_cast<size_t>(p)];
      const auto& splat = l.splat_entries();
      for (size_t e = 0; e < splat.size(); ++e) {
        t.splat_points[static_cast<size_t>(e0) + e] = static_cast<int32_t>(p0 + splat[e].point);
        t.splat_weights[static_cast<size_t>(e0) + e] = splat[e].weight;
      }
      // Direction j's [m x 2] block lands in the stack's [M x 2] block for j,
      // indices shifted by m0; the lattice's absent neighbour becomes the
      // stack's (M).
      l.write_blur_neighbours(t.neighbours.data() + m0 * 2, M, static_cast<int32_t>(m0), static_cast<int32_t>(M));
      const auto& vertices = l.vertices();
      int32_t* vdst = t.vertices.data() + p0 * d1;
      for (int64_t k = 0; k < n * d1; ++k) vdst[k] = static_cast<int32_t>(m0 + vertices[static_cast<size_t>(k)]);
      std::copy(l.barycentric_weights().begin(), l.barycentric_weights().end(), t.barycentric.begin() + p0 * d1);
    } catch (...) {
      errors[static_cast<size_t>(b)] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  t.splat_offsets[static_cast<size_t>(M)] = entries;
  return t;
}

void filter_with_tables(const LatticeTables& t, const double* in, double* out, int64_t C, bool transpose) {
  const int64_t M = t.num_lattice, d1 = t.dim + 1;
  std::vector<double> values(static_cast<size_t>((M + 1) * C), 0.0), scratch(values.size(), 0.0);
  for (int64_t p = 0; p < M; ++p)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int64_t e = t.splat_offsets[static_cast<size_t>(p)]; e < t.splat_offsets[static_cast<size_t>(p + 1)]; ++e)
        acc = std::fma(static_cast<double>(t.splat_weights[static_cast<size_t>(e)]),
                       in[static_cast<int64_t>(t.splat_points[static_cast<size_t>(e)]) * C + c], acc);
      values[static_cast<size_t>(p * C + c)] = acc;
    }
  for (int64_t step = 0; step < d1; ++step) {
    const int64_t j = transpose ? d1 - 1 - step : step;
    const int32_t* nb = t.neighbours.data() + j * M * 2;
    for (int64_t p = 0; p < M; ++p)
      for (int64_t c = 0; c < C; ++c)
        scratch[static_cast<size_t>(p * C + c)] =
            values[static_cast<size_t>(p * C + c)] +
            0.5 * (values[static_cast<size_t>(nb[2 * p] * C + c)] + values[static_cast<size_t>(nb[2 * p + 1] * C + c)]);
    values.swap(scratch);  // row M stays zero in both
  }
  for (int64_t i = 0; i < t.num_points; ++i)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int64_t k = 0; k < d1; ++k)
        acc = std::fma(static_cast<double>(t.barycentric[static_cast<size_t>(i * d1 + k)]),
                       values[static_cast<size_t>(t.vertices[static_cast<size_t>(i * d1 + k)] * C + c)], acc);
      out[i * C + c] = t.alpha * acc;
    }
}

CudaPermutohedralFilter::CudaPermutohedralFilter(const PermutohedralLattice& lattice, int device)
    : CudaPermutohedralFilter(lattice_tables({&lattice}), device) {}

CudaPermutohedralFilter::CudaPermutohedralFilter(const LatticeTables& t, int device)
    : num_points_(t.num_points), dim_(t.dim), num_lattice_(t.num_lattice), alpha_(t.alpha), device_(device) {
  check_device(kOp, device);
  upload(t, cuda::current_stream(device));
}

CudaPermutohedralFilter::CudaPermutohedralFilter(const LatticeTables& t, int device, cuda::StreamHandle stream)
    : num_points_(t.num_points), dim_(t.dim), num_lattice_(t.num_lattice), alpha_(t.alpha), device_(device) {
  check_device(kOp, device);
  upload(t, stream);
}

// The tables from `stream`'s pool, copied on `stream`; the host waits for it.
void CudaPermutohedralFilter::upload(const LatticeTables& t, cuda::StreamHandle stream) {
  tables_ = std::make_unique<DeviceTables>();
  tables_->splat_offsets = DeviceBuffer::upload(t.splat_offsets, device_, stream);
  tables_->splat_points = DeviceBuffer::upload(t.splat_points, device_, stream);
  tables_->splat_weights = DeviceBuffer::upload(t.splat_weights, device_, stream);
  tables_->neighbours = DeviceBuffer::upload(t.neighbours, device_, stream);
  tables_->vertices = DeviceBuffer::upload(t.vertices, device_, stream);
  tables_->barycentric = DeviceBuffer::upload(t.barycentric, device_, stream);
#ifdef CRFSEG_WITH_CUDA
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(stream));
#endif
}

void CudaPermutohedralFilter::record_stream(cuda::StreamHandle stream) const {
  CRFSEG_CHECK(tables_ != nullptr, ValueError, kOp, ": record_stream() on a moved-from object");
  for (const DeviceBuffer* b : {&tables_->splat_offsets, &tables_->splat_points, &tables_->splat_weights,
                                &tables_->neighbours, &tables_->vertices, &tables_->barycentric}) {
    b->record_stream(stream);
  }
}

std::optional<CudaPermutohedralFilter> CudaPermutohedralFilter::build(const std::vector<double>& features,
                                                                      int64_t images, int64_t points, int64_t dim,
                                                                      int device) {
  const char* op = "CudaPermutohedralFilter::build";
  check_device(op, device);
  if (!batch_build_applies(op, static_cast<int64_t>(features.size()), images, points, dim)) return std::nullopt;
  DeviceBuffer f = DeviceBuffer::upload(features, device);
  return build_device(op, std::move(f), images, points, dim, device);
}

std::optional<CudaPermutohedralFilter> CudaPermutohedralFilter::build_bilateral(const Tensor& image,
                                                                                double theta_alpha,
                                                                                double theta_beta) {
  const char* op = "CudaPermutohedralFilter::build_bilateral";
  CRFSEG_CHECK(image.defined() && image.dim() == 4 && image.device().is_cuda(), ValueError, op,
               ": expected a CUDA image [B, C, H, W], got ", image.defined() ? image.str() : std::string("none"));
  const int device = image.device().index;
  check_device(op, device);
  CRFSEG_CHECK(theta_alpha > 0 && theta_beta > 0, ValueError, op, ": expected positive thetas, got ", theta_alpha,
               " and ", theta_beta);
  const int64_t B = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3), n = H * W;
  if (!batch_build_applies(op, B * n * (2 + C), B, n, 2 + C)) return std::nullopt;
  const Tensor planes = ops::contiguous(ops::to_dtype(image, DType::f64));
  DeviceBuffer f(static_cast<size_t>(B * n * (2 + C)) * sizeof(double), device);
#ifdef CRFSEG_WITH_CUDA
  kernels::cuda::bilateral_features(planes.data<double>(), B, C, H, W, theta_alpha, theta_beta, f.as<double>(),
                                    cuda::launch_stream(device));
#endif
  return build_device(op, std::move(f), B, n, 2 + C, device);
}

std::optional<CudaPermutohedralFilter> CudaPermutohedralFilter::build_device(const char* op, DeviceBuffer features,
                                                                             int64_t images, int64_t points,
                                                                             int64_t dim, int device) {
#ifdef CRFSEG_WITH_CUDA
  // The steps of lattice_tables_sorted, on the device (kernels/cuda/lattice_build.h).
  const int64_t d = dim, d1 = d + 1, N = images * points, E = N * d1;
  const cudaStream_t s = cuda::launch_stream(device);
  std::vector<double> scale(static_cast<size_t>(d));
  kernels::lattice_embed_scale(d, scale.data());
  // Temporaries are released as soon as their last reader is queued: the
  // caching allocator reuses a block on the same stream only, after it.
  DeviceBuffer f = std::move(features);
  DeviceBuffer keys(static_cast<size_t>(E * d) * sizeof(int32_t), device);
  DeviceBuffer barycentric(static_cast<size_t>(E) * sizeof(float), device);
  DeviceBuffer bounds(static_cast<size_t>(2 * d + 1) * sizeof(int32_t), device);  // lo, hi, then the range flag
  kernels::cuda::lattice_embed(f.as<const double>(), N, d, scale.data(), keys.as<int32_t>(), barycentric.as<float>(),
                               bounds.as<int32_t>(), bounds.as<int32_t>() + 2 * d, s);
  std::vector<int32_t> host_bounds(static_cast<size_t>(2 * d + 1));
  cuda::copy_to_host(host_bounds.data(), bounds.as<const void>(), host_bounds.size() * sizeof(int32_t), device);
  check_in_range(op, host_bounds[2 * d] == 0);
  kernels::LatticeBatchBox box;
  if (!kernels::lattice_batch_box(host_bounds.data(), host_bounds.data() + d, d, images, &box)) return std::nullopt;
  f = DeviceBuffer();

  DeviceBuffer code(static_cast<size_t>(E) * sizeof(uint64_t), device), code_sorted(code.bytes(), device);
  DeviceBuffer entry(static_cast<size_t>(E) * sizeof(uint32_t), device), entry_sorted(entry.bytes(), device);
  DeviceBuffer count(static_cast<size_t>(E) * sizeof(int32_t), device);
  {
    DeviceBuffer temp(kernels::cuda::lattice_sort_temp_bytes(E, box), device);  // CUB's scratch
    kernels::cuda::lattice_sort(keys.as<const int32_t>(), E, d, points * d1, box, code.as<uint64_t>(),
                                entry.as<uint32_t>(), code_sorted.as<uint64_t>(), entry_sorted.as<uint32_t>(),
                                count.as<int32_t>(), temp.as<void>(), temp.bytes(), s);
  }
  keys = DeviceBuffer();
  code = DeviceBuffer();
  entry = DeviceBuffer();
  int32_t points_found = 0;
  cuda::copy_to_host(&points_found, count.as<const int32_t>() + (E - 1), sizeof(int32_t), device);
  const int64_t M = points_found;

  std::optional<CudaPermutohedralFilter> filter(CudaPermutohedralFilter{});
  filter->num_points_ = N;
  filter->dim_ = d;
  filter->num_lattice_ = M;
  filter->alpha_ = lattice_slice_scale(d);
  filter->device_ = device;
  filter->tables_ = std::make_unique<DeviceTables>();
  DeviceTables& t = *filter->tables_;
  t.splat_offsets = DeviceBuffer(static_cast<size_t>(M + 1) * sizeof(int64_t), device);
  t.splat_points = DeviceBuffer(static_cast<size_t>(E) * sizeof(int32_t), device);
  t.splat_weights = DeviceBuffer(static_cast<size_t>(E) * sizeof(float), device);
  t.neighbours = DeviceBuffer(static_cast<size_t>(d1 * M * 2) * sizeof(int32_t), device);
  t.vertices = DeviceBuffer(static_cast<size_t>(E) * sizeof(int32_t), device);
  DeviceBuffer point_code(static_cast<size_t>(M) * sizeof(uint64_t), device);
  kernels::cuda::lattice_tables(code_sorted.as<const uint64_t>(), entry_sorted.as<const uint32_t>(),
                                count.as<const int32_t>(), barycentric.as<const float>(), E, d1,
                                point_code.as<uint64_t>(), t.splat_offsets.as<int64_t>(), t.splat_points.as<int32_t>(),
                                t.splat_weights.as<float>(), t.vertices.as<int32_t>(), s);
  kernels::cuda::lattice_links(point_code.as<const uint64_t>(), M, d, box, t.neighbours.as<int32_t>(), s);
  t.barycentric = std::move(barycentric);
  // The temporaries go back to the allocator on return: wait for the
  // kernels that read them (and report their errors here).
  CRFSEG_CUDA_CHECK(cudaStreamSynchronize(s));
  return filter;
#else
  (void)op, (void)features, (void)images, (void)points, (void)dim, (void)device;
  return std::nullopt;  // unreachable: check_device threw
#endif
}

LatticeTables CudaPermutohedralFilter::download_tables() const {
  CRFSEG_CHECK(tables_ != nullptr, ValueError, kOp, ": download_tables() on a moved-from object");
  LatticeTables t;
  t.num_points = num_points_;
  t.num_lattice = num_lattice_;
  t.dim = dim_;
  t.alpha = alpha_;
  const auto fetch = [&](auto& host, const DeviceBuffer& buffer) {
    host.resize(buffer.bytes() / sizeof(host[0]));
    if (buffer.bytes() > 0) cuda::copy_to_host(host.data(), buffer.as<const void>(), buffer.bytes(), device_);
  };
  fetch(t.splat_offsets, tables_->splat_offsets);
  fetch(t.splat_points, tables_->splat_points);
  fetch(t.splat_weights, tables_->splat_weights);
  fetch(t.neighbours, tables_->neighbours);
  fetch(t.vertices, tables_->vertices);
  fetch(t.barycentric, tables_->barycentric);
  return t;
}

CudaPermutohedralFilter::~CudaPermutohedralFilter() = default;
CudaPermutohedralFilter::CudaPermutohedralFilter(CudaPermutohedralFilter&&) noexcept = default;
CudaPermutohedralFilter& CudaPermutohedralFilter::operator=(CudaPermutohedralFilter&&) noexcept = default;

template <typename T>
void CudaPermutohedralFilter::run(const T* d_in, T* d_out, int64_t channels, bool transpose,
                                  CudaStream stream) const {
  CRFSEG_CHECK(tables_ != nullptr, ValueError, kOp, ": filter() on a moved-from object");
  check_filter_args(kOp, d_in, d_out, channels);
#ifdef CRFSEG_WITH_CUDA
  CRFSEG_CUDA_CHECK(cudaSetDevice(device_));
  const cudaStream_t s = stream;
  kernels::cuda::PermutohedralTables t;
  t.splat_offsets = tables_->splat_offsets.as<const int64_t>();
  t.splat_points = tables_->splat_points.as<const int32_t>();
  t.splat_weights = tables_->splat_weights.as<const float>();
  t.neighbours = tables_->neighbours.as<const int32_t>();
  t.vertices = tables_->vertices.as<const int32_t>();
  t.barycentric = tables_->barycentric.as<const float>();
  t.num_points = num_points_;
  t.num_lattice = num_lattice_;
  t.dim = dim_;

  // Both ping-pong buffers, (M + 1) x C each (141 MB for a noisy batch of
  // 16 256^2 images and 3 classes), from the caching allocator on the
  // filter's stream, freed on return into that stream's pool. (It was
  // cudaMallocAsync: a second pool, which crfseg's cache could starve with
  // no out-of-memory retry, outside memory_stats, and whose default release
  // threshold returns the memory to the driver at every synchronisation.)
  const int64_t buffer_elems = (num_lattice_ + 1) * channels;
  const DeviceBuffer scratch(static_cast<size_t>(2 * buffer_elems) * sizeof(T), device_, s);
  T* buffer0 = scratch.as<T>();
  kernels::cuda::permutohedral_filter(t, d_in, d_out, buffer0, buffer0 + buffer_elems, channels, transpose, alpha_, s);
#else
  (void)transpose;
  (void)stream;
  throw DeviceError(std::string(kOp) + ": crfseg was built without CUDA (reconfigure with -Dcuda=enabled)");
#endif
}

void CudaPermutohedralFilter::filter(const float* d_in, float* d_out, int64_t channels, bool transpose,
                                     CudaStream stream) const {
  run(d_in, d_out, channels, transpose, stream);
}
void CudaPermutohedralFilter::filter(const double* d_in, double* d_out, int64_t channels, bool transpose,
                                     CudaStream stream) const {
  run(d_in, d_out, channels, transpose, stream);
}
}  // namespace crfseg::crf
