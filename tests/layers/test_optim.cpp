// Optimizers, LR schedules and gradient clipping against torch's formulas.
//
// Expected values come from plain double loops written here from the torch
// documentation (not from the implementation), plus small literal cases
// checked by hand. State export/import is checked to give bit-identical
// continued steps, also through a safetensors file.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numbers>

#include <omp.h>
#include <unistd.h>

#include "layers/optim/adam.h"
#include "layers/optim/clip_grad.h"
#include "layers/optim/lr_scheduler.h"
#include "layers/optim/sgd.h"
#include "tensor/safetensors.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
using namespace crfseg::optim;

namespace {

// A leaf parameter holding `values`.
Tensor make_param(const std::vector<double>& values, DType dtype = DType::f64) {
  Tensor p = from_vector(values, {static_cast<int64_t>(values.size())}).to(dtype);
  set_requires_grad(p);
  return p;
}

// Sets p's accumulated gradient directly (what a backward would leave there).
void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.autograd_meta()->grad = from_vector(g, p.shape()).to(p.dtype());
}

// Deterministic pseudo-random gradients, different for every (step, element).
std::vector<double> grad_values(int step, size_t n, int salt = 0) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = std::sin(1.3 * static_cast<double>(i) + 0.7 * step + salt) * (1.0 + 0.5 * step);
  return g;
}

