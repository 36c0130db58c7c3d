// The network ops on cuda:0 against the CPU: softmax and the losses, batch
// norm, pooling, upsampling, their NaN and infinity paths, and confusion counts.

#include <random>

#include "tests/cuda/support.h"

TEST_CASE("cuda ops: softmax, log_softmax, their backward, and cross-entropy" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({3, 5, 7, 11}, 12, dt, -4, 4), g = random_tensor({3, 5, 7, 11}, 13, dt);
    for (int64_t dim : {1, 3, 0}) {
      for (bool log : {false, true}) {
        check_op("softmax", {x}, [&](const std::vector<Tensor>& v) {
          return log ? ops::log_softmax(v[0], dim) : ops::softmax(v[0], dim);
        }, 1e-6, tol(dt));
        check_op("softmax_backward", {x, g}, [&](const std::vector<Tensor>& v) {
          const Tensor y = log ? ops::log_softmax(v[0], dim) : ops::softmax(v[0], dim);
          return ops::softmax_backward(v[1], y, dim, log);
        }, 1e-6, tol(dt));
      }
    }
    Tensor target = random_tensor({3, 7, 11}, 14, DType::f64, 0, 5).to(DType::i64);
    target = ops::where(ops::compare(ops::CompareOp::eq, target, full({}, 2, {DType::i64})), full({}, -100, {DType::i64}),
                        target);  // some positions ignored
    const Tensor w = random_tensor({5}, 15, dt, 0.5, 2);
    check_op("cross_entropy", {x, target, w}, [](const std::vector<Tensor>& v) {
      return ops::cross_entropy(v[0], v[1], v[2], -100).loss;
    }, 1e-6, tol(dt));
    check_op("cross_entropy_backward", {x, target, w}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], v[2], -100);
      return ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], v[2], -100);
    }, 1e-7, tol(dt));
    // Unweighted, on [N, C] logits; then every position ignored (a NaN
    // loss, as torch gives, and a zero gradient).
    const Tensor x2 = random_tensor({13, 5}, 16, dt);
    const Tensor t2 = random_tensor({13}, 17, DType::f64, 0, 5).to(DType::i64);
    check_op("cross_entropy, unweighted, [N, C]", {x2, t2}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], Tensor(), -100);
      const Tensor dx = ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], Tensor(), -100);
      return ops::concat({ops::reshape(fwd.loss, {1}), ops::flatten(dx)}, 0);
    }, 1e-7, tol(dt));
    const Tensor none = full({13}, -100, {DType::i64});
    check_op("cross_entropy, every position ignored", {x2, none}, [](const std::vector<Tensor>& v) {
      const auto fwd = ops::cross_entropy(v[0], v[1], Tensor(), -100);
      const Tensor dx = ops::cross_entropy_backward(ones({}, v[0].options()), fwd, v[1], Tensor(), -100);
      return ops::concat({ops::reshape(fwd.loss, {1}), ops::flatten(dx)}, 0);
    }, 0, 0);
    const Tensor bad = from_vector<int64_t>({0, 1, 7}, {1, 3});
    // Raised at the next read from the device (the loss's here): a deferred
    // check. The loss is NaN, and the error is raised once.
    ops::CrossEntropyForward failed;
    check_throws_with<ValueError>([&] {
      failed = ops::cross_entropy(gpu(random_tensor({1, 5, 3}, 1, dt)), gpu(bad), Tensor(), -100);
      (void)failed.loss.item();
    }, "cross_entropy: target 7 at flat position 2 is outside [0, 5)");
    CHECK(cuda::deferred_checks_pending() == 0);
    if (failed.loss.defined()) CHECK(std::isnan(failed.loss.item()));  // (under CRFSEG_CUDA_SYNC=1 the op threw)
  }
}

