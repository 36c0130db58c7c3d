// The mean-field CRF-RNN (crf/mean_field.*) and the CrfRnn module: lattice
// vs dense agreement of the output and of the gradients, f64 gradchecks of
// every input in both modes, batches, thread-count determinism, the
// module's parameters and modes, the Segmenter hook, and the errors; the
// convergent parametrization (its initialisation, gradcheck, and that it
// does not oscillate where a freely learned anti-Potts compatibility does).
//
// Conditioning. With Zheng et al.'s kernel weights (W_s = 3 I, W_b = 5 I)
// and random unaries in [-2, 2], five synchronous mean-field steps amplify
// any perturbation of the filter ~30x at pixels near a label flip:
// changing the thetas of the EXACT dense filter by 1% moves the output
// softmax by up to 0.175 (24x24 random RGB). The lattice's error is larger
// than 1% at pixels with few neighbours, so lattice vs dense is compared
// (1) at those weights and the default thetas on mean |difference| and
// after one iteration; (2) at the defaults (identity weights, thetas
// 160/3/3), max-abs 0.030-0.047, nearly all from the bilateral kernel at
// theta_beta = 3 (with the spatial kernel alone: 0.0045-0.0057; with the
// ideal infinite lattice, every blur-reachable point inserted, still
// 0.014-0.038: bench/NOTES.md change 13); (3) to
// 0.02 max-abs in a well-conditioned setting: weights 0.25 x (3 I, 5 I)
// and theta_beta = 64, where every pixel has many bilateral neighbours.
// Measured numbers are printed with -s.
// Run: build-crf/tests/test_crf -tc='*mean-field*,*CrfRnn*'
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "crf/crf_rnn.h"
#include "crf/mean_field.h"
#include "layers/module.h"
#include "models/segmenter.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::crf;
using namespace crfseg::test;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = values(a), vb = values(b);
  REQUIRE(va.size() == vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = values(a), vb = values(b);
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += std::abs(va[i] - vb[i]);
  return s / static_cast<double>(va.size());
}

// Weights W_s = ws I, W_b = wb I and mu = 1 - I, as the module initialises them.
struct Params {
  Tensor ws, wb, mu;
};
Params make_params(int64_t L, double ws, double wb, DType dtype) {
  CrfRnn crf({.num_classes = L, .spatial_weight = ws, .bilateral_weight = wb, .dtype = dtype});
  return {ops::clone(crf.spatial_weights), ops::clone(crf.bilateral_weights), ops::clone(crf.compatibility)};
}
// Zheng et al.'s initial weights, scaled: W_s = 3 s I, W_b = 5 s I.
Params default_params(int64_t L, double scale, DType dtype) { return make_params(L, 3 * scale, 5 * scale, dtype); }

Tensor run_softmax(const Tensor& u, const Tensor& image, const Params& p, MeanFieldOptions o, FilterMode mode) {
  o.mode = mode;
  return ops::softmax(mean_field_forward(u, image, p.ws, p.wb, p.mu, o, false).logits, 1);
}

}  // namespace