// ---- reference SGD (torch.optim.SGD docs), one parameter ----
struct RefSGD {
  SGDOptions o;
  std::vector<double> buf = {};  // empty until the first step
  void step(std::vector<double>& p, const std::vector<double>& g, double lr) {
    const bool first = buf.empty();
    if (first) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = o.maximize ? -g[i] : g[i];
      d += o.weight_decay * p[i];
      if (o.momentum != 0.0) {
        buf[i] = first ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
};

// ---- reference Adam / AdamW (torch.optim.Adam / AdamW docs), one parameter ----
struct RefAdam {
  AdamOptions o;
  bool decoupled = false;
  int t = 0;
  std::vector<double> m = {}, v = {}, vmax = {};
  void step(std::vector<double>& p, const std::vector<double>& grad, double lr) {
    if (t == 0) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0), vmax.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double g = o.maximize ? -grad[i] : grad[i];
      if (decoupled) {
        p[i] *= 1 - lr * o.weight_decay;
      } else {
        g += o.weight_decay * p[i];
      }
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      const double v_hat = (o.amsgrad ? vmax[i] : v[i]) / (1 - std::pow(o.beta2, t));
      // torch adds eps to sqrt(v)/sqrt(bc2), i.e. to sqrt(v_hat).
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
};

const std::vector<double> kStart = {0.5, -1.25, 2.0, 0.0, -0.3, 1.1, 0.75};

}  // namespace

// ------------------------------------------------------------------- SGD ----

TEST_CASE("SGD: hand-checked literal steps") {
  // p = 1, g = 0.5, lr = 0.1, momentum 0.9, weight_decay 0.1:
  // step 1: d = 0.5 + 0.1 * 1 = 0.6, buf = 0.6 (a clone, no dampening), p = 1 - 0.06 = 0.94
  // step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 - 0.1134 = 0.8266
  Tensor p = make_param({1.0});
  SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
  set_grad(p, {0.5});
  opt.step();
  CHECK(p.item() == doctest::Approx(0.94).epsilon(1e-15));
  opt.step();
  CHECK(p.item() == doctest::Approx(0.8266).epsilon(1e-14));
  // Nesterov, step 1: d = 0.6, buf = 0.6, d = 0.6 + 0.9 * 0.6 = 1.14, p = 1 - 0.114 = 0.886.
  Tensor q = make_param({1.0});
  SGD nesterov({q}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
  set_grad(q, {0.5});
  nesterov.step();
  CHECK(q.item() == doctest::Approx(0.886).epsilon(1e-15));
  // Plain SGD: p = 1 - 0.1 * 0.5.
  Tensor r = make_param({1.0});
  SGD plain({r}, {.lr = 0.1});
  set_grad(r, {0.5});
  plain.step();
  CHECK(r.item() == 0.95);
  CHECK(plain.step_count() == 1);
}

TEST_CASE("SGD matches the torch formulas over several steps for every variant") {
  const std::vector<SGDOptions> variants = {
      {.lr = 0.1},
      {.lr = 0.05, .momentum = 0.9},
      {.lr = 0.05, .momentum = 0.8, .dampening = 0.3},
      {.lr = 0.02, .momentum = 0.9, .weight_decay = 0.01},
      {.lr = 0.02, .momentum = 0.9, .weight_decay = 0.05, .nesterov = true},
      {.lr = 0.1, .weight_decay = 0.1, .maximize = true},
  };
  for (size_t v = 0; v < variants.size(); ++v) {
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(v);
      CAPTURE(dtype);
      Tensor p = make_param(kStart, dtype);
      SGD opt({p}, variants[v]);
      RefSGD ref{variants[v]};
      std::vector<double> want = kStart;
      for (int step = 0; step < 6; ++step) {
        const auto g = grad_values(step, kStart.size());
        set_grad(p, g);
        opt.step();
        ref.step(want, g, variants[v].lr);
        if (dtype == DType::f64) {
          CHECK_CLOSE(p, want, 1e-14, 1e-13);
        } else {
          CHECK_CLOSE(p, want, 1e-6, 1e-5);
        }
      }
    }
  }
}

// ------------------------------------------------------------------ Adam ----

TEST_CASE("Adam / AdamW: hand-checked literal steps") {
  // Step 1 of Adam moves by ~lr * sign(g): m = 0.05, v = 2.5e-4, bc1 = 0.1,
  // bc2 = 1e-3, so p = 1 - (0.1 / 0.1) * 0.05 / (0.5 + 1e-8) = 0.900000002.
  Tensor p = make_param({1.0});
  Adam adam({p}, {.lr = 0.1});
  set_grad(p, {0.5});
  adam.step();
  CHECK(p.item() == doctest::Approx(0.900000002).epsilon(1e-13));
  // Step 2, g = -1: m = -0.055, v = 1.24975e-3, bc1 = 0.19, bc2 = 1.999e-3
  // p = 0.900000002 + (0.1 / 0.19) * 0.055 / (sqrt(1.24975e-3 / 1.999e-3) + 1e-8)
  set_grad(p, {-1.0});
  adam.step();
  CHECK(p.item() == doctest::Approx(0.9366103542405654).epsilon(1e-13));

  // L2 weight decay adds 0.1 * p to g before the moments (g = 0.6).
  Tensor q = make_param({1.0});
  Adam l2({q}, {.lr = 0.1, .weight_decay = 0.1});
  set_grad(q, {0.5});
  l2.step();
  CHECK(q.item() == doctest::Approx(0.9000000016666666).epsilon(1e-13));

  // AdamW decays first, p = 1 * (1 - 0.1 * 0.1) = 0.99, then the same step as Adam.
  Tensor r = make_param({1.0});
  AdamW adamw({r}, {.lr = 0.1, .weight_decay = 0.1});
  set_grad(r, {0.5});
  adamw.step();
  CHECK(r.item() == doctest::Approx(0.890000002).epsilon(1e-13));
  CHECK(adamw.decoupled_weight_decay());
  CHECK(AdamW({make_param({1.0})}).options().weight_decay == 0.01);  // torch's AdamW default

  // AMSGrad: g = 1 then g = 0, so v shrinks on step 2 and v_max keeps the larger 1e-3.
  for (bool amsgrad : {false, true}) {
    Tensor s = make_param({1.0});
    Adam opt({s}, {.lr = 0.1, .amsgrad = amsgrad});
    set_grad(s, {1.0});
    opt.step();
    set_grad(s, {0.0});
    opt.step();
    CHECK(s.item() == doctest::Approx(amsgrad ? 0.8330276878258663 : 0.8329941765341887).epsilon(1e-13));
  }
}

TEST_CASE("Adam and AdamW match the torch formulas over several steps") {
  const std::vector<std::pair<AdamOptions, bool>> variants = {
      {{.lr = 0.01}, false},
      {{.lr = 0.02, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6}, false},
      {{.lr = 0.01, .weight_decay = 0.1}, false},
      {{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}, false},
      {{.lr = 0.01, .beta1 = 0.3, .maximize = true}, false},  // beta1 < 0.5: the other lerp branch
      {{.lr = 0.01, .weight_decay = 0.2}, true},
      {{.lr = 0.01, .weight_decay = 0.05, .amsgrad = true}, true},
  };
  for (size_t v = 0; v < variants.size(); ++v) {
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(v);
      CAPTURE(dtype);
      const auto& [o, decoupled] = variants[v];
      Tensor p = make_param(kStart, dtype);
      std::unique_ptr<Optimizer> opt;
      if (decoupled) {
        opt = std::make_unique<AdamW>(std::vector<Tensor>{p},
                                      AdamWOptions{.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps,
                                                   .weight_decay = o.weight_decay, .amsgrad = o.amsgrad,
                                                   .maximize = o.maximize});
      } else {
        opt = std::make_unique<Adam>(std::vector<Tensor>{p}, o);
      }
      RefAdam ref{o, decoupled};
      std::vector<double> want = kStart;
      for (int step = 0; step < 6; ++step) {
        // Gradients shrink after step 3 so that amsgrad's max actually matters.
        auto g = grad_values(step, kStart.size());
        if (step > 3) for (double& x : g) x *= 0.1;
        set_grad(p, g);
        opt->step();
        ref.step(want, g, o.lr);
        if (dtype == DType::f64) {
          CHECK_CLOSE(p, want, 1e-13, 1e-12);
        } else {
          CHECK_CLOSE(p, want, 1e-6, 1e-5);
        }
      }
    }
  }
}

