// bench_crf: the CRF-RNN mean-field layer (crf/mean_field.*), f32, 3 classes,
// RGB, default thetas (160, 3, 3) and weights: forward (5 iterations, the
// lattices' construction included) and backward (5 iterations) against
// image size, for 1 and 2 OpenMP threads, and the exact dense filter on
// small images. Headline: 5 iterations forward + backward on 256x256
// with 2 threads (issue 5's target: under 60 ms).
//
//   build-crf/bench/bench_crf [--quick | --headline | --builds | --gpu-builds | --host-tables] [--json]
//                             [--repeats R]
//                             [--image shapes|noise] [--batch B]
//
// --quick: 64x64 only, 3 repeats (CI); --headline: only the 256x256 lattice
// rows for 2 and 1 threads; --builds: only the bilateral lattice's
// construction, the sorted build against the hash build (LatticeOptions::
// sorted_build), alternated build by build, on both images at 256^2 and
// 512^2 (64^2 with --quick) for 1 and 2 threads, after checking that the
// two lattices filter bit for bit alike. --batch B: B images per call (different
// seeds), as in a training step, where the lattices of a batch are built
// side by side, one per thread (crf/mean_field.cpp); times are per batch.
// --gpu-builds: a batch's lattices (B = 16 unless --batch says otherwise)
// built on the host and uploaded against built on the GPU (see
// run_gpu_builds; needs a CUDA device, else says so and measures nothing).
// --host-tables: that host build's CPU side alone (no device needed), with
// and without the CPU blur's structures (see run_host_tables).
//
// Images: "shapes" (default) is a synthetic scene, five flat-coloured
// rectangles and discs plus Gaussian noise of sigma 4; "noise" is uniform
// random RGB, the lattice's worst case (every pixel in its own simplex,
// about 6 N lattice points). Before timing, the lattice layer is checked
// against the dense layer on 24x24 in a well-conditioned setting
// (tests/crf/test_crf_rnn.cpp explains why): softmax within 0.02 and
// gradients within 3% of the largest; otherwise no number is printed.
// Reports median and min ms over R runs after one warm-up run, and ns per
// pixel per iteration (flat = linear scaling).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/support/timer.h"
#include "crf/crf_rnn.h"
#include "crf/gaussian_filter.h"
#include "crf/mean_field.h"
#include "crf/permutohedral.h"
#include "crf/permutohedral_cuda.h"
#include "crf/stacked_filter.h"
#include "tensor/cuda_memory.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace crfseg;
using namespace crfseg::crf;

namespace {

constexpr int64_t kClasses = 3, kIterations = 5;

Tensor make_image(int64_t size, const std::string& kind, uint64_t seed) {
  // [1, 3, size, size] on 0-255.
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(3 * size * size));
  if (kind == "noise") {
    for (float& x : v) x = 255.0f * gen.uniform_f32();
    return from_vector(v, {1, 3, size, size});
  }
  struct Shape2 {
    double cx, cy, r, rgb[3];
    bool disc;
  };
  std::vector<Shape2> shapes(5);
  for (Shape2& s : shapes) {
    s.cx = size * gen.uniform_f64(), s.cy = size * gen.uniform_f64(), s.r = size * (0.1 + 0.2 * gen.uniform_f64());
    for (double& c : s.rgb) c = 255 * gen.uniform_f64();
    s.disc = gen.uniform_f64() < 0.5;
  }
  for (int64_t y = 0; y < size; ++y) {
    for (int64_t x = 0; x < size; ++x) {
      double rgb[3] = {128, 128, 128};
      for (const Shape2& s : shapes) {
        const double dx = x - s.cx, dy = y - s.cy;
        const bool inside = s.disc ? dx * dx + dy * dy < s.r * s.r : std::abs(dx) < s.r && std::abs(dy) < s.r;
        if (inside) std::copy(s.rgb, s.rgb + 3, rgb);
      }
      for (int c = 0; c < 3; ++c) v[(c * size + y) * size + x] = static_cast<float>(rgb[c] + 4 * gen.normal());
    }
  }
  return from_vector(v, {1, 3, size, size});
}