TEST_CASE("mean-field softmax: lattice vs dense on 24x24 random RGB images, 3 classes") {
  const int64_t B = 2, L = 3, H = 24, W = 24;
  double worst_conditioned = 0, worst_mean = 0, worst_one_iter = 0, worst_identity = 0;
  for (uint64_t trial = 0; trial < 3; ++trial) {
    const Tensor u = random_tensor({B, L, H, W}, 10 + trial, DType::f32, -2, 2);
    const Tensor image = random_tensor({B, 3, H, W}, 20 + trial, DType::f32, 0, 255);
    // Well conditioned: weights x0.25, theta_beta 64.
    MeanFieldOptions o;
    o.theta_beta = 64;
    const Params weak = default_params(L, 0.25, DType::f32);
    worst_conditioned = std::max(worst_conditioned, max_abs_diff(run_softmax(u, image, weak, o, FilterMode::lattice),
                                                                 run_softmax(u, image, weak, o, FilterMode::dense)));
    // Weights 3 I, 5 I at the default thetas: mean difference over 5 iterations, and max after one.
    const MeanFieldOptions defaults;
    const Params p = default_params(L, 1.0, DType::f32);
    worst_mean = std::max(worst_mean, mean_abs_diff(run_softmax(u, image, p, defaults, FilterMode::lattice),
                                                    run_softmax(u, image, p, defaults, FilterMode::dense)));
    // The defaults, identity weights (W_s = W_b = I).
    const Params id = make_params(L, 1, 1, DType::f32);
    worst_identity = std::max(worst_identity, max_abs_diff(run_softmax(u, image, id, defaults, FilterMode::lattice),
                                                           run_softmax(u, image, id, defaults, FilterMode::dense)));
    MeanFieldOptions one = defaults;
    one.iterations = 1;
    worst_one_iter = std::max(worst_one_iter, max_abs_diff(run_softmax(u, image, p, one, FilterMode::lattice),
                                                           run_softmax(u, image, p, one, FilterMode::dense)));
  }
  MESSAGE("well-conditioned max-abs ", worst_conditioned, "; identity weights (the defaults) max-abs ",
          worst_identity, "; weights 3 I, 5 I: mean-abs ", worst_mean, ", one-iteration max-abs ", worst_one_iter);
  CHECK(worst_conditioned < 0.02);
  CHECK(worst_identity < 0.06);
  CHECK(worst_mean < 0.02);
  CHECK(worst_one_iter < 0.15);
}