TEST_CASE("cuda ops: binary_cross_entropy_with_logits and its backward" * doctest::skip(kNoDevice)) {
  // Logits up to +-40 (the overflow-free form's range), targets in [0, 1],
  // pos_weight 1 and 2.5; one element, an odd 2-D shape, and more elements
  // than one grid covers. Both sum in double; f32 terms differ by expf's
  // and the contractions' last bits, which cancellation (x = -40, t small)
  // can make large next to a small loss: absolute tolerances of 1e-5 / 1e-6.
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& shape : {Shape{1}, Shape{7, 13}, Shape{3, 1000003}}) {
      const Tensor x = random_tensor(shape, 16, dt, -40, 40), t = random_tensor(shape, 17, dt, 0, 1);
      for (double p : {1.0, 2.5}) {
        INFO("shape ", shape_str(shape), " pos_weight ", p);
        check_op("bce", {x, t}, [&](const std::vector<Tensor>& v) {
          return ops::binary_cross_entropy_with_logits(v[0], v[1], p);
        }, dt == DType::f64 ? 1e-12 : 1e-5, dt == DType::f64 ? 1e-12 : 1e-5);
        check_op("bce_backward", {x, t}, [&](const std::vector<Tensor>& v) {
          return ops::binary_cross_entropy_with_logits_backward(full({}, 3.0, v[0].options()), v[0], v[1], p);
        }, dt == DType::f64 ? 1e-12 : 1e-6, tol(dt));
      }
    }
  }
  const Tensor empty_x = zeros({0}, {DType::f32, Device::cuda(0)});
  CHECK(std::isnan(ops::binary_cross_entropy_with_logits(empty_x, empty_x).item()));
  // Through autograd, from a non-contiguous view of the logits.
  auto run = [](Device d) {
    Tensor base = random_tensor({13, 7}, 18, DType::f32, -5, 5).to(d);
    set_requires_grad(base, true);
    const Tensor t = random_tensor({7, 13}, 19, DType::f32, 0, 1).to(d);
    const Tensor loss = binary_cross_entropy_with_logits(transpose(base, 0, 1), t, 2.0);
    backward(loss);
    return ops::concat({ops::flatten(loss), ops::flatten(grad(base))}, 0).to(Device::cpu());
  };
  CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-6, 1e-5);
}

TEST_CASE("cuda ops: batch norm, training and eval, fused ReLU, forward and backward" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    // [3, 2, 97, 89]: 25899 values per channel in 4 chunks whose edges fall
    // inside images (kernels/channel_chunks.h); [20000, 3]: 3 chunks of
    // images of one value; [2, 600, 3, 3]: one chunk per channel; [1100,
    // 64, 8, 8]: 70400 planes of 64, past one grid's 65535 rows; [2, 3, 48,
    // 40]: rows of 1920 in 16-byte vectors over two blocks a row (97 x 89
    // rows are not a multiple of 4: one value a thread).
    for (const Shape& shape : {Shape{4, 3, 7, 5}, Shape{6, 5}, Shape{2, 300, 1, 1}, Shape{3, 2, 97, 89},
                               Shape{20000, 3}, Shape{2, 600, 3, 3}, Shape{1100, 64, 8, 8}, Shape{2, 3, 48, 40}}) {
      const int64_t C = shape[1];
      // An offset far above the spread: the statistics must not cancel.
      const Tensor x = ops::scalar_op(ops::ScalarOp::add, random_tensor(shape, 40, dt), 1000.0);
      const Tensor w = random_tensor({C}, 41, dt, 0.5, 1.5), b = random_tensor({C}, 42, dt);
      const Tensor g = random_tensor(shape, 43, dt);
      for (bool training : {true, false}) {
        for (bool relu : {false, true}) {
          INFO("training=", training, " relu=", relu);
          auto run = [&](const std::vector<Tensor>& v) {
            Tensor rm = ops::clone(v[4]), rv = ops::clone(v[5]);
            const auto fwd = ops::batch_norm(v[0], v[1], v[2], rm, rv, training, 0.1, 1e-5, relu);
            const auto grads = ops::batch_norm_backward(v[3], v[0], v[1], fwd, training, relu);
            // Everything in one tensor: y, dx, dweight, dbias, the running statistics.
            return ops::concat({ops::flatten(fwd.y), ops::flatten(grads.dx), grads.dweight, grads.dbias, rm, rv}, 0);
          };
          const Tensor rm0 = ops::scalar_op(ops::ScalarOp::add, random_tensor({C}, 44, dt), 1000.0);
          const Tensor rv0 = random_tensor({C}, 45, dt, 0.5, 2.0);
          // f32: x near 1000 has an ulp of 6e-5, which the devices' 1-ulp
          // differences in the mean carry into y and dx.
          check_op("batch_norm", {x, w, b, g, rm0, rv0}, run, dt == DType::f64 ? 1e-9 : 1e-3, dt == DType::f64 ? 1e-9 : 1e-3);
        }
      }
    }
    // Without affine parameters (BatchNorm2d(affine = false)), training,
    // with and without the fused ReLU: no dweight, and dbias the (masked)
    // gradient's per-channel sum.
    const Shape shape{3, 4, 9, 7};
    const Tensor x = random_tensor(shape, 46, dt), g = random_tensor(shape, 47, dt);
    for (const bool relu : {false, true}) {
      INFO("relu=", relu);
      check_op("batch_norm without weight and bias", {x, g}, [relu](const std::vector<Tensor>& v) {
        Tensor rm = zeros({4}, v[0].options()), rv = ones({4}, v[0].options());
        const auto fwd = ops::batch_norm(v[0], Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, relu);
        const auto grads = ops::batch_norm_backward(v[1], v[0], Tensor(), fwd, true, relu);
        REQUIRE_FALSE(grads.dweight.defined());
        return ops::concat({ops::flatten(fwd.y), ops::flatten(grads.dx), grads.dbias, rm, rv}, 0);
      }, tol(dt) * 10, tol(dt) * 10);
    }
  }
}