struct Layer {
  Tensor ws, wb, mu;
};
Layer make_layer(double weight_scale) {
  CrfRnn crf({.num_classes = kClasses, .spatial_weight = 3 * weight_scale, .bilateral_weight = 5 * weight_scale});
  return {crf.spatial_weights, crf.bilateral_weights, crf.compatibility};
}

double max_abs(const Tensor& a, const Tensor& b) {
  const auto va = ops::contiguous(a).to_vector<double>(), vb = ops::contiguous(b).to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}
double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : ops::contiguous(a).to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// Lattice vs dense on 24x24 noise, weights x0.25, theta_beta 64 (as in tests/crf).
bool verify() {
  const Layer p = make_layer(0.25);
  Generator gen(5);
  Tensor u = Tensor::empty({2, kClasses, 24, 24}), image = Tensor::empty({2, 3, 24, 24});
  Tensor r = Tensor::empty({2, kClasses, 24, 24});
  uniform_(u, -2, 2, gen);
  uniform_(image, 0, 255, gen);
  uniform_(r, -1, 1, gen);
  MeanFieldOptions o;
  o.theta_beta = 64;
  MeanFieldForward f[2];
  MeanFieldGrads g[2];
  for (int m = 0; m < 2; ++m) {
    o.mode = m == 0 ? FilterMode::lattice : FilterMode::dense;
    f[m] = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true);
    g[m] = mean_field_backward(r, *f[m].tape, p.ws, p.wb, p.mu);
  }
  const double d_out = max_abs(ops::softmax(f[0].logits, 1), ops::softmax(f[1].logits, 1));
  bool ok = d_out < 0.02;
  const Tensor* pairs[4][2] = {{&g[0].unaries, &g[1].unaries},
                               {&g[0].spatial_weights, &g[1].spatial_weights},
                               {&g[0].bilateral_weights, &g[1].bilateral_weights},
                               {&g[0].compatibility, &g[1].compatibility}};
  for (auto& pr : pairs) ok = ok && max_abs(*pr[0], *pr[1]) < 0.03 * max_abs(*pr[1]);
  if (!ok) std::fprintf(stderr, "bench_crf: lattice layer disagrees with the dense layer (softmax %g)\n", d_out);
  return ok;
}

// B images, seeds seed, seed + 1, ...: [B, 3, size, size].
Tensor make_images(int64_t batch, int64_t size, const std::string& kind, uint64_t seed) {
  std::vector<Tensor> images;
  for (int64_t b = 0; b < batch; ++b) images.push_back(ops::squeeze(make_image(size, kind, seed + b), 0));
  return ops::stack(images, 0);
}

struct Row {
  std::string mode, image;
  int64_t batch, size;
  int threads;
  int64_t lattice_points;
  bench::Timing fwd, bwd, total;
};

Row measure(FilterMode mode, const std::string& kind, int64_t batch, int64_t size, int threads, int repeats) {
  omp_set_num_threads(threads);
  const Layer p = make_layer(1.0);
  Generator gen(7);
  Tensor u = Tensor::empty({batch, kClasses, size, size}), g = Tensor::empty({batch, kClasses, size, size});
  uniform_(u, -2, 2, gen);
  uniform_(g, -1, 1, gen);
  const Tensor image = make_images(batch, size, kind, 9);
  MeanFieldOptions o;
  o.iterations = kIterations;
  o.mode = mode;
  MeanFieldForward f = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true);
  Row row{filter_mode_name(mode), kind, batch, size, threads, 0, {}, {}, {}};
  if (mode == FilterMode::lattice) {
    row.lattice_points = static_cast<const PermutohedralLattice&>(*f.tape->bilateral[0]).num_lattice_points();
  }
  row.fwd = bench::time_it([&] { f = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true); }, 1, repeats);
  row.bwd = bench::time_it([&] { mean_field_backward(g, *f.tape, p.ws, p.wb, p.mu); }, 1, repeats);
  row.total = bench::time_it(
      [&] {
        const MeanFieldForward ff = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true);
        mean_field_backward(g, *ff.tape, p.ws, p.wb, p.mu);
      },
      1, repeats);
  return row;
}

