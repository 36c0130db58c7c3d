// The composed mean-field (crf/mean_field_composed.h: ordinary autograd ops
// plus a Gaussian-filter op), which CUDA tensors run, against the fused CPU
// kernel (crf/mean_field.h): same logits and same gradients for unaries and
// all three weight matrices, in both filter modes, f32 and f64, batch > 1,
// grayscale and RGB. Also a gradcheck of the filter op itself. This checks
// the composition on the CPU; tests/cuda/ checks the GPU lattice and the
// CUDA path against it.
#include <cmath>
#include <optional>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "crf/bilateral_prefetch.h"
#include "crf/crf_rnn.h"
#include "crf/mean_field.h"
#include "crf/mean_field_composed.h"
#include "crf/permutohedral_cuda.h"
#include "crf/stacked_filter.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::crf;
using namespace crfseg::test;

namespace {

Tensor eye_like(int64_t L, DType dt) {
  std::vector<double> v(static_cast<size_t>(L * L), 0.0);
  for (int64_t i = 0; i < L; ++i) v[static_cast<size_t>(i * L + i)] = 1.0;
  return ops::to_dtype(from_vector(v, {L, L}), dt);
}

struct Run {
  Tensor logits, du, dws, dwb, dmu;
};

Run run(bool composed, DType dt, FilterMode mode, int64_t B, int64_t C, int64_t L, int64_t H, int64_t W) {
  Tensor u = random_tensor({B, L, H, W}, 1, dt, -2, 2);
  const Tensor image = random_tensor({B, C, H, W}, 2, DType::f64, 0, 255);
  Tensor ws = ops::add(ops::scalar_op(ops::ScalarOp::mul, eye_like(L, dt), 3.0), random_tensor({L, L}, 3, dt, -0.2, 0.2));
  Tensor wb = ops::add(ops::scalar_op(ops::ScalarOp::mul, eye_like(L, dt), 5.0), random_tensor({L, L}, 4, dt, -0.2, 0.2));
  Tensor mu = ops::add(ops::scalar_op(ops::ScalarOp::rsub, eye_like(L, dt), 1.0), random_tensor({L, L}, 5, dt, -0.1, 0.1));
  for (Tensor* t : {&u, &ws, &wb, &mu}) set_requires_grad(*t, true);
  const MeanFieldOptions o{.iterations = 3, .theta_alpha = 8.0, .theta_beta = 40.0, .theta_gamma = 2.0, .mode = mode};
  const Tensor logits = composed ? crf_mean_field_composed(u, image, ws, wb, mu, o) : crf_mean_field(u, image, ws, wb, mu, o);
  const Tensor g = random_tensor(logits.shape(), 6, dt);
  backward(sum(mul(logits, g)));
  return {logits, grad(u), grad(ws), grad(wb), grad(mu)};
}

}  // namespace

TEST_CASE("composed mean-field: same logits and gradients as the fused CPU kernel") {
  struct Case { DType dt; FilterMode mode; int64_t B, C, L, H, W; double tol; };
  for (const Case c : {Case{DType::f64, FilterMode::dense, 2, 3, 3, 7, 6, 1e-10},
                       Case{DType::f64, FilterMode::lattice, 2, 3, 4, 9, 8, 1e-10},
                       Case{DType::f32, FilterMode::lattice, 3, 1, 2, 11, 5, 2e-4},
                       Case{DType::f64, FilterMode::lattice, 1, 1, 2, 1, 1, 1e-10},
                       // L = 5: the kernel's loops with L read at run time; L = 1: nothing to filter.
                       Case{DType::f64, FilterMode::lattice, 2, 3, 5, 6, 7, 1e-10},
                       Case{DType::f64, FilterMode::dense, 1, 3, 1, 5, 4, 1e-10}}) {
    INFO("mode ", std::string(filter_mode_name(c.mode)), " B ", c.B, " C ", c.C, " L ", c.L, " ", c.H, "x", c.W);
    const Run fused = run(false, c.dt, c.mode, c.B, c.C, c.L, c.H, c.W);
    const Run composed = run(true, c.dt, c.mode, c.B, c.C, c.L, c.H, c.W);
    CHECK_CLOSE(composed.logits, values(fused.logits), c.tol, c.tol);
    CHECK_CLOSE(composed.du, values(fused.du), c.tol, c.tol);
    CHECK_CLOSE(composed.dws, values(fused.dws), c.tol, c.tol);
    CHECK_CLOSE(composed.dwb, values(fused.dwb), c.tol, c.tol);
    CHECK_CLOSE(composed.dmu, values(fused.dmu), c.tol, c.tol);
  }
}