TEST_CASE("the parallel update loops on large tensors match the reference") {
  // 100003 elements: past the OpenMP threshold, and odd-sized.
  const size_t n = 100003;
  std::vector<double> start(n);
  for (size_t i = 0; i < n; ++i) start[i] = std::cos(0.37 * static_cast<double>(i));
  Tensor p = make_param(start), q = make_param(start);
  SGD sgd({p}, {.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  AdamW adamw({q}, {.lr = 0.01, .weight_decay = 0.1, .amsgrad = true});
  RefSGD ref_sgd{sgd.options()};
  RefAdam ref_adam{adamw.options(), true};
  std::vector<double> want_p = start, want_q = start;
  for (int step = 0; step < 3; ++step) {
    const auto g = grad_values(step, n);
    set_grad(p, g);
    set_grad(q, g);
    sgd.step();
    adamw.step();
    ref_sgd.step(want_p, g, 0.05);
    ref_adam.step(want_q, g, 0.01);
  }
  CHECK_CLOSE(p, want_p, 1e-13, 1e-12);
  CHECK_CLOSE(q, want_q, 1e-13, 1e-12);
}

// ------------------------------------------------- shared optimizer logic ----

TEST_CASE("parameters without a gradient are skipped and keep their own step count") {
  Tensor a = make_param({1.0, 2.0});
  Tensor b = make_param({3.0, -4.0});
  Adam opt({a, b}, {.lr = 0.1});
  RefAdam ref_a{opt.options()}, ref_b{opt.options()};
  std::vector<double> want_a = {1.0, 2.0}, want_b = {3.0, -4.0};
  for (int step = 0; step < 3; ++step) {
    set_grad(a, grad_values(step, 2));
    ref_a.step(want_a, grad_values(step, 2), 0.1);
    if (step == 0) {
      reset_grad(b);  // b gets its first gradient on step 2: its Adam t runs 1, 2
    } else {
      set_grad(b, grad_values(step, 2, 5));
      ref_b.step(want_b, grad_values(step, 2, 5), 0.1);
    }
    const uint64_t version_b = b.version();
    opt.step();
    if (step == 0) {
      CHECK(b.version() == version_b);  // untouched
      const NamedTensors state = opt.state_tensors();
      for (const auto& [name, t] : state) CHECK(name.rfind("param.1.", 0) != 0);
    }
  }
  CHECK_CLOSE(a, want_a, 1e-14, 1e-13);
  CHECK_CLOSE(b, want_b, 1e-14, 1e-13);
  CHECK(opt.step_count() == 3);
}

TEST_CASE("step updates strided parameters in place, bumps versions and records no graph") {
  // A leaf that is a transposed view of a larger buffer.
  Tensor base = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor p = ops::transpose(base, 0, 1);  // [3, 2], strides [1, 3]
  set_requires_grad(p);
  const std::vector<double> g = {0.5, -1.0, 2.0, 0.25, -0.5, 1.5};  // row-major over [3, 2]
  p.autograd_meta()->grad = from_vector(g, {3, 2});
  SGD opt({p}, {.lr = 0.1});
  const uint64_t before = p.version();
  opt.step();
  CHECK(p.version() > before);
  // base[j][i] = p[i][j] gets -0.1 * g[i][j]; e.g. base[0][1] = p[1][0]: 2 - 0.1 * 2.0.
  CHECK_CLOSE(base, {1 - 0.05, 2 - 0.2, 3 + 0.05, 4 + 0.1, 5 - 0.025, 6 - 0.15}, 1e-15, 0);
  CHECK(is_leaf(p));
  CHECK(grad_fn(p) == nullptr);

  // Gradients from a real backward: loss = sum(w * c) gives dL/dw = c.
  Tensor w = make_param({1.0, 2.0, 3.0});
  const Tensor c = from_vector<double>({0.5, -0.5, 2.0}, {3});
  backward(crfseg::sum(crfseg::mul(w, c)));
  SGD sgd({w}, {.lr = 1.0});
  sgd.step();
  CHECK_CLOSE(w, {0.5, 2.5, 1.0}, 0, 0);
}

TEST_CASE("zero_grad clears or zeroes the gradients") {
  Tensor p = make_param({1.0, 2.0});
  SGD opt({p}, {.lr = 0.1});
  set_grad(p, {1.0, 1.0});
  const Tensor buffer = grad(p);
  opt.zero_grad(false);
  CHECK(grad(p).is_same(buffer));
  CHECK_CLOSE(grad(p), {0.0, 0.0}, 0, 0);
  opt.zero_grad();  // set_to_none, torch's default
  CHECK(!grad(p).defined());
  opt.step();  // nothing to do
  CHECK_CLOSE(p, {1.0, 2.0}, 0, 0);
}

TEST_CASE("optimizer constructors and step reject bad input with clear messages") {
  Tensor p = make_param({1.0});
  check_throws_with<ValueError>([&] { SGD({}, {}); }, "SGD: got an empty parameter list");
  check_throws_with<ValueError>([&] { SGD({p, Tensor()}, {}); }, "parameter 1 is an undefined tensor");
  check_throws_with<DTypeError>([&] { SGD({zeros({2}, {DType::i64})}, {}); }, "has dtype i64; expected f32 or f64");
  check_throws_with<ValueError>([&] { SGD({p, p}, {}); }, "parameter 1 is the same tensor as parameter 0");
  check_throws_with<ValueError>([&] { SGD({crfseg::mul_scalar(p, 2.0)}, {}); }, "is not a leaf tensor");
  check_throws_with<ValueError>([&] { SGD({p}, {.lr = -1}); }, "SGD: invalid learning rate -1");
  check_throws_with<ValueError>([&] { SGD({p}, {.momentum = -0.5}); }, "invalid momentum");
  check_throws_with<ValueError>([&] { SGD({p}, {.nesterov = true}); },
                                "nesterov momentum requires momentum > 0 and dampening == 0");
  check_throws_with<ValueError>([&] { SGD({p}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); },
                                "dampening == 0");
  check_throws_with<ValueError>([&] { Adam({p}, {.beta1 = 1.0}); }, "Adam: invalid beta1 1");
  check_throws_with<ValueError>([&] { AdamW({p}, {.beta2 = -0.1}); }, "AdamW: invalid beta2");
  check_throws_with<ValueError>([&] { Adam({p}, {.eps = -1}); }, "invalid eps");
  check_throws_with<ValueError>([&] { Adam({p}, {.weight_decay = -1}); }, "invalid weight_decay");

  SGD opt({p}, {.lr = 0.1});
  check_throws_with<ValueError>([&] { opt.set_lr(NAN); }, "invalid learning rate");
  p.autograd_meta()->grad = zeros({2}, {DType::f64});
  check_throws_with<ShapeError>([&] { opt.step(); }, "the gradient of parameter 0 has shape [2] but the parameter");
  p.autograd_meta()->grad = zeros({1}, {DType::f32});
  check_throws_with<DTypeError>([&] { opt.step(); }, "has dtype f32 but the parameter has dtype f64");
  CHECK(p.item() == 1.0);  // failed steps change nothing
  CHECK(opt.step_count() == 0);
}

// ------------------------------------------------------ state save/resume ----

namespace {

// Runs `steps` steps of `opt` on `params` with the gradients of steps [first, first+steps).
void run_steps(Optimizer& opt, const std::vector<Tensor>& params, int first, int steps) {
  for (int s = first; s < first + steps; ++s) {
    for (size_t i = 0; i < params.size(); ++i) {
      if (i == 1 && s < 2) {
        reset_grad(params[i]);  // parameter 1 starts late: partial state in the export
      } else {
        set_grad(params[i], grad_values(s, static_cast<size_t>(params[i].numel()), static_cast<int>(i)));
      }
    }
    opt.step();
  }
}

std::vector<Tensor> clone_params(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params) {
    out.push_back(ops::clone(p));
    set_requires_grad(out.back());
  }
  return out;
}

// A finished Optimizer run vs one resumed from exported state must agree bit for bit.
template <typename Opt, typename Options>
void check_resume(const Options& options, bool through_file) {
  std::vector<Tensor> a = {make_param(kStart), make_param({0.1, 0.2, 0.3}), make_param({9.0})};
  Opt full(a, options);
  run_steps(full, a, 0, 2);
  const std::vector<Tensor> b = clone_params(a);
  NamedTensors state = full.state_tensors();
  CHECK(state.size() >= 2);  // step, lr, then per-parameter buffers if the optimizer keeps any
  if (through_file) {
    const std::string path = std::filesystem::temp_directory_path() / ("crfseg_optim_" + std::to_string(::getpid()));
    save_safetensors(path, state);
    state = load_safetensors(path).tensors;
    std::filesystem::remove(path);
  }
  Opt resumed(b, options);
  resumed.set_lr(123.0);  // overwritten by the state's lr
  resumed.load_state(state);
  CHECK(resumed.step_count() == 2);
  CHECK(resumed.lr() == full.lr());
  run_steps(full, a, 2, 4);
  run_steps(resumed, b, 2, 4);
  for (size_t i = 0; i < a.size(); ++i) CHECK(values(a[i]) == values(b[i]));  // exact
}

}  // namespace

TEST_CASE("state export/import gives identical continued steps") {
  check_resume<SGD>(SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}, false);
  check_resume<SGD>(SGDOptions{.lr = 0.05}, false);
  check_resume<Adam>(AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}, false);
  check_resume<AdamW>(AdamWOptions{.lr = 0.01}, false);
  // Through a safetensors checkpoint, as models/checkpoint will do.
  check_resume<Adam>(AdamOptions{.lr = 0.01, .amsgrad = true}, true);
  check_resume<SGD>(SGDOptions{.lr = 0.05, .momentum = 0.9}, true);

  // The names, and the partial state of a parameter that has not been stepped.
  Tensor p = make_param({1.0, 2.0}), q = make_param({3.0});
  Adam opt({p, q}, {.amsgrad = true});
  set_grad(p, {1.0, 1.0});
  opt.step();
  std::vector<std::string> names;
  for (const auto& [name, t] : opt.state_tensors()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"step", "lr", "param.0.step", "param.0.exp_avg", "param.0.exp_avg_sq",
                                          "param.0.max_exp_avg_sq"});
}

