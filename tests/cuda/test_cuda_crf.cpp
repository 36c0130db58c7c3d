// The CRF-RNN layer on cuda:0 against the CPU: the composed mean-field with
// lattices built on the host and on the device, the dense mode, and
// lattices prefetched on a host thread.

#include "tests/cuda/support.h"

TEST_CASE("cuda: the CRF-RNN layer on the device (composed mean-field, GPU lattice) matches the CPU" *
          doctest::skip(kNoDevice)) {
  // Both lattice builds: on the host and uploaded, and on the GPU (kernels/cuda/lattice_build.cu).
  // And the dense mode: the exact filter's kernel (kernels/cuda/dense_gaussian.cu).
  struct Case {
    crf::LatticeBuild build;
    crf::CrfParametrization param;
    crf::FilterMode mode;
  };
  for (const Case c : {Case{crf::LatticeBuild::host, crf::CrfParametrization::free, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::host, crf::CrfParametrization::convergent, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::device, crf::CrfParametrization::free, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::device, crf::CrfParametrization::convergent, crf::FilterMode::lattice},
                       Case{crf::LatticeBuild::host, crf::CrfParametrization::convergent, crf::FilterMode::dense}}) {
    const crf::LatticeBuild build = c.build;
    const crf::CrfParametrization param = c.param;
    const crf::FilterMode mode = c.mode;
    INFO(std::string(build == crf::LatticeBuild::device ? "lattice built on the device" : "lattice built on the host"),
         ", ", std::string(crf::filter_mode_name(mode)));
    const LatticeBuildGuard restore(build);
    auto run = [&](Device d) {
      crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3, .theta_alpha = 20.0, .theta_beta = 30.0,
                                           .mode = mode, .parametrization = param});
      layer.to(d);
      Tensor u = random_tensor({2, 3, 19, 23}, 90, DType::f32, -2, 2).to(d);
      const Tensor image = random_tensor({2, 3, 19, 23}, 91, DType::f32, 0, 255).to(d);
      set_requires_grad(u, true);
      const Tensor out = layer.forward(u, image);
      backward(sum(mul(out, random_tensor(out.shape(), 92).to(d))));
      std::vector<Tensor> leaves = layer.parameters();
      leaves.insert(leaves.begin(), u);
      return with_grads(out, leaves);
    };
    // The GPU lattice sums in the CPU lattice's order (tests/cuda/test_cuda_permutohedral.cpp),
    // so only f32 rounding separates the two.
    CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-3, 1e-3);
  }
  // A grayscale image (features x, y, intensity: d = 3) in f64, both builds,
  // and the eval-mode iteration count (10) after the training one (5).
  for (const crf::LatticeBuild build : {crf::LatticeBuild::host, crf::LatticeBuild::device}) {
    INFO(std::string(build == crf::LatticeBuild::device ? "grayscale f64, lattice built on the device"
                                                        : "grayscale f64, lattice built on the host"));
    const LatticeBuildGuard restore(build);
    auto run = [&](Device d) {
      crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 4, .image_channels = 1, .theta_alpha = 10.0,
                                           .theta_beta = 20.0, .dtype = DType::f64});
      layer.to(d);
      Tensor u = random_tensor({2, 4, 13, 17}, 93, DType::f64, -2, 2).to(d);
      const Tensor image = random_tensor({2, 1, 13, 17}, 94, DType::f64, 0, 255).to(d);
      set_requires_grad(u, true);
      const Tensor out = layer.forward(u, image);
      backward(sum(mul(out, random_tensor(out.shape(), 95, DType::f64).to(d))));
      layer.eval();
      const Tensor out_eval = layer.forward(u, image);
      std::vector<Tensor> leaves = layer.parameters();
      leaves.insert(leaves.begin(), u);
      return ops::concat({with_grads(out, leaves), cpu(ops::flatten(out_eval))}, 0);
    };
    CHECK_CLOSE(run(Device::cuda(0)), values(run(Device::cpu())), 1e-9, 1e-9);
  }
  // Unaries and image on different devices: a clear error, not the other
  // device's filters (a CPU image's lattice was applied to device memory).
  crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3});
  layer.to(Device::cuda(0));
  const Tensor u = random_tensor({1, 3, 5, 6}, 96).to(Device::cuda(0));
  const Tensor host_image = random_tensor({1, 3, 5, 6}, 97, DType::f32, 0, 255);
  check_throws_with<DeviceError>([&] { layer.forward(u, host_image); },
                                 "expected the image on the unaries' device cuda:0, got it on cpu");
}

TEST_CASE("cuda crf: lattices prefetched on a host thread give the inline build's bits, forward and backward" *
          doctest::skip(kNoDevice)) {
  // The host build (the default) with and without CrfRnn::prefetch_lattices;
  // with it, the forward takes the tables made on the host thread and only
  // uploads them (crf/bilateral_prefetch.h).
  const Device gpu = Device::cuda(0);
  const LatticeBuildGuard restore(crf::LatticeBuild::host);
  auto run = [&](bool prefetch) {
    crf::CrfRnn layer(crf::CrfRnnOptions{.num_classes = 3, .theta_alpha = 20.0, .theta_beta = 30.0});
    layer.to(gpu);
    Tensor u = random_tensor({2, 3, 19, 23}, 90, DType::f32, -2, 2).to(gpu);
    const Tensor host = random_tensor({2, 3, 19, 23}, 91, DType::f32, 0, 255);
    const Tensor image = host.to(gpu);
    if (prefetch) layer.prefetch_lattices(host, image);
    set_requires_grad(u, true);
    const Tensor out = layer.forward(u, image);
    backward(sum(mul(out, random_tensor(out.shape(), 92).to(gpu))));
    return values(ops::concat({ops::flatten(out), ops::flatten(grad(u))}, 0).to(Device::cpu()));
  };
  const std::vector<double> plain = run(false);
  const int64_t hits = crf::prefetched_bilateral_hits();
  CHECK(run(true) == plain);
  CHECK(crf::prefetched_bilateral_hits() == hits + 1);
}