TEST_CASE("cuda ops: max, average and adaptive pooling with their backwards" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({2, 3, 13, 11}, 50, dt);
    const std::vector<Pool2dArgs> args = {
        {},
        {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1},
        {.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0, .dil_h = 2, .dil_w = 3,
         .ceil_mode = true},
        {.kernel_h = 4, .kernel_w = 3, .stride_h = 3, .stride_w = 2, .pad_h = 2, .pad_w = 1, .ceil_mode = true,
         .count_include_pad = false},
    };
    for (const Pool2dArgs& a : args) {
      check_op("max_pool2d", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::concat({ops::flatten(f.y), ops::flatten(ops::to_dtype(f.indices, v[0].dtype()))}, 0);
      }, 0, 0);
      check_op("max_pool2d_backward", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape());
      }, 1e-6, tol(dt));
      check_op("max_pool2d_backward (gather)", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape(), a);
      }, 1e-6, tol(dt));
      check_op("max_pool2d_backward (gather, unchecked)", {x}, [&](const std::vector<Tensor>& v) {
        const auto f = ops::max_pool2d(v[0], a);
        return ops::max_pool2d_backward(ops::scalar_op(ops::ScalarOp::add, f.y, 2.0), f.indices, v[0].shape(), a,
                                        false);
      }, 1e-6, tol(dt));
      if (a.dil_h == 1 && a.dil_w == 1) {
        check_op("avg_pool2d", {x}, [&](const std::vector<Tensor>& v) { return ops::avg_pool2d(v[0], a); }, 1e-6,
                 tol(dt));
        check_op("avg_pool2d_backward", {x}, [&](const std::vector<Tensor>& v) {
          const Tensor y = ops::avg_pool2d(v[0], a);
          return ops::avg_pool2d_backward(ops::unary(ops::UnaryOp::sigmoid, y), v[0].shape(), a);
        }, 1e-6, tol(dt));
      }
    }
    for (const std::pair<int64_t, int64_t>& size : {std::pair<int64_t, int64_t>{1, 1}, {5, 3}, {13, 11}, {4, 7}}) {
      const int64_t ph = size.first, pw = size.second;  // lambdas cannot capture structured bindings before C++20's P1091 (clang 14)
      check_op("adaptive_avg_pool2d", {x}, [&](const std::vector<Tensor>& v) {
        const Tensor y = ops::adaptive_avg_pool2d(v[0], ph, pw);
        return ops::concat({ops::flatten(y), ops::flatten(ops::adaptive_avg_pool2d_backward(y, v[0].shape()))}, 0);
      }, 1e-6, tol(dt));
    }
    // A bad index reaches the user as a ValueError, as on the CPU.
    const auto f = ops::max_pool2d(gpu(x), {});
    Tensor bad = ops::clone(f.indices);
    ops::fill_(ops::slice(ops::flatten(bad), 0, 3, 4), 1000.0);
    check_throws_with<ValueError>([&] { ops::max_pool2d_backward(f.y, bad, x.shape()); }, "got 1000 at flat position 3");
    // With the forward's arguments, an index in its plane but outside its
    // window (output 3 of a 2x2 stride-2 pool reads columns 6-7; 0 is not there).
    Tensor outside = ops::clone(f.indices);
    ops::fill_(ops::slice(ops::flatten(outside), 0, 3, 4), 0.0);
    check_throws_with<ValueError>([&] { ops::max_pool2d_backward(f.y, outside, x.shape(), {}); },
                                  "each inside its output's window, got 0 at flat position 3");
  }
}

