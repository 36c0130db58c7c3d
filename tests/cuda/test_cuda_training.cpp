// Training on cuda:0 against the CPU: the caching allocator, the autograd
// glue, optimizers and their state, gradient norms, and U-Net (+ CRF-RNN)
// segmenters trained a few steps under every convolution algorithm.

#include "tests/cuda/support.h"

TEST_CASE("cuda memory: the caching allocator reuses freed blocks and reports its statistics" *
          doctest::skip(kNoDevice)) {
  cuda::empty_cache(0);
  const DeviceMemoryStats before = cuda::memory_stats(0);
  { const Tensor t = empty({1 << 20}, {DType::f32, Device::cuda(0)}); }
  { const Tensor t = empty({1 << 20}, {DType::f32, Device::cuda(0)}); }
  const DeviceMemoryStats after = cuda::memory_stats(0);
  CHECK(after.allocations - before.allocations == 2);
  CHECK(after.cache_hits - before.cache_hits >= 1);  // the second reused the first's block
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(cuda::memory_summary(0).find("memory on cuda:0") != std::string::npos);
  // An allocation far beyond the device throws OutOfMemoryError with the byte counts, and nothing is lost.
  check_throws_with<OutOfMemoryError>([] { empty({int64_t{1} << 46}, {DType::f32, Device::cuda(0)}); },
                                      "out of memory allocating 281474976710656 bytes");
  CHECK(cuda::memory_stats(0).allocated_bytes == before.allocated_bytes);
}

TEST_CASE("cuda ops: an autograd graph runs on the device and matches the CPU gradients" *
          doctest::skip(kNoDevice)) {
  const Tensor x0 = random_tensor({4, 6}, 20), w0 = random_tensor({6, 3}, 21);
  auto run = [&](Device d) {
    Tensor x = x0.to(d), w = w0.to(d);
    set_requires_grad(w, true);
    Tensor y = relu(matmul(x, w));
    Tensor loss = mean(mul(y, y));
    backward(loss);
    return std::pair{loss.to(Device::cpu()), grad(w).to(Device::cpu())};
  };
  auto [lc, gc] = run(Device::cpu());
  auto [lg, gg] = run(Device::cuda(0));
  CHECK_CLOSE(lg, values(lc), 1e-6, 1e-5);
  CHECK_CLOSE(gg, values(gc), 1e-6, 1e-5);
}

// A CPU grad_output for a CUDA output is refused at once: through a chain
// of views only, it would have become a CPU .grad on a CUDA leaf.
TEST_CASE("cuda autograd: backward refuses a grad_output on another device" * doctest::skip(kNoDevice)) {
  const Tensor x = gpu(random_tensor({2, 6}, 3));
  set_requires_grad(x);
  const Tensor y = crfseg::reshape(x, {3, 4});
  check_throws_with<AutogradError>([&] { backward(y, ones({3, 4})); },
                                   "backward: expected grad_output like Tensor[3, 4] f32 cuda:0, got Tensor[3, 4] f32 cpu");
  CHECK_FALSE(grad(x).defined());
  backward(y, ones({3, 4}, y.options()));
  CHECK(grad(x).device() == Device::cuda(0));
}