TEST_CASE("gaussian_filter op: gradcheck (f64), lattice and dense") {
  const int64_t n = 20;
  const Tensor image = random_tensor({1, 3, 4, 5}, 7, DType::f64, 0, 255);
  for (FilterMode mode : {FilterMode::lattice, FilterMode::dense}) {
    const auto f = to_device_filter(
        make_gaussian_filter(mode, bilateral_features(image.data<double>(), 3, 4, 5, 3.0, 60.0), n, 5), Device::cpu());
    const Tensor v = random_tensor({n, 2}, 8, DType::f64);
    const GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return gaussian_filter(in[0], f); }, {v});
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("composed mean-field: bad inputs and filters with no device form are refused with clear errors") {
  const Tensor u = random_tensor({1, 2, 3, 3}, 1), image = random_tensor({1, 3, 3, 4}, 2);
  const Tensor w = random_tensor({2, 2}, 3);
  check_throws_with<ShapeError>([&] { crf_mean_field_composed(u, image, w, w, w); }, "to match unaries");
  // The same checks, and messages, as the fused op (check_mean_field_inputs).
  check_throws_with<ShapeError>([&] { crf_mean_field_composed(u, random_tensor({1, 3, 3, 3}, 2), w, random_tensor({3, 3}, 4), w); },
                                "expected bilateral_weights [2, 2]");
  check_throws_with<DTypeError>([&] {
    crf_mean_field_composed(u, random_tensor({1, 3, 3, 3}, 2), w, random_tensor({2, 2}, 4, DType::f64), w);
  }, "expected bilateral_weights of the unaries' dtype f32");
  // A stack mixing lattice and dense filters has no device form: refused
  // before any CUDA call (so this runs without a GPU too).
  const Tensor img = random_tensor({1, 3, 2, 2}, 5, DType::f64, 0, 255);
  const std::vector<double> f = bilateral_features(img.data<double>(), 3, 2, 2, 3.0, 3.0);
  std::vector<std::unique_ptr<GaussianFilter>> mixed;
  mixed.push_back(make_gaussian_filter(FilterMode::dense, f, 4, 5));
  mixed.push_back(make_gaussian_filter(FilterMode::lattice, f, 4, 5));
  check_throws_with<ValueError>(
      [&] { to_device_filter(std::make_shared<const StackedFilter>(std::move(mixed)), Device::cuda(0)); },
      "expected lattice or dense filters (one kind, not mixed) on cuda:0");
  // The dense mode on CUDA is the exact filter's kernel (tests/cuda/); without
  // a device, or CUDA, it is refused with the device error.
  if (cuda::device_count() == 0) {
    check_throws_with<DeviceError>(
        [&] { to_device_filter(make_gaussian_filter(FilterMode::dense, f, 4, 5), Device::cuda(0)); },
        "CudaDenseGaussianFilter: ");
  }
}