// The bilateral features of `kind`'s image (seed 9, as the layer rows use).
std::vector<double> image_features(const std::string& kind, int64_t size) {
  const std::vector<double> planes = ops::contiguous(make_image(size, kind, 9)).to_vector<double>();
  return bilateral_features(planes.data(), 3, size, size, 160, 3);
}

struct BuildRow {
  std::string image;
  int64_t size;
  int threads;
  int64_t lattice_points;
  bool sorted;  // the default build took the sorted path (not the hash fallback)
  bench::Timing sorted_ms, hash_ms;
};

// Times the two builds of one image's lattice, alternated (the order
// reversed every repeat). Returns false, with a message, if their filters
// differ on a random input (both directions).
bool measure_builds(const std::string& kind, int64_t size, int threads, int repeats, BuildRow& row) {
  omp_set_num_threads(threads);
  const std::vector<double> f = image_features(kind, size);
  const int64_t n = size * size;
  const LatticeOptions hashed{.sorted_build = false};
  {
    const PermutohedralLattice a(f, n, 5), b(f, n, 5, hashed);
    Generator gen(11);
    std::vector<float> x(static_cast<size_t>(n * kClasses)), ya(x.size()), yb(x.size());
    for (float& v : x) v = gen.uniform_f32();
    for (const bool transpose : {false, true}) {
      a.apply(x.data(), ya.data(), kClasses, transpose);
      b.apply(x.data(), yb.data(), kClasses, transpose);
      if (ya != yb || a.num_lattice_points() != b.num_lattice_points()) {
        std::fprintf(stderr, "bench_crf: the sorted and hash builds of the %s %lldx%lld lattice filter differently\n",
                     kind.c_str(), (long long)size, (long long)size);
        return false;
      }
    }
    row = {kind, size, threads, a.num_lattice_points(), a.sorted_build(), {}, {}};
  }
  std::vector<double> sorted_ms, hash_ms;
  const auto build_sorted = [&] { const PermutohedralLattice l(f, n, 5); };
  const auto build_hashed = [&] { const PermutohedralLattice l(f, n, 5, hashed); };
  build_sorted();  // warm-up: the allocator's cache, the pages
  build_hashed();
  for (int r = 0; r < repeats; ++r) {
    if (r % 2 == 0) {
      bench::time_samples(build_sorted, 0, 1, sorted_ms);
      bench::time_samples(build_hashed, 0, 1, hash_ms);
    } else {
      bench::time_samples(build_hashed, 0, 1, hash_ms);
      bench::time_samples(build_sorted, 0, 1, sorted_ms);
    }
  }
  row.sorted_ms = bench::summarize(sorted_ms);
  row.hash_ms = bench::summarize(hash_ms);
  return true;
}