TEST_CASE("load_state rejects malformed state and leaves the optimizer unchanged") {
  Tensor p = make_param({1.0, 2.0});
  Adam opt({p}, {.lr = 0.1});
  set_grad(p, {1.0, -1.0});
  opt.step();
  const NamedTensors good = opt.state_tensors();
  const auto with = [&](const std::string& name, const Tensor& t) {
    NamedTensors s;
    for (const auto& [n, v] : good) s.emplace_back(n, n == name ? t : v);
    return s;
  };
  const auto without = [&](const std::string& name) {
    NamedTensors s;
    for (const auto& [n, v] : good) {
      if (n != name) s.emplace_back(n, v);
    }
    return s;
  };
  const auto plus = [&](const std::string& name, const Tensor& t) {
    NamedTensors s = good;
    s.emplace_back(name, t);
    return s;
  };
  Adam fresh({make_param({0.0, 0.0})}, {.lr = 0.5});
  check_throws_with<ValueError>([&] { fresh.load_state(without("step")); }, "missing entry 'step'");
  check_throws_with<ValueError>([&] { fresh.load_state(without("lr")); }, "missing entry 'lr'");
  check_throws_with<ValueError>([&] { fresh.load_state(plus("step", good[0].second)); }, "duplicate entry 'step'");
  check_throws_with<ValueError>([&] { fresh.load_state(plus("param.1.exp_avg", zeros({2}, {DType::f64}))); },
                                "unknown entry 'param.1.exp_avg'");
  check_throws_with<ValueError>([&] { fresh.load_state(plus("param.00.exp_avg", zeros({2}, {DType::f64}))); },
                                "unknown entry 'param.00.exp_avg'");
  check_throws_with<ValueError>([&] { fresh.load_state(plus("momentum", zeros({2}, {DType::f64}))); },
                                "unknown entry 'momentum'");
  check_throws_with<ValueError>([&] { fresh.load_state(plus("param.0.max_exp_avg_sq", zeros({2}, {DType::f64}))); },
                                "built without amsgrad");
  check_throws_with<ValueError>([&] { fresh.load_state(without("param.0.exp_avg_sq")); },
                                "entry 'param.0.exp_avg_sq' is missing while other state of parameter 0 is present");
  check_throws_with<ShapeError>([&] { fresh.load_state(with("param.0.exp_avg", zeros({3}, {DType::f64}))); },
                                "entry 'param.0.exp_avg' has shape [3] but parameter 0 has shape [2]");
  check_throws_with<DTypeError>([&] { fresh.load_state(with("param.0.exp_avg", zeros({2}, {DType::f32}))); },
                                "entry 'param.0.exp_avg' has dtype f32 but parameter 0 has dtype f64");
  check_throws_with<ValueError>([&] { fresh.load_state(with("step", scalar_tensor(1.0, {DType::f64}))); },
                                "entry 'step' must be a 0-d i64 tensor");
  check_throws_with<ValueError>([&] { fresh.load_state(with("lr", scalar_tensor(-1.0, {DType::f64}))); },
                                "entry 'lr' holds -1");
  check_throws_with<ValueError>([&] { fresh.load_state(with("param.0.step", scalar_tensor(-3, {DType::i64}))); },
                                "entry 'param.0.step' holds -3");
  CHECK(fresh.lr() == 0.5);
  CHECK(fresh.step_count() == 0);
  CHECK(fresh.state_tensors().size() == 2);  // still no per-parameter state

  SGD plain({make_param({0.0, 0.0})}, {.lr = 0.1});
  check_throws_with<ValueError>(
      [&] { plain.load_state({good[0], good[1], {"param.0.momentum_buffer", zeros({2}, {DType::f64})}}); },
      "keeps no per-parameter state");
}