TEST_CASE("cuda autograd: each differentiable function's forward and backward on the device match the CPU" *
          doctest::skip(kNoDevice)) {
  // The autograd glue (saved tensors, the backward's raw ops, gradient
  // accumulation) on device tensors, per function, in f64: the kernels
  // themselves are compared above, this is what calls them.
  using Fn = std::function<Tensor(const Tensor&, const Tensor&)>;
  const ops::Pool2dArgs pool{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
  const std::vector<std::pair<std::string, Fn>> fns = {
      {"sigmoid", [](const Tensor& x, const Tensor&) { return crfseg::sigmoid(x); }},
      {"tanh", [](const Tensor& x, const Tensor&) { return crfseg::tanh(x); }},
      {"exp", [](const Tensor& x, const Tensor&) { return crfseg::exp(x); }},
      {"log", [](const Tensor& x, const Tensor&) { return crfseg::log(x); }},
      {"sqrt", [](const Tensor& x, const Tensor&) { return crfseg::sqrt(x); }},
      {"pow 2.5", [](const Tensor& x, const Tensor&) { return crfseg::pow(x, 2.5); }},
      {"reciprocal, square, neg", [](const Tensor& x, const Tensor&) {
         return crfseg::neg(crfseg::square(crfseg::reciprocal(x)));
       }},
      {"div, broadcast", [](const Tensor& x, const Tensor& y) { return crfseg::div(x, crfseg::slice(y, 1, 0, 1)); }},
      {"rsub and rdiv scalars", [](const Tensor& x, const Tensor&) {
         return crfseg::rdiv_scalar(crfseg::rsub_scalar(x, 5.0), 2.0);
       }},
      {"softmax and log_softmax", [](const Tensor& x, const Tensor& y) {
         return crfseg::add(crfseg::softmax(x, 1), crfseg::log_softmax(y, 3));
       }},
      {"mean and max", [](const Tensor& x, const Tensor& y) {
         return crfseg::add(crfseg::mean(x, {2, 3}, true), crfseg::max(y, {2, 3}, true));
       }},
      {"avg_pool2d", [pool](const Tensor& x, const Tensor&) { return crfseg::avg_pool2d(x, pool); }},
      {"max_pool2d", [pool](const Tensor& x, const Tensor&) { return crfseg::max_pool2d(x, pool); }},
      {"adaptive_avg_pool2d", [](const Tensor& x, const Tensor&) { return crfseg::adaptive_avg_pool2d(x, 4, 3); }},
      {"upsample2d bilinear", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 13, 11, ops::UpsampleMode::bilinear);
       }},
      {"upsample2d bilinear, align_corners", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 5, 17, ops::UpsampleMode::bilinear, true);
       }},
      {"upsample2d nearest", [](const Tensor& x, const Tensor&) {
         return crfseg::upsample2d(x, 18, 14, ops::UpsampleMode::nearest);
       }},
      {"stack and concat", [](const Tensor& x, const Tensor& y) {
         return crfseg::concat({crfseg::flatten(crfseg::stack({x, y}, 1)), crfseg::flatten(x)}, 0);
       }},
      {"to_dtype f32 and back", [](const Tensor& x, const Tensor&) {
         return crfseg::to_dtype(crfseg::mul_scalar(crfseg::to_dtype(x, DType::f32), 3.0), DType::f64);
       }},
      {"dropout", [](const Tensor& x, const Tensor&) {
         Generator gen(11);  // masks are drawn on the host: the same on both devices
         return crfseg::dropout(x, 0.3, true, gen);
       }},
      {"matmul of views", [](const Tensor& x, const Tensor& y) {
         return crfseg::matmul(crfseg::reshape(x, {6, 63}), crfseg::transpose(crfseg::reshape(y, {6, 63}), 0, 1));
       }},
  };
  const Tensor x0 = random_tensor({2, 3, 9, 7}, 120, DType::f64, 0.2, 2.0);
  const Tensor y0 = random_tensor({2, 3, 9, 7}, 121, DType::f64, 0.2, 2.0);
  for (const auto& fn : fns) {
    INFO(fn.first);
    auto run = [&](Device d) {
      Tensor x = ops::clone(x0.to(d)), y = ops::clone(y0.to(d));  // fresh leaves on each run
      set_requires_grad(x, true);
      set_requires_grad(y, true);
      const Tensor out = fn.second(x, y);
      const Tensor r = random_tensor(out.shape(), 122, DType::f64).to(d);
      backward(crfseg::sum(crfseg::mul(out, r)));
      std::vector<Tensor> parts = {ops::flatten(detach(out))};
      for (const Tensor& t : {x, y})
        if (grad(t).defined()) parts.push_back(ops::flatten(grad(t)));
      return ops::concat(parts, 0).to(Device::cpu());
    };
    const Tensor want = run(Device::cpu()), got = run(Device::cuda(0));
    REQUIRE(got.shape() == want.shape());
    CHECK_CLOSE(got, values(want), 1e-9, 1e-9);
  }
}