TEST_CASE("mean-field gradcheck (f64) for unaries and the three matrices") {
  // 2 images of 4x5, 3 classes, 2-3 iterations. theta_beta = 40 couples
  // pixels bilaterally (with 3 nearly every pixel of a random image is
  // alone in colour); thetas in pixels small enough that weights vary.
  const int64_t B = 2, L = 3, H = 4, W = 5;
  const Tensor image = random_tensor({B, 3, H, W}, 5, DType::f64, 0, 255);
  for (FilterMode mode : {FilterMode::dense, FilterMode::lattice}) {
    for (int64_t iterations : {2, 3}) {
      const std::string mode_name = filter_mode_name(mode);
      CAPTURE(mode_name);
      CAPTURE(iterations);
      MeanFieldOptions o;
      o.iterations = iterations;
      o.theta_alpha = 4;
      o.theta_beta = 40;
      o.theta_gamma = 1.5;
      o.mode = mode;
      // Random (not identity) matrices so every entry's gradient is exercised.
      const Tensor u = random_tensor({B, L, H, W}, 1, DType::f64, -2, 2);
      const Tensor ws = random_tensor({L, L}, 2, DType::f64, -1, 2);
      const Tensor wb = random_tensor({L, L}, 3, DType::f64, -1, 2);
      const Tensor mu = random_tensor({L, L}, 4, DType::f64, -1, 2);
      const GradcheckResult r = gradcheck(
          [&](const std::vector<Tensor>& x) { return crf_mean_field(x[0], image, x[1], x[2], x[3], o); },
          {u, ws, wb, mu});
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("mean-field backward: lattice vs dense gradients") {
  // Gradients of sum(R * logits) for a random R, well-conditioned setting
  // as above (weights 0.25x, theta_beta 64), 24x24, f32.
  const int64_t B = 2, L = 3, H = 24, W = 24;
  const Tensor u = random_tensor({B, L, H, W}, 11, DType::f32, -2, 2);
  const Tensor image = random_tensor({B, 3, H, W}, 12, DType::f32, 0, 255);
  const Tensor r = random_tensor({B, L, H, W}, 13, DType::f32, -1, 1);
  const Params p = default_params(L, 0.25, DType::f32);
  MeanFieldOptions o;
  o.theta_beta = 64;
  std::vector<MeanFieldGrads> grads;
  for (FilterMode mode : {FilterMode::lattice, FilterMode::dense}) {
    o.mode = mode;
    const MeanFieldForward f = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true);
    grads.push_back(mean_field_backward(r, *f.tape, p.ws, p.wb, p.mu));
  }
  auto rel = [](const Tensor& a, const Tensor& b) {
    double scale = 0;
    for (double v : values(b)) scale = std::max(scale, std::abs(v));
    return max_abs_diff(a, b) / scale;
  };
  const double du = rel(grads[0].unaries, grads[1].unaries), dws = rel(grads[0].spatial_weights, grads[1].spatial_weights),
               dwb = rel(grads[0].bilateral_weights, grads[1].bilateral_weights),
               dmu = rel(grads[0].compatibility, grads[1].compatibility);
  MESSAGE("max-abs gradient difference / max |dense gradient|: unaries ", du, ", spatial ", dws, ", bilateral ", dwb,
          ", compatibility ", dmu);
  CHECK(du < 0.03);
  CHECK(dws < 0.03);
  CHECK(dwb < 0.03);
  CHECK(dmu < 0.03);
}

TEST_CASE("mean-field: a batch equals its images run one by one") {
  const int64_t L = 4, H = 9, W = 7;
  const Tensor u = random_tensor({3, L, H, W}, 21, DType::f64, -2, 2);
  const Tensor image = random_tensor({3, 1, H, W}, 22, DType::f64, 0, 255);  // grayscale: d = 3
  const Params p = default_params(L, 1.0, DType::f64);
  for (FilterMode mode : {FilterMode::lattice, FilterMode::dense}) {
    MeanFieldOptions o;
    o.mode = mode;
    const Tensor all = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, false).logits;
    for (int64_t b = 0; b < 3; ++b) {
      const Tensor one = mean_field_forward(ops::slice(u, 0, b, b + 1), ops::slice(image, 0, b, b + 1), p.ws, p.wb,
                                            p.mu, o, false).logits;
      CHECK(max_abs_diff(one, ops::slice(all, 0, b, b + 1)) == 0.0);
    }
  }
}

TEST_CASE("mean-field forward and backward are bit-identical for 1 and 2 threads") {
  // n L > the parallel threshold (kParallelGrain), and B = 3: with 2
  // threads two images run side by side and the third alone, its loops parallel.
  const int64_t B = 3, L = 3, H = 80, W = 70;
  const Tensor u = random_tensor({B, L, H, W}, 31, DType::f32, -2, 2);
  const Tensor image = random_tensor({B, 3, H, W}, 32, DType::f32, 0, 255);
  const Tensor r = random_tensor({B, L, H, W}, 33, DType::f32, -1, 1);
  const Params p = default_params(L, 1.0, DType::f32);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<double>> outs;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const MeanFieldForward f = mean_field_forward(u, image, p.ws, p.wb, p.mu, {}, true);
    const MeanFieldGrads g = mean_field_backward(r, *f.tape, p.ws, p.wb, p.mu);
    std::vector<double> all = values(f.logits);
    for (const Tensor& t : {g.unaries, g.spatial_weights, g.bilateral_weights, g.compatibility}) {
      const std::vector<double> v = values(t);
      all.insert(all.end(), v.begin(), v.end());
    }
    outs.push_back(all);
  }
  omp_set_num_threads(saved);
  CHECK(outs[0] == outs[1]);
}