// ------------------------------------------------------------ schedulers ----

TEST_CASE("StepLR follows base_lr * gamma^floor(e / step_size)") {
  Tensor p = make_param({1.0});
  SGD opt({p}, {.lr = 0.8});
  StepLR sched(opt, {.step_size = 3, .gamma = 0.5});
  CHECK(opt.lr() == 0.8);
  const std::vector<double> want = {0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1, 0.1};
  for (size_t e = 0; e < want.size(); ++e) {
    CAPTURE(e);
    CHECK(sched.last_epoch() == static_cast<int64_t>(e));
    CHECK(opt.lr() == doctest::Approx(want[e]).epsilon(1e-15));
    CHECK(sched.lr_at(static_cast<int64_t>(e)) == opt.lr());
    sched.step();
  }
}

TEST_CASE("CosineAnnealingLR matches the closed form and torch's recursive form") {
  const double base = 0.1, eta_min = 0.001;
  const int64_t T = 10;
  Tensor p = make_param({1.0});
  SGD opt({p}, {.lr = base});
  CosineAnnealingLR sched(opt, {.T_max = T, .eta_min = eta_min});
  // torch's get_lr() (the chainable form it actually applies), run past 2 T_max.
  double torch_lr = base;
  for (int64_t e = 0; e <= 3 * T; ++e) {
    CAPTURE(e);
    if (e > 0) {
      const auto mod = [](int64_t a, int64_t m) { return ((a % m) + m) % m; };
      const double pi = std::numbers::pi;
      if (mod(e - 1 - T, 2 * T) == 0) {
        torch_lr = torch_lr + (base - eta_min) * (1 - std::cos(pi / T)) / 2;
      } else {
        torch_lr = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (torch_lr - eta_min) + eta_min;
      }
      sched.step();
    }
    const double closed = eta_min + (base - eta_min) * (1 + std::cos(std::numbers::pi * e / T)) / 2;
    CHECK(opt.lr() == doctest::Approx(closed).epsilon(1e-14));
    CHECK(opt.lr() == doctest::Approx(torch_lr).epsilon(1e-12));
  }
  CHECK(sched.lr_at(0) == base);
  CHECK(sched.lr_at(T) == doctest::Approx(eta_min).epsilon(1e-15));
  CHECK(sched.lr_at(T / 2) == doctest::Approx((base + eta_min) / 2).epsilon(1e-15));
}