TEST_CASE("bilateral prefetch: the forward for the prefetched image takes the lattices, no other does") {
  const MeanFieldOptions o{.iterations = 2, .theta_alpha = 6.0, .theta_beta = 30.0, .theta_gamma = 2.0};
  const Tensor u = random_tensor({2, 3, 7, 9}, 1, DType::f64, -2, 2), w = random_tensor({3, 3}, 3, DType::f64);
  const Tensor image = random_tensor({2, 3, 7, 9}, 2, DType::f64, 0, 255);
  const Tensor other = random_tensor({2, 3, 7, 9}, 7, DType::f64, 0, 255);
  const Tensor host = ops::clone(image);  // its values, another tensor (as the host copy of a CUDA batch)
  auto forward = [&](const Tensor& img, const MeanFieldOptions& opt) {
    return values(crf_mean_field_composed(u, img, w, w, w, opt));
  };
  MeanFieldOptions wider = o;
  wider.theta_beta = 60.0;
  const std::vector<double> inline_build = forward(image, o), other_build = forward(other, o),
                            wider_build = forward(image, wider);
  REQUIRE(other_build != inline_build);
  REQUIRE(wider_build != inline_build);
  int64_t hits = prefetched_bilateral_hits();

  // Taken by the forward of that image: the same lattices, so the same bits.
  prefetch_bilateral(host, image, o);
  CHECK(forward(image, o) == inline_build);
  CHECK(prefetched_bilateral_hits() == ++hits);
  CHECK(forward(image, o) == inline_build);  // taken once only
  CHECK(prefetched_bilateral_hits() == hits);

  // Another image, or other thetas: each builds its own (taking the
  // prefetch would give inline_build's lattices), and the prefetch stays
  // pending for the forward it was made for.
  prefetch_bilateral(host, image, o);
  CHECK(forward(other, o) == other_build);
  CHECK(forward(image, wider) == wider_build);
  CHECK(prefetched_bilateral_hits() == hits);
  CHECK(forward(image, o) == inline_build);
  CHECK(prefetched_bilateral_hits() == ++hits);
  // The image changed in place since the prefetch (its version moved): its own build.
  const Tensor changed = ops::clone(image);
  prefetch_bilateral(host, changed, o);
  ops::mul_(changed, 0.5);
  const std::vector<double> changed_build = forward(changed, o);
  CHECK(prefetched_bilateral_hits() == hits);
  CHECK(changed_build != inline_build);
  CHECK(changed_build == forward(ops::clone(changed), o));

  // A build that fails reports its error in the forward that takes it.
  const Tensor bad = ops::clone(host);
  bad.data<double>()[5] = std::nan("");
  prefetch_bilateral(bad, image, o);
  check_throws_with<ValueError>([&] { forward(image, o); }, "features must be finite, got nan");
  CHECK(prefetched_bilateral_hits() == ++hits);
  CHECK(forward(image, o) == inline_build);  // and the next forward builds its own

  // A CrfRnn with the same thetas: on a CPU image it builds inside its fused
  // kernel, so prefetch_lattices is a no-op (a prefetch would be taken by
  // the composed forward with its options here).
  CrfRnn crf({.num_classes = 3, .theta_alpha = 6.0, .theta_beta = 30.0, .theta_gamma = 2.0});
  REQUIRE(crf.mean_field_options().theta_beta == o.theta_beta);
  crf.prefetch_lattices(host, image);
  (void)forward(image, crf.mean_field_options());  // would take a prefetch (same thetas and mode)
  CHECK(prefetched_bilateral_hits() == hits);

  check_throws_with<ShapeError>([&] { prefetch_bilateral(random_tensor({1, 3, 7, 9}, 4), image, o); },
                                "prefetch_bilateral: expected host_image and image of one shape");
}

namespace {

// Three bilateral lattices of images of different sizes (different N and M).
// for_gpu: without the CPU blur's structures (LatticeOptions::cpu_blur).
std::vector<std::unique_ptr<GaussianFilter>> three_lattices(bool for_gpu = false) {
  std::vector<std::unique_ptr<GaussianFilter>> parts;
  for (const auto& [h, w, seed] : std::vector<std::array<int64_t, 3>>{{5, 7, 21}, {1, 1, 22}, {9, 4, 23}}) {
    const Tensor img = random_tensor({1, 3, h, w}, static_cast<uint64_t>(seed), DType::f64, 0, 255);
    parts.push_back(make_gaussian_filter(FilterMode::lattice, bilateral_features(img.data<double>(), 3, h, w, 3.0, 30.0),
                                         h * w, 5, for_gpu));
  }
  return parts;
}

// Every table of two stacks, bit for bit.
void check_same_tables(const LatticeTables& a, const LatticeTables& b) {
  CHECK(a.num_points == b.num_points);
  CHECK(a.num_lattice == b.num_lattice);
  CHECK(a.splat_offsets == b.splat_offsets);
  CHECK(a.splat_points == b.splat_points);
  CHECK(a.splat_weights == b.splat_weights);
  CHECK(a.neighbours == b.neighbours);
  CHECK(a.vertices == b.vertices);
  CHECK(a.barycentric == b.barycentric);
}

}  // namespace

TEST_CASE("StackedFilter is the block-diagonal operator of its parts") {
  auto parts = three_lattices();
  std::vector<const GaussianFilter*> raw;
  for (const auto& p : parts) raw.push_back(p.get());
  const StackedFilter stack(std::move(parts));
  REQUIRE(stack.num_points() == 35 + 1 + 36);
  CHECK(stack.feature_dim() == 5);
  const int64_t C = 3;
  const std::vector<double> in = values(random_tensor({stack.num_points() * C}, 24, DType::f64));
  for (bool transpose : {false, true}) {
    std::vector<double> got(in.size()), want(in.size());
    stack.apply(in.data(), got.data(), C, transpose);
    int64_t row = 0;
    for (const GaussianFilter* f : raw) {
      f->apply(in.data() + row * C, want.data() + row * C, C, transpose);
      row += f->num_points();
    }
    CHECK(got == want);
  }
  check_throws_with<ValueError>([] { StackedFilter(std::vector<std::unique_ptr<GaussianFilter>>{}); },
                                "StackedFilter: expected at least one filter, got none");
  auto mixed = three_lattices();
  mixed.push_back(make_gaussian_filter(FilterMode::lattice, spatial_features(2, 3, 1.0), 6, 2));
  check_throws_with<ValueError>([&] { StackedFilter(std::move(mixed)); },
                                "expected filters of one feature dimension (5), got 2 for filter 3");
}