TEST_CASE("mean-field: the tape's norms and messages are the filters' outputs") {
  // The forward filters L - 1 classes and takes the last message as
  // 1 - (the others), K 1 / n being 1; for L <= 4 the first bilateral call
  // filters [Q_0 .. Q_{L-2} | 1] together. So the tape's bilateral norm must
  // be K_b 1 and the first L - 1 messages K Q / norm bit for bit as
  // separate calls give them, and the last message K Q_{L-1} / norm to
  // rounding, in both modes, for every iteration and both kernels.
  const int64_t B = 2, H = 11, W = 13, n = H * W, T = 3;
  const Tensor image = random_tensor({B, 3, H, W}, 41, DType::f32, 0, 255);
  for (const int64_t L : {1, 2, 3, 4, 5}) {
    for (FilterMode mode : {FilterMode::lattice, FilterMode::dense}) {
      CAPTURE(L);
      const std::string mode_name = filter_mode_name(mode);
      CAPTURE(mode_name);
      const Tensor u = random_tensor({B, L, H, W}, 42 + L, DType::f32, -2, 2);
      const Params p = default_params(L, 1.0, DType::f32);
      MeanFieldOptions o;
      o.mode = mode;
      o.iterations = T;
      const MeanFieldForward f = mean_field_forward(u, image, p.ws, p.wb, p.mu, o, true);
      const MeanFieldTape& tape = *f.tape;
      for (int64_t b = 0; b < B; ++b) {
        const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
        std::vector<float> norm(static_cast<size_t>(n));
        tape.bilateral[b]->apply(ones.data(), norm.data(), 1);
        const float* tape_norm_b = tape.norm_bilateral.data<float>() + b * n;
        CHECK(std::equal(norm.begin(), norm.end(), tape_norm_b));
        const float* tape_norm_s = tape.norm_spatial.data<float>() + b * n;
        tape.spatial->apply(ones.data(), norm.data(), 1);
        CHECK(std::equal(norm.begin(), norm.end(), tape_norm_s));
        for (int64_t t = 0; t < T; ++t) {
          const int64_t at = (b * T + t) * n * L;
          const float* q = tape.q.data<float>() + at;
          for (const bool bilateral : {false, true}) {
            CAPTURE(t);
            CAPTURE(bilateral);
            const GaussianFilter& k = bilateral ? *tape.bilateral[b] : *tape.spatial;
            const float* nk = bilateral ? tape_norm_b : tape_norm_s;
            const float* msg = (bilateral ? tape.msg_bilateral : tape.msg_spatial).data<float>() + at;
            // The first L - 1 classes, filtered as one packed call does it.
            std::vector<float> packed, rest(static_cast<size_t>(n * (L - 1)));
            for (int64_t i = 0; i < n; ++i) packed.insert(packed.end(), q + i * L, q + i * L + L - 1);
            if (L > 1) k.apply(packed.data(), rest.data(), L - 1);
            // All L classes, for the last one.
            std::vector<float> all(static_cast<size_t>(n * L));
            k.apply(q, all.data(), L);
            bool same = true;
            double last_err = 0;
            for (int64_t i = 0; i < n; ++i) {
              const float inv = 1.0f / nk[i];
              for (int64_t l = 0; l + 1 < L; ++l) same = same && rest[i * (L - 1) + l] * inv == msg[i * L + l];
              last_err = std::max(last_err, std::abs(double(all[i * L + L - 1]) / nk[i] - msg[i * L + L - 1]));
            }
            CHECK(same);
            CHECK(last_err < 2e-6);
          }
        }
      }
    }
  }
}