TEST_CASE("linear warmup ramps from start_factor * base_lr, then the schedule starts at its epoch 0") {
  Tensor p = make_param({1.0});
  SGD opt({p}, {.lr = 0.4});
  StepLR sched(opt, {.step_size = 2, .gamma = 0.1, .warmup = {.steps = 4, .start_factor = 0.25}});
  // e < 4: 0.4 (0.25 + 0.75 e / 4); e >= 4: 0.4 * 0.1^floor((e - 4) / 2)
  const std::vector<double> want = {0.1, 0.175, 0.25, 0.325, 0.4, 0.4, 0.04, 0.04, 0.004};
  for (size_t e = 0; e < want.size(); ++e) {
    CAPTURE(e);
    CHECK(opt.lr() == doctest::Approx(want[e]).epsilon(1e-14));
    sched.step();
  }
  SGD opt2({make_param({1.0})}, {.lr = 1.0});
  CosineAnnealingLR cos(opt2, {.T_max = 4, .warmup = {.steps = 2}});
  CHECK(opt2.lr() == doctest::Approx(1.0 / 3.0));  // torch's LinearLR default start_factor
  CHECK(cos.lr_at(1) == doctest::Approx(2.0 / 3.0));
  CHECK(cos.lr_at(2) == 1.0);
  CHECK(cos.lr_at(4) == doctest::Approx(0.5));
}

TEST_CASE("scheduler state export/import resumes the same lr sequence") {
  Tensor p = make_param({1.0});
  SGD opt({p}, {.lr = 0.3});
  CosineAnnealingLR sched(opt, {.T_max = 20, .eta_min = 0.01, .warmup = {.steps = 3}});
  for (int i = 0; i < 7; ++i) sched.step();
  const NamedTensors state = sched.state_tensors();

  // The resumed optimizer is built with a different lr: base_lr comes from the state.
  SGD opt2({make_param({1.0})}, {.lr = 5.0});
  CosineAnnealingLR resumed(opt2, {.T_max = 20, .eta_min = 0.01, .warmup = {.steps = 3}});
  resumed.load_state(state);
  CHECK(resumed.last_epoch() == 7);
  CHECK(opt2.lr() == opt.lr());
  for (int i = 0; i < 5; ++i) {
    sched.step();
    resumed.step();
    CHECK(opt2.lr() == opt.lr());
  }

  check_throws_with<ValueError>([&] { resumed.load_state({state[0]}); }, "missing entry 'base_lr'");
  check_throws_with<ValueError>([&] { resumed.load_state({state[0], state[1], {"gamma", state[1].second}}); },
                                "unknown entry 'gamma'");
  check_throws_with<ValueError>([&] { resumed.load_state({state[0], state[0], state[1]}); },
                                "duplicate entry 'last_epoch'");
  check_throws_with<ValueError>(
      [&] { resumed.load_state({{"last_epoch", scalar_tensor(-2, {DType::i64})}, state[1]}); },
      "'last_epoch' holds -2");
  check_throws_with<ValueError>([&] { resumed.load_state({{"last_epoch", state[1].second}, state[1]}); },
                                "entry 'last_epoch' must be a 0-d i64 tensor");
  CHECK(resumed.last_epoch() == 12);  // unchanged by the failed loads
}