TEST_CASE("cuda: a U-Net trains on the device as on the CPU (SGD and Adam, dice + CE)" * doctest::skip(kNoDevice)) {
  // Same seed, same data: two steps on each device; losses and weights must agree.
  for (const std::string opt_name : {"sgd", "adam"}) {
    auto train = [&](Device d) {
      Generator gen(3);
      const auto net = tiny_unet(gen);
      net->to(d);
      std::unique_ptr<optim::Optimizer> opt;
      if (opt_name == "sgd") opt = std::make_unique<optim::SGD>(net->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      else opt = std::make_unique<optim::Adam>(net->parameters(), optim::AdamOptions{.lr = 1e-2});
      const Tensor x = random_tensor({2, 3, 16, 16}, 70).to(d);
      const Tensor y = random_tensor({2, 16, 16}, 71, DType::f64, 0, 3).to(DType::i64).to(d);
      std::vector<double> losses;
      for (int step = 0; step < 2; ++step) {
        const Tensor logits = (*net)(x);
        const Tensor loss = cross_entropy(logits, y) + dice_loss(logits, y);
        losses.push_back(loss.item());
        opt->zero_grad();
        backward(loss);
        opt->step();
      }
      return std::pair{losses, state_values(*net)};
    };
    INFO(opt_name);
    const auto [lc, wc] = train(Device::cpu());
    const auto [lg, wg] = train(Device::cuda(0));
    CHECK_CLOSE(lg, lc, 1e-4, 1e-4);
    // Adam's first steps move each weight by about lr * sign(g), so a
    // gradient near 0 that rounds to the other sign on the other device moves
    // its weight 2 lr apart: compare weights after SGD only.
    if (opt_name == "sgd") CHECK_CLOSE(wg, wc, 1e-3, 1e-3);
  }
}

TEST_CASE("cuda: a U-Net + CRF-RNN segmenter at a size its encoder does not divide trains on the device as on the "
          "CPU, under every convolution algorithm and at bf16" * doctest::skip(kNoDevice)) {
  // 17 x 23 pads to 20 x 24 for a depth-2 U-Net (Segmenter's zero padding,
  // made on the input's device), and the CRF-RNN final layer sees the
  // unpadded image. Two SGD steps on each device from the same weights.
#ifdef CRFSEG_WITH_CUDA
  struct Run {
    std::vector<double> losses, weights;
    Tensor first;  // the first step's logits and every parameter's gradient, flattened, on the CPU
  };
  auto train = [&](Device d) {
    Generator gen(5);
    const auto net = tiny_unet(gen);
    auto layer = std::make_shared<crf::CrfRnn>(
        crf::CrfRnnOptions{.num_classes = 3, .train_iterations = 2, .theta_alpha = 20.0, .theta_beta = 30.0});
    net->set_final_layer(layer, layer->as_final_layer());
    net->to(d);
    optim::SGD opt(net->parameters(), optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
    const Tensor x = random_tensor({2, 3, 17, 23}, 72, DType::f32, 0, 255).to(d);
    const Tensor y = random_tensor({2, 17, 23}, 73, DType::f64, 0, 3).to(DType::i64).to(d);
    Run run;
    for (int step = 0; step < 2; ++step) {
      const Tensor logits = (*net)(x);
      REQUIRE(logits.shape() == Shape{2, 3, 17, 23});
      const Tensor loss = cross_entropy(logits, y);
      run.losses.push_back(loss.item());
      opt.zero_grad();
      backward(loss);
      if (step == 0) run.first = with_grads(logits, net->parameters());
      opt.step();
    }
    run.weights = state_values(*net);
    return run;
  };
  const Run want = train(Device::cpu());
  std::vector<kernels::cuda::ConvAlgorithm> algorithms(std::begin(kernels::cuda::kConvAlgorithms),
                                                        std::end(kernels::cuda::kConvAlgorithms));
  algorithms.push_back(kernels::cuda::ConvAlgorithm::autotune);
  for (const kernels::cuda::ConvAlgorithm algorithm : algorithms) {
    const ConvAlgorithmGuard guard(algorithm);
    // F(4x4, 3x3)'s transforms round about 10x more than the others (the
    // conv test's note); anything autotuned may run them.
    const bool coarse = algorithm == kernels::cuda::ConvAlgorithm::winograd4 ||
                        algorithm == kernels::cuda::ConvAlgorithm::autotune;
    {
      INFO("fp32, algorithm ", std::string(kernels::cuda::conv_algorithm_name(algorithm)));
      const Run got = train(Device::cuda(0));
      const double tol = coarse ? 5e-3 : 1e-3;
      CHECK_CLOSE(got.losses, want.losses, tol, tol);
      CHECK_CLOSE(got.first, values(want.first), tol, tol);
      CHECK_CLOSE(got.weights, want.weights, tol, tol);
    }
    {
      // BF16 tensor-core inputs (FP32 storage and accumulation): within
      // BF16's rounding of the FP32 run, norm-wise (each convolution rounds
      // its operands to 8 significant bits, about 4e-3 relative).
      const cuda::MatmulPrecisionGuard precision(cuda::MatmulPrecision::bf16);
      INFO("bf16, algorithm ", std::string(kernels::cuda::conv_algorithm_name(algorithm)));
      const Run got = train(Device::cuda(0));
      const double err = relative_error(got.first, want.first);
      MESSAGE("bf16, ", std::string(kernels::cuda::conv_algorithm_name(algorithm)),
              ": first step's logits and gradients within ", err, " of fp32 on the CPU (norm-wise)");
      CHECK(err < (coarse ? 1e-1 : 5e-2));
    }
  }
#endif
}

TEST_CASE("cuda: every SGD, Adam and AdamW option steps on the device as on the CPU" * doctest::skip(kNoDevice)) {
  // The fused device steps (kernels/cuda/optim.cu) against the CPU loops on
  // the same gradients: 1031 elements (not a multiple of a block), 4 steps.
  const int64_t n = 1031;
  auto values_at = [&](int step, double scale) {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = scale * std::sin(1.3 * static_cast<double>(i) + 0.7 * step);
    return v;
  };
  using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const Tensor&)>;
  std::vector<std::pair<std::string, MakeOpt>> variants;
  for (const optim::SGDOptions o : {optim::SGDOptions{.lr = 0.1},
                                     optim::SGDOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.3},
                                     optim::SGDOptions{.lr = 0.02, .momentum = 0.9, .weight_decay = 0.05,
                                                       .nesterov = true},
                                     optim::SGDOptions{.lr = 0.1, .weight_decay = 0.1, .maximize = true}}) {
    variants.emplace_back("SGD momentum " + std::to_string(o.momentum) + (o.nesterov ? " nesterov" : "") +
                              (o.maximize ? " maximize" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::SGD>(std::vector<Tensor>{p}, o); });
  }
  for (const optim::AdamOptions o : {optim::AdamOptions{.lr = 1e-2},
                                      optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true},
                                      optim::AdamOptions{.lr = 1e-2, .maximize = true}}) {
    variants.emplace_back(std::string("Adam") + (o.amsgrad ? " amsgrad" : "") + (o.maximize ? " maximize" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::Adam>(std::vector<Tensor>{p}, o); });
  }
  for (const optim::AdamWOptions o :
       {optim::AdamWOptions{.lr = 1e-2}, optim::AdamWOptions{.lr = 1e-2, .amsgrad = true}}) {
    variants.emplace_back(std::string("AdamW") + (o.amsgrad ? " amsgrad" : ""),
                          [o](const Tensor& p) { return std::make_unique<optim::AdamW>(std::vector<Tensor>{p}, o); });
  }
  for (const auto& variant : variants) {
    const std::string& name = variant.first;
    const MakeOpt& make = variant.second;
    for (const DType dtype : {DType::f32, DType::f64}) {
      auto run = [&](Device d) {
        Tensor p = from_vector(values_at(-1, 1.0), {n}).to(dtype).to(d);
        set_requires_grad(p);
        const std::unique_ptr<optim::Optimizer> opt = make(p);
        for (int step = 0; step < 4; ++step) {
          p.autograd_meta()->grad = from_vector(values_at(step, 1.0 + 0.5 * step), {n}).to(dtype).to(d);
          opt->step();
        }
        return values(p.to(Device::cpu()).to(DType::f64));
      };
      INFO(name, ", ", std::string(dtype_name(dtype)));
      const double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
      CHECK_CLOSE(run(Device::cuda(0)), run(Device::cpu()), tol, tol);
    }
  }
}