TEST_CASE("CrfRnn: parameters, initialisation, modes") {
  CrfRnn crf({.num_classes = 3});
  const std::vector<nn::NamedTensor> params = crf.named_parameters();
  REQUIRE(params.size() == 3);
  CHECK(params[0].first == "spatial_weights");
  CHECK(params[1].first == "bilateral_weights");
  CHECK(params[2].first == "compatibility");
  CHECK(values(crf.spatial_weights) == std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  CHECK(values(crf.bilateral_weights) == std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  CHECK(values(crf.compatibility) == std::vector<double>{0, 1, 1, 1, 0, 1, 1, 1, 0});
  CHECK(crf.mean_field_options().iterations == 5);
  crf.eval();
  CHECK(crf.mean_field_options().iterations == 10);
  // The Potts CRF smooths: a noisy unary labelling of two flat regions becomes cleaner.
  const int64_t H = 16, W = 16;
  std::vector<double> img(3 * H * W), un(2 * H * W);
  Generator gen(3);
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const bool right = x >= W / 2;
      for (int c = 0; c < 3; ++c) img[c * H * W + y * W + x] = right ? 200 : 40;
      const double margin = (right ? 1.0 : -1.0) * 0.5 + 1.5 * gen.normal();  // class 1 on the right
      un[y * W + x] = -margin / 2;
      un[H * W + y * W + x] = margin / 2;
    }
  }
  // Zheng et al.'s weights (3 I, 5 I): the identity default smooths less (107 -> 76 errors here).
  CrfRnn two({.num_classes = 2, .spatial_weight = 3, .bilateral_weight = 5});
  const Tensor u = from_vector(un, {1, 2, H, W}), image = from_vector(img, {1, 3, H, W});
  auto errors = [&](const Tensor& logits) {
    int64_t wrong = 0;
    const Tensor label = ops::argmax(logits, 1);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) wrong += static_cast<int64_t>(label.at({0, y, x})) != (x >= W / 2 ? 1 : 0);
    return wrong;
  };
  const int64_t before = errors(ops::to_dtype(u, DType::f32)), after = errors(two.forward(ops::to_dtype(u, DType::f32), image));
  MESSAGE("mislabelled pixels: unaries ", before, ", after the CRF ", after);
  CHECK(before > 40);
  CHECK(after < before / 4);
}

TEST_CASE("CrfRnn trains end to end as a Segmenter's final layer") {
  models::SegmenterConfig config;
  config.in_channels = 3;
  config.num_classes = 3;
  config.base_width = 4;
  config.depth = 2;
  Generator gen(1);
  models::Segmenter net(config, gen);
  auto crf = std::make_shared<CrfRnn>(CrfRnnOptions{.num_classes = 3, .train_iterations = 2});
  net.set_final_layer(crf, crf->as_final_layer());
  CHECK(net.named_parameters().back().first == "final.compatibility");
  const Tensor x = random_tensor({2, 3, 12, 10}, 41, DType::f32, 0, 255);
  Tensor target = Tensor::empty({2, 12, 10}, {DType::i64});
  {
    std::vector<int64_t> t(240);
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int64_t>(i % 3);
    target = from_vector(t, {2, 12, 10});
  }
  const Tensor logits = net.forward(x);
  CHECK(logits.shape() == Shape{2, 3, 12, 10});
  backward(cross_entropy(logits, target));
  for (const Tensor& p : {crf->spatial_weights, crf->bilateral_weights, crf->compatibility}) {
    REQUIRE(grad(p).defined());
    double norm = 0;
    for (double v : values(grad(p))) norm += v * v;
    CHECK(norm > 0);
  }
  CHECK(grad(net.named_parameters().front().second).defined());  // the gradient reached the encoder
}