TEST_CASE("schedulers reject bad options") {
  SGD opt({make_param({1.0})}, {.lr = 0.1});
  check_throws_with<ValueError>([&] { StepLR(opt, {.step_size = 0}); }, "StepLR: invalid step_size 0");
  check_throws_with<ValueError>([&] { StepLR(opt, {.gamma = -1}); }, "StepLR: invalid gamma -1");
  check_throws_with<ValueError>([&] { CosineAnnealingLR(opt, {.T_max = 0}); }, "invalid T_max 0");
  check_throws_with<ValueError>([&] { CosineAnnealingLR(opt, {.eta_min = -1}); }, "invalid eta_min");
  check_throws_with<ValueError>([&] { StepLR(opt, {.warmup = {.steps = 2, .start_factor = 0.0}}); },
                                "invalid warmup.start_factor 0");
  check_throws_with<ValueError>([&] { StepLR(opt, {.warmup = {.steps = -1}}); }, "invalid warmup.steps -1");
  StepLR ok(opt, {});
  check_throws_with<ValueError>([&] { ok.lr_at(-1); }, "lr_at expects an epoch >= 0, got -1");
}

// -------------------------------------------------------------- clipping ----

TEST_CASE("clip_grad_norm_: total norm over all gradients and scaling") {
  // Gradients [3, 4] and [12]: total 2-norm sqrt(9 + 16 + 144) = 13.
  Tensor a = make_param({0.0, 0.0}), b = make_param({0.0}), c = make_param({0.0});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});  // c has no gradient: ignored
  CHECK(grad_norm({a, b, c}) == 13.0);
  CHECK(grad_norm({a, b}, 1.0) == 19.0);
  CHECK(grad_norm({a, b}, kInfNorm) == 12.0);
  CHECK(grad_norm({a, b}, 3.0) == doctest::Approx(std::cbrt(27.0 + 64.0 + 1728.0)).epsilon(1e-15));
  CHECK(grad_norm({c}) == 0.0);

  const double total = clip_grad_norm_({a, b, c}, 6.5);
  CHECK(total == 13.0);
  const double scale = 6.5 / (13.0 + 1e-6);
  CHECK_CLOSE(grad(a), {3.0 * scale, 4.0 * scale}, 0, 1e-15);
  CHECK_CLOSE(grad(b), {12.0 * scale}, 0, 1e-15);
  CHECK(grad_norm({a, b}) == doctest::Approx(6.5).epsilon(1e-6));

  // Below max_norm: gradients untouched (not even their version).
  const uint64_t version = grad(a).version();
  CHECK(clip_grad_norm_({a, b}, 100.0) == doctest::Approx(6.5).epsilon(1e-6));
  CHECK(grad(a).version() == version);

  // inf-norm clipping, f32 gradients.
  Tensor f = make_param({0.0, 0.0, 0.0}, DType::f32);
  set_grad(f, {-8.0, 2.0, 1.0});
  CHECK(clip_grad_norm_({f}, 2.0, kInfNorm) == 8.0);
  CHECK_CLOSE(grad(f), {-8.0 * 2.0 / (8.0 + 1e-6), 2.0 * 2.0 / (8.0 + 1e-6), 2.0 / (8.0 + 1e-6)}, 0, 1e-6);
}

TEST_CASE("clip_grads_with_norm_: clip_grad_norm_'s scaling with the norm given") {
  Tensor a = make_param({0.0, 0.0}), b = make_param({0.0}), a2 = make_param({0.0, 0.0}), b2 = make_param({0.0});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});
  set_grad(a2, {3.0, 4.0});
  set_grad(b2, {12.0});
  const double total = grad_norm({a, b});
  CHECK(total == 13.0);
  clip_grads_with_norm_({a, b}, 6.5, total);
  const double scale = 6.5 / (13.0 + 1e-6);
  CHECK_CLOSE(grad(a), {3.0 * scale, 4.0 * scale}, 0, 1e-15);
  CHECK_CLOSE(grad(b), {12.0 * scale}, 0, 1e-15);
  CHECK(clip_grad_norm_({a2, b2}, 6.5) == total);  // clip_grad_norm_ is the norm, then this
  CHECK(values(grad(a)) == values(grad(a2)));
  // A norm given for other gradients scales by it, not by their own.
  Tensor c = make_param({0.0});
  set_grad(c, {2.0});
  clip_grads_with_norm_({c}, 1.0, 4.0);
  CHECK_CLOSE(grad(c), {2.0 / (4.0 + 1e-6)}, 0, 1e-15);
  // A norm below max_norm leaves the gradients alone (not even their
  // version); a NaN norm makes them NaN, as clip_grad_norm_ does.
  const uint64_t version = grad(a).version();
  clip_grads_with_norm_({a, b}, 100.0, 13.0);
  CHECK(grad(a).version() == version);
  clip_grads_with_norm_({a, b}, 1.0, std::nan(""));
  CHECK(std::isnan(values(grad(b))[0]));
  CHECK(values(grad(b2))[0] == doctest::Approx(12.0 * scale));
  check_throws_with<ValueError>([&] { clip_grads_with_norm_({a}, -1.0, 1.0); },
                                "clip_grads_with_norm_: invalid max_norm -1");
}