TEST_CASE("cuda optim: state made on the CPU follows its parameters to the device, and load_state takes the "
          "device's own state" * doctest::skip(kNoDevice)) {
  // Two steps on the CPU, the module moved (Module::to), two more on the
  // device: the same as four on the CPU. The moments made on the CPU must
  // follow the parameters (they were handed to the device kernels as host
  // pointers).
  using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>;
  const std::vector<std::pair<std::string, MakeOpt>> kinds = {
      {"SGD", [](const std::vector<Tensor>& p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
       }},
      {"Adam", [](const std::vector<Tensor>& p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 1e-2, .amsgrad = true});
       }}};
  const Tensor x = random_tensor({4, 5}, 130), target = random_tensor({4, 3}, 131);
  for (const auto& kind : kinds) {
    INFO(kind.first);
    auto train = [&](bool move) {
      Generator gen(9);
      nn::Linear net(nn::LinearOptions{.in_features = 5, .out_features = 3}, gen);
      const std::unique_ptr<optim::Optimizer> opt = kind.second(net.parameters());
      Device d = Device::cpu();
      for (int step = 0; step < 4; ++step) {
        if (move && step == 2) {
          d = Device::cuda(0);
          net.to(d);
        }
        const Tensor diff = crfseg::sub(net.forward(x.to(d)), target.to(d));
        opt->zero_grad();
        backward(crfseg::mean(crfseg::mul(diff, diff)));
        opt->step();
      }
      const std::vector<double> w = state_values(net);
      // The device optimizer's state, exported (on the device) and loaded
      // into a fresh optimizer over the same parameters, steps the same.
      if (move) {
        const std::unique_ptr<optim::Optimizer> again = kind.second(net.parameters());
        again->load_state(opt->state_tensors());
        const std::vector<Tensor> ps = net.parameters();
        for (const Tensor& p : ps) p.autograd_meta()->grad = full_like(p, 0.25);
        const std::vector<Tensor> before = {ops::clone(ps[0]), ops::clone(ps[1])};
        opt->step();
        std::vector<Tensor> first;
        for (size_t i = 0; i < ps.size(); ++i) {
          first.push_back(ops::clone(ps[i]));
          ops::copy_(ps[i], before[i]);
        }
        again->step();
        for (size_t i = 0; i < ps.size(); ++i) CHECK_CLOSE(cpu(ps[i]), values(cpu(first[i])), 0, 0);
      }
      return w;
    };
    CHECK_CLOSE(train(true), train(false), 1e-5, 1e-5);
  }
}