// The CUDA filter's tables for a stack of lattices, run through the host
// twin of the CUDA kernels: each block of rows must come out as its own
// lattice's tables give it (and those as the CPU lattice filter does), so
// the merged indices, offsets and the shared zero row are right without a
// GPU to run them on.
TEST_CASE("lattice_tables: a stack's tables filter each block as its own lattice does") {
  const auto parts = three_lattices();
  std::vector<const PermutohedralLattice*> lattices;
  for (const auto& p : parts) lattices.push_back(dynamic_cast<const PermutohedralLattice*>(p.get()));
  const LatticeTables stacked = lattice_tables(lattices);
  int64_t N = 0, M = 0;
  for (const PermutohedralLattice* l : lattices) N += l->num_points(), M += l->num_lattice_points();
  REQUIRE(stacked.num_points == N);
  REQUIRE(stacked.num_lattice == M);
  CHECK(stacked.splat_offsets.size() == static_cast<size_t>(M + 1));
  CHECK(stacked.neighbours.size() == static_cast<size_t>(6 * M * 2));
  const int64_t C = 2;
  const std::vector<double> in = values(random_tensor({N * C}, 25, DType::f64));
  for (bool transpose : {false, true}) {
    INFO("transpose ", transpose);
    std::vector<double> got(in.size()), own(in.size()), cpu(in.size());
    filter_with_tables(stacked, in.data(), got.data(), C, transpose);
    int64_t row = 0;
    for (const PermutohedralLattice* l : lattices) {
      filter_with_tables(lattice_tables({l}), in.data() + row * C, own.data() + row * C, C, transpose);
      l->apply(in.data() + row * C, cpu.data() + row * C, C, transpose);
      row += l->num_points();
    }
    CHECK(got == own);  // same arithmetic, same order: the same bits
    CHECK_CLOSE(from_vector(got, {N * C}), cpu, 1e-12, 1e-12);
  }
  // Lattices built for the GPU only (no CPU blur structures) give the same
  // tables, and refuse to filter on the CPU.
  const auto lean = three_lattices(/*for_gpu=*/true);
  std::vector<const PermutohedralLattice*> lean_lattices;
  for (const auto& p : lean) lean_lattices.push_back(dynamic_cast<const PermutohedralLattice*>(p.get()));
  check_same_tables(lattice_tables(lean_lattices), stacked);
  std::vector<double> out(in.size());
  check_throws_with<ValueError>([&] { lean[0]->apply(in.data(), out.data(), C); },
                                "built without the CPU blur's structures");
  // The neighbour table written into a larger one, shifted, with another absent index.
  const PermutohedralLattice& l0 = *lattices[0];
  const int64_t m = l0.num_lattice_points(), stride = m + 3;
  std::vector<int32_t> wide(static_cast<size_t>(6 * stride * 2), -7);
  l0.write_blur_neighbours(wide.data(), stride, 100, -1);
  const CpuVector<int32_t> own_table = l0.blur_neighbours();
  for (int64_t j = 0; j < 6; ++j) {
    for (int64_t k = 0; k < 2 * stride; ++k) {
      const int32_t got = wide[static_cast<size_t>(j * stride * 2 + k)];
      const int32_t want = k < 2 * m ? (own_table[static_cast<size_t>(j * m * 2 + k)] == m
                                            ? -1
                                            : own_table[static_cast<size_t>(j * m * 2 + k)] + 100)
                                     : -7;  // past the block: untouched
      if (got != want) FAIL_CHECK("direction ", j, " slot ", k, ": ", got, " != ", want);
    }
  }
  check_throws_with<ValueError>([&] { l0.write_blur_neighbours(wide.data(), m - 1, 0, 0); },
                                "expected a row stride >= ");
  check_throws_with<ValueError>([] { lattice_tables({}); }, "lattice_tables: expected at least one lattice");
  const PermutohedralLattice spatial(spatial_features(2, 3, 1.0), 6, 2);
  check_throws_with<ValueError>([&] { lattice_tables({lattices[0], &spatial}); },
                                "expected lattices of one dimension (5), got one of 2");
}