TEST_CASE("mean-field and CrfRnn errors") {
  const int64_t L = 3;
  const Tensor u = random_tensor({1, L, 4, 5}, 1), image = random_tensor({1, 3, 4, 5}, 2, DType::f32, 0, 255);
  const Params p = default_params(L, 1.0, DType::f32);
  check_throws_with<ShapeError>([&] { crf_mean_field(random_tensor({L, 4, 5}, 1), image, p.ws, p.wb, p.mu); },
                                "crf_mean_field: expected unaries [B, L, H, W]");
  check_throws_with<ShapeError>([&] { crf_mean_field(u, random_tensor({1, 3, 4, 6}, 2), p.ws, p.wb, p.mu); },
                                "expected image [1, C >= 1, 4, 5] to match unaries [1, 3, 4, 5], got [1, 3, 4, 6]");
  check_throws_with<ShapeError>([&] { crf_mean_field(u, image, random_tensor({L, L + 1}, 3), p.wb, p.mu); },
                                "expected spatial_weights [3, 3] (L = the unaries' classes), got [3, 4]");
  check_throws_with<DTypeError>(
      [&] { crf_mean_field(u, image, p.ws, p.wb, ops::to_dtype(p.mu, DType::f64)); },
      "expected compatibility of the unaries' dtype f32, got f64");
  check_throws_with<DTypeError>(
      [&] { crf_mean_field(ops::to_dtype(u, DType::i32), image, p.ws, p.wb, p.mu); },
      "expected unaries of dtype f32 or f64, got i32");
  MeanFieldOptions zero;
  zero.iterations = 0;
  check_throws_with<ValueError>([&] { crf_mean_field(u, image, p.ws, p.wb, p.mu, zero); },
                                "expected iterations >= 1, got 0");
  MeanFieldOptions negative;
  negative.theta_beta = -1;
  check_throws_with<ValueError>([&] { crf_mean_field(u, image, p.ws, p.wb, p.mu, negative); },
                                "expected positive thetas");
  CrfRnn crf({.num_classes = L});
  check_throws_with<ShapeError>([&] { crf.forward(u, random_tensor({1, 1, 4, 5}, 4)); },
                                "CrfRnn: expected image [B, 3, H, W] (image_channels = 3), got [1, 1, 4, 5]");
  check_throws_with<ShapeError>([&] { crf.forward(random_tensor({1, 2, 4, 5}, 5), image); },
                                "CrfRnn: expected unaries [B, 3, H, W], got [1, 2, 4, 5]");
  check_throws_with<DTypeError>([&] { crf.forward(ops::to_dtype(u, DType::f64), image); },
                                "expected spatial_weights of the unaries' dtype f64, got f32");
  check_throws_with<ValueError>([] { CrfRnn({.num_classes = 0}); }, "CrfRnn: expected num_classes >= 1");
  // An optimizer-style in-place edit between forward and backward is caught.
  Tensor ws = ops::clone(p.ws);
  set_requires_grad(ws);
  const Tensor out = crf_mean_field(u, image, ws, p.wb, p.mu);
  {
    NoGradGuard no_grad;
    ops::add_(ws, ws, 0.1);
  }
  check_throws_with<AutogradError>([&] { backward(sum(out)); }, "CrfMeanFieldBackward");
}

TEST_CASE("CrfRnn convergent: factors as parameters, Potts fixed, same output as the free layer at init") {
  const CrfRnnOptions free_options{
      .num_classes = 3, .spatial_weight = 3, .bilateral_weight = 5, .mode = FilterMode::dense, .dtype = DType::f64};
  CrfRnnOptions conv_options = free_options;
  conv_options.parametrization = CrfParametrization::convergent;
  CrfRnn free_crf(free_options), conv(conv_options);
  const std::vector<nn::NamedTensor> params = conv.named_parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0].first == "spatial_factor");
  CHECK(params[1].first == "bilateral_factor");
  REQUIRE(conv.named_buffers().size() == 1);
  CHECK(conv.named_buffers()[0].first == "compatibility");
  CHECK(values(conv.compatibility) == std::vector<double>{0, 1, 1, 1, 0, 1, 1, 1, 0});
  CHECK(!conv.spatial_weights.defined());
  CHECK(conv.extra_repr().find("parametrization=convergent") != std::string::npos);
  const Tensor u = random_tensor({2, 3, 7, 6}, 11, DType::f64, -2, 2);
  const Tensor image = random_tensor({2, 3, 7, 6}, 12, DType::f64, 0, 255);
  // sqrt(3)^2 and sqrt(5)^2 round differently from 3 and 5: equal to rounding.
  CHECK(max_abs_diff(conv.forward(u, image), free_crf.forward(u, image)) < 1e-12);
  check_throws_with<ValueError>(
      [] { CrfRnn({.num_classes = 2, .spatial_weight = -1, .parametrization = CrfParametrization::convergent}); },
      "CrfRnn: the convergent parametrization needs kernel weights >= 0, got spatial -1");
  check_throws_with<ValueError>([] { parse_crf_parametrization("psd", "--crf-param"); },
                                "--crf-param: expected free or convergent, got 'psd'");
}