TEST_CASE("cuda: grad_norm over device gradients, an empty one included" * doctest::skip(kNoDevice)) {
  for (double norm : {1.0, 2.0, 3.0, static_cast<double>(INFINITY)}) {
    auto run = [&](Device d) {
      Tensor p = zeros({0}, {DType::f32, d}), q = random_tensor({7, 3}, 85).to(d);
      set_requires_grad(p, true);
      set_requires_grad(q, true);
      backward(add(sum(p), sum(mul(q, q))));
      return optim::grad_norm({p, q}, norm);
    };
    INFO("norm ", norm);
    CHECK(run(Device::cuda(0)) == doctest::Approx(run(Device::cpu())).epsilon(1e-6));
    // Several device gradients come back in one copy, summed (or maxed) in
    // parameter order; a NaN in any of them gives NaN, as on the CPU.
    for (const bool poisoned : {false, true}) {
      auto several = [&](Device d) {
        std::vector<Tensor> ps;
        for (int i = 0; i < 5; ++i) {
          ps.push_back(random_tensor({3 + i, 4}, static_cast<uint64_t>(86 + i)).to(d));
          set_requires_grad(ps.back(), true);
        }
        Tensor loss = sum(mul(ps[0], ps[0]));
        for (size_t i = 1; i < ps.size(); ++i) loss = add(loss, sum(mul(ps[i], ps[i])));
        backward(loss);
        if (poisoned) ops::fill_(grad(ps[2]), std::nan(""));
        return optim::grad_norm(ps, norm);
      };
      const double got = several(Device::cuda(0)), want = several(Device::cpu());
      INFO("poisoned ", poisoned);
      if (poisoned) {
        CHECK(std::isnan(got));
        CHECK(std::isnan(want));
      } else {
        CHECK(got == doctest::Approx(want).epsilon(1e-6));
      }
    }
  }
}