int run_builds(bool quick, bool json, int repeats, const std::string& machine) {
  std::vector<BuildRow> rows;
  for (const std::string kind : {"shapes", "noise"}) {
    for (const int64_t size : quick ? std::vector<int64_t>{64} : std::vector<int64_t>{256, 512}) {
      for (const int threads : {1, 2}) {
        BuildRow row;
        if (!measure_builds(kind, size, threads, repeats, row)) return 1;
        rows.push_back(row);
      }
    }
  }
  if (json) {
    std::printf("{\"machine\": \"%s\", \"repeats\": %d, \"builds\": [\n", machine.c_str(), repeats);
    for (size_t i = 0; i < rows.size(); ++i) {
      const BuildRow& r = rows[i];
      std::printf("  {\"image\": \"%s\", \"size\": %lld, \"threads\": %d, \"lattice_points\": %lld, "
                  "\"sorted_path\": %s, \"sorted_median_ms\": %.4f, \"sorted_min_ms\": %.4f, "
                  "\"hash_median_ms\": %.4f, \"hash_min_ms\": %.4f}%s\n",
                  r.image.c_str(), (long long)r.size, r.threads, (long long)r.lattice_points,
                  r.sorted ? "true" : "false", r.sorted_ms.median_ms, r.sorted_ms.min_ms, r.hash_ms.median_ms,
                  r.hash_ms.min_ms, i + 1 < rows.size() ? "," : "");
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("# Bilateral lattice build (d = 5, thetas 160/3), sorted vs hash; %s; %d alternated repeats\n",
              machine.c_str(), repeats);
  std::printf("| image | size | threads | lattice pts | sorted ms (med/min) | hash ms (med/min) | hash / sorted |\n"
              "|---|---|---|---|---|---|---|\n");
  for (const BuildRow& r : rows) {
    std::printf("| %s | %lldx%lld | %d | %lld | %.2f / %.2f%s | %.2f / %.2f | %.2f |\n", r.image.c_str(),
                (long long)r.size, (long long)r.size, r.threads, (long long)r.lattice_points, r.sorted_ms.median_ms,
                r.sorted_ms.min_ms, r.sorted ? "" : " (hash fallback)", r.hash_ms.median_ms, r.hash_ms.min_ms,
                r.hash_ms.median_ms / r.sorted_ms.median_ms);
  }
  return 0;
}

// A batch's bilateral lattices (thetas 160/3), built on the host from its
// f64 planes and stacked into one set of tables, as
// crf/bilateral_prefetch.cpp stacks them for the upload; for_gpu leaves
// out the CPU blur's structures.
LatticeTables host_bilateral_tables(const Tensor& planes, bool for_gpu) {
  const StackedFilter stack(
      build_bilateral_filters(planes, MeanFieldOptions{.theta_alpha = 160, .theta_beta = 3}, for_gpu));
  return lattice_tables(parts_of_type<PermutohedralLattice>(stack));
}

// --gpu-builds: a training step's bilateral lattices for a batch of B
// 256^2 images on cuda:0, the two ways crf/mean_field_composed.cpp can make
// them from the CUDA image batch: on the host (a host copy of the images,
// their lattices side by side, stacked by lattice_tables, uploaded) against
// on the GPU (CudaPermutohedralFilter::build_bilateral: features and
// lattice on the device), alternated, after checking that the two filter
// alike. Times are per batch, from the image on the device to the filter's
// tables there.
int run_gpu_builds(int64_t batch, int repeats, const std::string& machine) {
  if (cuda::device_count() == 0) {
    std::printf("bench_crf --gpu-builds: no CUDA device (or a build without CUDA); nothing measured\n");
    return 0;
  }
  std::printf("# Bilateral lattices of a batch of %lld 256^2 RGB images on cuda:0 (d = 5, thetas 160/3), built on "
              "the host (%d OpenMP threads) vs on the GPU; %s; %d alternated repeats\n",
              (long long)batch, omp_get_max_threads(), machine.c_str(), repeats);
  std::printf("| image | lattice pts | host ms (med/min) | gpu ms (med/min) | host / gpu | max rel diff |\n"
              "|---|---|---|---|---|---|\n");
  const int64_t size = 256, n = size * size;
  for (const std::string kind : {"shapes", "noise"}) {
    std::vector<Tensor> images;
    for (int64_t b = 0; b < batch; ++b) images.push_back(make_image(size, kind, 9 + static_cast<uint64_t>(b)));
    const Tensor on_device = ops::concat(images, 0).to(Device::cuda(0));  // [B, 3, 256, 256] f32
    // What crf/mean_field_composed.cpp runs either way, from the CUDA image.
    const auto on_host = [&] {
      const Tensor planes = ops::contiguous(ops::to_dtype(on_device.to(Device::cpu()), DType::f64));
      return CudaPermutohedralFilter(host_bilateral_tables(planes, /*for_gpu=*/true), 0);
    };
    const auto on_gpu = [&] {
      std::optional<CudaPermutohedralFilter> built = CudaPermutohedralFilter::build_bilateral(on_device, 160, 3);
      if (!built) throw ValueError("bench_crf: the GPU build did not apply");
      return std::move(*built);
    };
    const CudaPermutohedralFilter a = on_host(), b = on_gpu();
    Generator gen(12);
    std::vector<float> x(static_cast<size_t>(batch * n * kClasses)), ya(x.size()), yb(x.size());
    for (float& v : x) v = gen.uniform_f32();
    double max_rel = 0;
    for (const bool transpose : {false, true}) {
      a.filter_host(x.data(), ya.data(), kClasses, transpose);
      b.filter_host(x.data(), yb.data(), kClasses, transpose);
      for (size_t i = 0; i < x.size(); ++i) {
        max_rel = std::max(max_rel, std::abs(double(ya[i]) - yb[i]) / std::max(std::abs(double(ya[i])), 1e-30));
      }
    }
    if (a.num_lattice_points() != b.num_lattice_points() || !(max_rel < 1e-4)) {
      std::fprintf(stderr, "bench_crf: the host and GPU builds of the %s batch differ (%lld vs %lld lattice points, "
                   "max rel diff %g)\n", kind.c_str(), (long long)a.num_lattice_points(),
                   (long long)b.num_lattice_points(), max_rel);
      return 1;
    }
    std::vector<bench::Contender> contenders = {{"host", true, [&] { (void)on_host(); }, {}},
                                                {"gpu", true, [&] { (void)on_gpu(); }, {}}};
    bench::time_alternated(contenders, repeats, 1, std::chrono::milliseconds(0));
    const std::vector<double>& host_ms = contenders[0].ms;
    const std::vector<double>& gpu_ms = contenders[1].ms;
    const bench::Timing h = bench::summarize(host_ms), g = bench::summarize(gpu_ms);
    std::printf("| %s | %lld | %.2f / %.2f | %.2f / %.2f | %.2f | %.1e |\n", kind.c_str(),
                (long long)a.num_lattice_points(), h.median_ms, h.min_ms, g.median_ms, g.min_ms,
                h.median_ms / g.median_ms, max_rel);
  }
  return 0;
}

// --host-tables: the host side of that host build, which needs no device: a
// batch's lattices side by side, then stacked by lattice_tables, with the
// CPU blur's structures (the chains, as every lattice had before session
// 46) and without them (for_gpu, what the CUDA path builds now),
// alternated, after checking that the two stacks' tables are identical.
int run_host_tables(int64_t batch, int repeats, const std::string& machine) {
  std::printf("# Host build of a batch of %lld 256^2 RGB images' bilateral lattices, stacked for the GPU "
              "(build_bilateral_filters + lattice_tables, d = 5, thetas 160/3), %d OpenMP threads; %s; "
              "%d alternated repeats\n",
              (long long)batch, omp_get_max_threads(), machine.c_str(), repeats);
  std::printf("| image | lattice pts | with CPU blur ms (med/min) | for GPU ms (med/min) | ratio |\n"
              "|---|---|---|---|---|\n");
  for (const std::string kind : {"shapes", "noise"}) {
    std::vector<Tensor> images;
    for (int64_t b = 0; b < batch; ++b) images.push_back(make_image(256, kind, 9 + static_cast<uint64_t>(b)));
    const Tensor planes = ops::contiguous(ops::to_dtype(ops::concat(images, 0), DType::f64));
    const auto stack = [&](bool for_gpu) { return host_bilateral_tables(planes, for_gpu); };
    const LatticeTables full = stack(false), lean = stack(true);
    if (full.splat_offsets != lean.splat_offsets || full.splat_points != lean.splat_points ||
        full.splat_weights != lean.splat_weights || full.neighbours != lean.neighbours ||
        full.vertices != lean.vertices || full.barycentric != lean.barycentric) {
      std::fprintf(stderr, "bench_crf: the %s batch's tables differ with and without the CPU blur\n", kind.c_str());
      return 1;
    }
    std::vector<bench::Contender> contenders = {{"with CPU blur", true, [&] { (void)stack(false); }, {}},
                                                {"for GPU", true, [&] { (void)stack(true); }, {}}};
    bench::time_alternated(contenders, repeats, 1, std::chrono::milliseconds(0));
    const bench::Timing f = bench::summarize(contenders[0].ms), l = bench::summarize(contenders[1].ms);
    std::printf("| %s | %lld | %.1f / %.1f | %.1f / %.1f | %.2f |\n", kind.c_str(), (long long)full.num_lattice,
                f.median_ms, f.min_ms, l.median_ms, l.min_ms, l.median_ms / f.median_ms);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, quick = false, headline = false, builds = false, gpu_builds = false, host_tables = false;
  int repeats = 20;
  int64_t batch = 1;
  std::string image_kind = "shapes";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") json = true;
    else if (a == "--quick") quick = true;
    else if (a == "--headline") headline = true;
    else if (a == "--builds") builds = true;
    else if (a == "--gpu-builds") gpu_builds = true;
    else if (a == "--host-tables") host_tables = true;
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else if (a == "--image" && i + 1 < argc) image_kind = argv[++i];
    else if (a == "--batch" && i + 1 < argc) batch = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_crf [--quick | --headline | --builds | --gpu-builds | --host-tables] [--json] "
                   "[--repeats R] "
                   "[--image shapes|noise] [--batch B]\n");
      return 2;
    }
  }
  if (repeats < 1 || batch < 1 || (image_kind != "shapes" && image_kind != "noise")) {
    std::fprintf(stderr, "bench_crf: --repeats and --batch must be >= 1 and --image shapes or noise\n");
    return 2;
  }
  if (quick) repeats = 3;
  const std::string machine = bench::machine_info();
  if (builds) return run_builds(quick, json, repeats, machine);
  if (gpu_builds) return run_gpu_builds(batch > 1 ? batch : 16, quick ? 3 : std::min(repeats, 10), machine);
  if (host_tables) return run_host_tables(batch > 1 ? batch : 16, quick ? 3 : std::min(repeats, 10), machine);
  if (!verify()) return 1;

  std::vector<Row> rows;
  if (headline) {
    for (int threads : {2, 1}) rows.push_back(measure(FilterMode::lattice, image_kind, batch, 256, threads, repeats));
  }
  const std::vector<int64_t> sizes = quick ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 128, 256, 512};
  for (int threads : {1, 2}) {
    if (headline) break;
    for (int64_t size : sizes) rows.push_back(measure(FilterMode::lattice, image_kind, batch, size, threads, repeats));
    for (int64_t size : quick ? std::vector<int64_t>{24} : std::vector<int64_t>{32, 64}) {
      rows.push_back(measure(FilterMode::dense, image_kind, batch, size, threads, quick ? 1 : 3));
    }
  }
  if (!quick && !headline) {
    const std::string other = image_kind == "shapes" ? "noise" : "shapes";
    rows.push_back(measure(FilterMode::lattice, other, batch, 256, 2, repeats));
  }

  if (json) {
    std::printf("{\"machine\": \"%s\", \"classes\": %lld, \"iterations\": %lld, \"repeats\": %d, \"results\": [\n",
                machine.c_str(), (long long)kClasses, (long long)kIterations, repeats);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("  {\"mode\": \"%s\", \"image\": \"%s\", \"batch\": %lld, \"size\": %lld, \"threads\": %d, \"lattice_points\": %lld, "
                  "\"forward_median_ms\": %.4f, \"forward_min_ms\": %.4f, \"backward_median_ms\": %.4f, "
                  "\"backward_min_ms\": %.4f, \"total_median_ms\": %.4f, \"total_min_ms\": %.4f}%s\n",
                  r.mode.c_str(), r.image.c_str(), (long long)r.batch, (long long)r.size, r.threads,
                  (long long)r.lattice_points, r.fwd.median_ms, r.fwd.min_ms, r.bwd.median_ms, r.bwd.min_ms, r.total.median_ms, r.total.min_ms,
                  i + 1 < rows.size() ? "," : "");
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("# CRF-RNN mean field, f32, %lld classes, RGB, %lld iterations, thetas 160/3/3; %s; %d repeats\n",
              (long long)kClasses, (long long)kIterations, machine.c_str(), repeats);
  std::printf("| mode | image | batch | size | threads | lattice pts | fwd ms (med/min) | bwd ms (med/min) | "
              "fwd+bwd ms (med/min) | ns / pixel / iteration |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double ns = r.total.median_ms * 1e6 / (double(r.batch * r.size * r.size) * kIterations);
    std::printf("| %s | %s | %lld | %lldx%lld | %d | %lld | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.1f |\n",
                r.mode.c_str(), r.image.c_str(), (long long)r.batch, (long long)r.size, (long long)r.size, r.threads,
                (long long)r.lattice_points, r.fwd.median_ms, r.fwd.min_ms, r.bwd.median_ms, r.bwd.min_ms,
                r.total.median_ms, r.total.min_ms, ns);
  }
  return 0;
}