// The GPU lattice build (kernels/cuda/lattice_build.cu) through its host
// twin, which runs the same per-element rules (kernels/lattice_rules.h) with
// std::stable_sort for CUB's radix sort: the batch's tables must be the
// stack of the images' own lattices up to the numbering of the lattice
// points, so the same lattice size and the same filter, bit for bit (the
// same sums in the same order). Cases: bilateral features of random RGB
// and grayscale images (d = 5, 3), including 1x1 images and prime sides;
// a single point; d = 2 and 4 from uniform features; a batch whose codes
// need the image bits on top of 50-bit boxes.
TEST_CASE("lattice_tables_sorted: the GPU build's algorithm gives each image's lattice, bit for bit") {
  struct Case {
    int64_t images, channels, h, w;  // bilateral features of random images; channels < 0: uniform features of dim -channels
    double spread;                   // uniform features on [-spread, spread]
  };
  const std::vector<Case> cases = {{3, 3, 5, 7, 0},  {2, 3, 1, 1, 0},   {4, 1, 13, 11, 0}, {1, 3, 17, 19, 0},
                                   {5, -2, 1, 31, 3}, {3, -4, 1, 97, 2}, {1, -5, 1, 1, 1},  {6, -5, 1, 53, 150}};
  for (const Case& c : cases) {
    INFO("images ", c.images, " channels ", c.channels, " ", c.h, "x", c.w, " spread ", c.spread);
    const int64_t n = c.h * c.w, dim = c.channels > 0 ? 2 + c.channels : -c.channels;
    std::vector<double> features;
    std::vector<std::unique_ptr<PermutohedralLattice>> own;
    for (int64_t b = 0; b < c.images; ++b) {
      const uint64_t seed = static_cast<uint64_t>(40 + b);
      std::vector<double> f;
      if (c.channels > 0) {
        const Tensor img = random_tensor({1, c.channels, c.h, c.w}, seed, DType::f64, 0, 255);
        f = bilateral_features(img.data<double>(), c.channels, c.h, c.w, 3.0, 30.0);
      } else {
        f = values(random_tensor({n * dim}, seed, DType::f64, -c.spread, c.spread));
      }
      own.push_back(std::make_unique<PermutohedralLattice>(f, n, dim));
      features.insert(features.end(), f.begin(), f.end());
    }
    const std::optional<LatticeTables> batch = lattice_tables_sorted(features, c.images, n, dim);
    REQUIRE(batch.has_value());
    std::vector<const PermutohedralLattice*> raw;
    int64_t M = 0;
    for (const auto& l : own) raw.push_back(l.get()), M += l->num_lattice_points();
    const LatticeTables stacked = lattice_tables(raw);
    CHECK(batch->num_points == c.images * n);
    CHECK(batch->num_lattice == M);
    CHECK(batch->splat_offsets.size() == static_cast<size_t>(M + 1));
    CHECK(batch->alpha == stacked.alpha);
    for (const int64_t C : {1, 3}) {
      const std::vector<double> in = values(random_tensor({c.images * n * C}, 26, DType::f64));
      for (bool transpose : {false, true}) {
        INFO("C ", C, " transpose ", transpose);
        std::vector<double> got(in.size()), want(in.size());
        filter_with_tables(*batch, in.data(), got.data(), C, transpose);
        filter_with_tables(stacked, in.data(), want.data(), C, transpose);
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("lattice_tables_sorted: where the batch build does not apply, and bad input") {
  const std::vector<double> f1 = values(random_tensor({2 * 7 * 1}, 50, DType::f64));
  CHECK_FALSE(lattice_tables_sorted(f1, 2, 7, 1).has_value());  // d = 1: built per image
  const std::vector<double> f6 = values(random_tensor({2 * 7 * 6}, 51, DType::f64));
  CHECK_FALSE(lattice_tables_sorted(f6, 2, 7, 6).has_value());  // d = 6
  // Codes over 64 bits: five coordinates spanning ~10^6 lattice steps each.
  const std::vector<double> wide = values(random_tensor({2 * 40 * 5}, 52, DType::f64, -1e5, 1e5));
  CHECK_FALSE(lattice_tables_sorted(wide, 2, 40, 5).has_value());
  check_throws_with<ValueError>([&] { lattice_tables_sorted(f1, 2, 8, 1); }, "expected 2 x 8 x 1 = 16 features, got 14");
  check_throws_with<ValueError>([&] { lattice_tables_sorted(f1, 0, 7, 1); }, "expected at least one image");
  std::vector<double> bad = values(random_tensor({3 * 4 * 5}, 53, DType::f64));
  bad[17] = std::nan("");
  check_throws_with<ValueError>([&] { lattice_tables_sorted(bad, 3, 4, 5); },
                                "lattice_tables_sorted: features out of the lattice's range");
  bad[17] = 1e12;
  check_throws_with<ValueError>([&] { lattice_tables_sorted(bad, 3, 4, 5); }, "are they divided by theta?");
}