TEST_CASE("CrfRnn convergent: gradcheck (f64) for the unaries and both factors") {
  const int64_t B = 2, L = 3, H = 4, W = 5;
  const Tensor image = random_tensor({B, 3, H, W}, 5, DType::f64, 0, 255);
  const Tensor potts = ops::clone(CrfRnn({.num_classes = L, .dtype = DType::f64}).compatibility);
  for (FilterMode mode : {FilterMode::dense, FilterMode::lattice}) {
    MeanFieldOptions o;
    o.iterations = 3;
    o.theta_alpha = 4;
    o.theta_beta = 40;
    o.theta_gamma = 1.5;
    o.mode = mode;
    const GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& x) {
          const CrfRnn::Pairwise p = CrfRnn::convergent_pairwise(x[1], x[2], potts);
          return crf_mean_field(x[0], image, p.spatial_weights, p.bilateral_weights, p.compatibility, o);
        },
        {random_tensor({B, L, H, W}, 1, DType::f64, -2, 2), random_tensor({L, L}, 2, DType::f64, -1, 1.5),
         random_tensor({L, L}, 3, DType::f64, -1, 1.5)});
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("mean-field: a learned anti-Potts compatibility oscillates; the convergent form settles") {
  // How far the softmax still moves from iteration T to T + 1, on a 12x12
  // random image with random unaries and 2 classes, bilateral neighbours
  // for every pixel (theta_beta 40), dense filter.
  const int64_t L = 2, H = 12, W = 12;
  const Tensor image = random_tensor({1, 3, H, W}, 21, DType::f64, 0, 255);
  const Tensor u = random_tensor({1, L, H, W}, 22, DType::f64, -1, 1);
  MeanFieldOptions o;
  o.theta_beta = 40;
  o.mode = FilterMode::dense;
  auto step_change = [&](const Tensor& ws, const Tensor& wb, const Tensor& mu, int64_t T) {
    o.iterations = T;
    const Tensor a = ops::softmax(mean_field_forward(u, image, ws, wb, mu, o, false).logits, 1);
    o.iterations = T + 1;
    const Tensor b = ops::softmax(mean_field_forward(u, image, ws, wb, mu, o, false).logits, 1);
    return max_abs_diff(a, b);
  };
  // mu = +I, the sign-flipped Potts model that training arrived at (see
  // crf/crf_rnn.h), with the default kernel weights: every pixel flips.
  const Tensor identity = from_vector<double>({1, 0, 0, 1}, {2, 2});
  const double anti = step_change(ops::mul(identity, full({}, 3.0, {DType::f64})),
                                  ops::mul(identity, full({}, 5.0, {DType::f64})), identity, 30);
  MESSAGE("anti-Potts: max |Q_31 - Q_30| = ", anti);
  CHECK(anti > 0.5);
  // Convergent: random factors, as strong as the defaults or stronger.
  const Tensor potts = ops::clone(CrfRnn({.num_classes = L, .dtype = DType::f64}).compatibility);
  for (uint64_t seed : {31, 32, 33, 34}) {
    const CrfRnn::Pairwise p = CrfRnn::convergent_pairwise(random_tensor({L, L}, seed, DType::f64, -2.5, 2.5),
                                                           random_tensor({L, L}, seed + 100, DType::f64, -2.5, 2.5),
                                                           potts);
    const double change = step_change(p.spatial_weights, p.bilateral_weights, p.compatibility, 30);
    CAPTURE(seed);
    MESSAGE("convergent (seed ", seed, "): max |Q_31 - Q_30| = ", change);
    CHECK(change < 1e-3);
  }
}