TEST_CASE("clip_grad_norm_ on large gradients matches a double reference") {
  // Past the parallel threshold and not a multiple of the 4096 block.
  const int64_t n = 100003;
  Tensor p = make_param(std::vector<double>(n, 0.0), DType::f32);
  const Tensor g = random_tensor({n}, 7, DType::f32, -2, 2);
  p.autograd_meta()->grad = g;
  double sum_sq = 0, sum_abs = 0, max_abs = 0;
  for (float x : g.to_vector<float>()) {
    sum_sq += static_cast<double>(x) * x;
    sum_abs += std::abs(x);
    max_abs = std::max(max_abs, static_cast<double>(std::abs(x)));
  }
  CHECK(grad_norm({p}) == doctest::Approx(std::sqrt(sum_sq)).epsilon(1e-12));
  CHECK(grad_norm({p}, 1.0) == doctest::Approx(sum_abs).epsilon(1e-12));
  CHECK(grad_norm({p}, kInfNorm) == max_abs);
  const std::vector<double> before = values(g);
  const double total = clip_grad_norm_({p}, 1.0);
  std::vector<double> want(before.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = before[i] * static_cast<float>(1.0 / (total + 1e-6));
  CHECK_CLOSE(grad(p), want, 0, 1e-6);

  // The norm does not depend on the thread count (fixed blocks, ordered combine).
  const int threads = omp_get_max_threads();
  p.autograd_meta()->grad = g;
  omp_set_num_threads(1);
  const double one_thread = grad_norm({p});
  omp_set_num_threads(3);
  const double three_threads = grad_norm({p});
  omp_set_num_threads(threads);
  CHECK(one_thread == three_threads);
}

TEST_CASE("clip_grad_norm_ with non-finite norms and bad arguments") {
  Tensor p = make_param({0.0, 0.0});
  set_grad(p, {NAN, 1.0});
  check_throws_with<ValueError>([&] { clip_grad_norm_({p}, 1.0, 2.0, true); }, "is nan, so it cannot be clipped");
  CHECK(values(grad(p))[1] == 1.0);  // unchanged by the error
  CHECK(std::isnan(grad_norm({p}, kInfNorm)));  // max propagates NaN as torch's does
  CHECK(std::isnan(clip_grad_norm_({p}, 1.0)));
  CHECK(std::isnan(values(grad(p))[1]));  // scaled by NaN, as torch does
  check_throws_with<ValueError>([&] { clip_grad_norm_({p}, -1.0); }, "invalid max_norm -1");
  check_throws_with<ValueError>([&] { grad_norm({p}, 0.0); }, "invalid norm_type 0");
  Tensor q = make_param({0.0});
  q.autograd_meta()->grad = from_vector<double>({1.0}, {1});
  CHECK(clip_grad_norm_({q}, 1.0, 2.0, true) == 1.0);
}

TEST_CASE("per-parameter learning-rate scales (parameter groups)") {
  Tensor a = make_param({1.0, 2.0}), b = make_param({1.0, 2.0}), c = make_param({1.0, 2.0});
  optim::SGD sgd({a, b, c}, {.lr = 0.1});
  sgd.set_lr_scale(b, 3.0);
  sgd.set_lr_scale(c, 0.0);
  for (const Tensor& p : {a, b, c}) set_grad(p, {1.0, -1.0});
  sgd.step();
  CHECK(values(a) == std::vector<double>{1.0 - 0.1, 2.0 + 0.1});
  CHECK(values(b)[0] == doctest::Approx(1.0 - 0.3));
  CHECK(values(b)[1] == doctest::Approx(2.0 + 0.3));
  CHECK(values(c) == std::vector<double>{1.0, 2.0});  // scale 0: frozen
  CHECK(sgd.lr_scale(1) == 3.0);
  // Adam: a scaled parameter takes a proportionally scaled first step (lr * sign(g) at step 1).
  Tensor d = make_param({0.0}), e = make_param({0.0});
  optim::Adam adam({d, e}, {.lr = 0.01});
  adam.set_lr_scale(e, 10.0);
  set_grad(d, {2.0});
  set_grad(e, {2.0});
  adam.step();
  CHECK(values(d)[0] == doctest::Approx(-0.01).epsilon(1e-6));
  CHECK(values(e)[0] == doctest::Approx(-0.1).epsilon(1e-6));
  check_throws_with<ValueError>([&] { sgd.set_lr_scale(d, 2.0); }, "SGD: set_lr_scale: the tensor");
  check_throws_with<ValueError>([&] { sgd.set_lr_scale(a, -1.0); }, "invalid learning-rate scale -1");
}