TEST_CASE("cuda ops: nearest and bilinear upsampling and their backwards" * doctest::skip(kNoDevice)) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = random_tensor({2, 3, 7, 5}, 60, dt);
    for (const std::pair<int64_t, int64_t>& size : {std::pair<int64_t, int64_t>{14, 10}, {13, 11}, {3, 2}, {82, 1}, {7, 5}}) {
      const int64_t oh = size.first, ow = size.second;
      for (auto mode : {ops::UpsampleMode::nearest, ops::UpsampleMode::bilinear}) {
        for (bool corners : {false, true}) {
          if (corners && mode == ops::UpsampleMode::nearest) continue;
          check_op("upsample2d", {x}, [&](const std::vector<Tensor>& v) {
            const Tensor y = ops::upsample2d(v[0], oh, ow, mode, corners);
            const Tensor dx = ops::upsample2d_backward(ops::unary(ops::UnaryOp::tanh, y), v[0].shape(), mode, corners);
            return ops::concat({ops::flatten(y), ops::flatten(dx)}, 0);
          }, 1e-6, tol(dt));
        }
      }
    }
  }
}

TEST_CASE("cuda ops: NaN and infinity take the CPU's paths (fused-ReLU batch norm, nearest upsampling, pooling)" *
          doctest::skip(kNoDevice)) {
  Tensor x = random_tensor({2, 3, 4, 4}, 80);
  ops::fill_(ops::slice(ops::slice(x, 0, 0, 1), 2, 1, 2), NAN);
  ops::fill_(ops::slice(ops::slice(x, 1, 2, 3), 3, 3, 4), INFINITY);
  ops::fill_(ops::slice(ops::slice(x, 0, 1, 2), 3, 0, 1), -INFINITY);
  const Tensor rm = zeros({3}), rv = ones({3});
  auto bn_relu = [&](const Tensor& t) {
    return ops::batch_norm(t, Tensor(), Tensor(), rm.to(t.device()), rv.to(t.device()), false, 0.1, 1e-5, true).y;
  };
  CHECK(same_values(values(cpu(bn_relu(gpu(x)))), values(bn_relu(x))));
  auto nearest = [](const Tensor& t) { return ops::upsample2d(t, 9, 7, ops::UpsampleMode::nearest); };
  CHECK(same_values(values(cpu(nearest(gpu(x)))), values(nearest(x))));
  auto nearest_back = [](const Tensor& t) {
    return ops::upsample2d_backward(t, {2, 3, 2, 3}, ops::UpsampleMode::nearest);
  };
  CHECK(same_values(values(cpu(nearest_back(gpu(x)))), values(nearest_back(x))));
  auto pool = [](const Tensor& t) { return ops::max_pool2d(t, {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1}).y; };
  CHECK(same_values(values(cpu(pool(gpu(x)))), values(pool(x))));
}

TEST_CASE("cuda ops: confusion counts on the device against the CPU's, and the same first bad pair" *
          doctest::skip(kNoDevice)) {
  std::mt19937 rng(5);
  // 70 classes count in shared memory (4900 counters), 80 in global memory
  // (6400); 1 << 20 + 3 elements span many blocks of the grid-stride loop.
  for (int64_t classes : {1, 3, 70, 80}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{65537}, (int64_t{1} << 20) + 3}) {
      std::vector<int64_t> t(static_cast<size_t>(n)), p(static_cast<size_t>(n));
      for (size_t i = 0; i < t.size(); ++i) {
        t[i] = rng() % 5 == 0 ? -100 : static_cast<int64_t>(rng() % static_cast<uint32_t>(classes));
        p[i] = static_cast<int64_t>(rng() % static_cast<uint32_t>(classes));
      }
      const Tensor tc = from_vector<int64_t>(t, {n}), pc = from_vector<int64_t>(p, {n});
      const std::string where = "classes " + std::to_string(classes) + ", n " + std::to_string(n);
      INFO(where);
      const Tensor want = ops::confusion_counts(pc, tc, classes, -100);
      const Tensor got = ops::confusion_counts(gpu(pc), gpu(tc), classes, -100);
      CHECK(got.device().is_cuda());
      CHECK(cpu(got).to_vector<int64_t>() == want.to_vector<int64_t>());
      // A running count: add_to plus these counts, add_to unchanged.
      const Tensor twice = ops::confusion_counts(gpu(pc), gpu(tc), classes, -100, got);
      std::vector<int64_t> doubled = want.to_vector<int64_t>();
      for (int64_t& v : doubled) v *= 2;
      CHECK(cpu(twice).to_vector<int64_t>() == doubled);
      CHECK(cpu(got).to_vector<int64_t>() == want.to_vector<int64_t>());
      if (n < 7) continue;
      // Bad pairs at several places: both devices name the first.
      std::vector<int64_t> tb = t, pb = p;
      tb[static_cast<size_t>(n - 1)] = classes;
      pb[static_cast<size_t>(n / 2)] = -3;
      tb[static_cast<size_t>(n / 2)] = 0;
      pb[static_cast<size_t>(n / 3 + 1)] = classes + 4;
      tb[static_cast<size_t>(n / 3 + 1)] = classes - 1;
      const Tensor tbc = from_vector<int64_t>(tb, {n}), pbc = from_vector<int64_t>(pb, {n});
      std::string cpu_message, gpu_message;
      try {
        ops::confusion_counts(pbc, tbc, classes, -100);
      } catch (const ValueError& e) {
        cpu_message = e.what();
      }
      Tensor failed;
      try {  // a deferred check: raised by the read (by the op under CRFSEG_CUDA_SYNC=1)
        failed = ops::confusion_counts(gpu(pbc), gpu(tbc), classes, -100, got);
        (void)cpu(failed);
      } catch (const ValueError& e) {
        gpu_message = e.what();
      }
      CHECK(cpu_message.find("at flat index " + std::to_string(n / 3 + 1) + ":") != std::string::npos);
      CHECK(gpu_message == cpu_message);
      CHECK(cuda::deferred_checks_pending() == 0);
      if (failed.defined()) CHECK(cpu(failed).to_vector<int64_t>() == want.to_vector<int64_t>());  // added nothing
    }
  }
  // A strided view and an empty pair.
  const Tensor t = random_tensor({5, 9}, 3, DType::f64, 0, 4).to(DType::i64);
  const Tensor p = random_tensor({5, 9}, 4, DType::f64, 0, 4).to(DType::i64);
  const Tensor viewed = ops::confusion_counts(ops::transpose(gpu(p), 0, 1), ops::transpose(gpu(t), 0, 1), 4, -100);
  CHECK(cpu(viewed).to_vector<int64_t>() == ops::confusion_counts(p, t, 4, -100).to_vector<int64_t>());
  const Tensor none = empty({0, 3}, {DType::i64, Device::cuda(0)});
  CHECK(cpu(ops::confusion_counts(none, none, 2, -100)).to_vector<int64_t>() == std::vector<int64_t>(4, 0));
}
