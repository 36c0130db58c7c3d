// The composed mean-field and the differentiable Gaussian-filter op (see
// crf/mean_field_composed.h).
#include "crf/mean_field_composed.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "autograd/autograd_meta.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "autograd/profiler.h"
#include "crf/bilateral_prefetch.h"
#include "crf/permutohedral.h"
#include "crf/dense_filter.h"
#include "crf/gaussian_filter_cuda.h"
#include "crf/permutohedral_cuda.h"
#include "crf/stacked_filter.h"
#include "tensor/cuda_memory.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"
#include "tensor/ops.h"

namespace crfseg::crf {

namespace {

constexpr const char* kOp = "crf_mean_field_composed";

// out = K v or K^T v, [n, C] contiguous, no graph.
Tensor apply_filter(const Tensor& v_in, const DeviceGaussianFilter& f, bool transpose) {
  const Tensor v = ops::contiguous(v_in);
  Tensor out = Tensor::empty(v.shape(), v.options());
  const int64_t C = v.size(1);
  dispatch_float(v.dtype(), "gaussian_filter", [&](auto tag) {
    using T = decltype(tag);
    if (v.device().is_cuda()) {
      const cuda::StreamHandle stream = cuda::launch_stream(v.device().index);
      f.cuda->record_stream(stream);
      f.cuda->filter(v.data<T>(), out.data<T>(), C, transpose, stream);
    } else {
      f.host->apply(v.data<T>(), out.data<T>(), C, transpose);
    }
  });
  return out;
}

class GaussianFilterBackward : public Node {
 public:
  explicit GaussianFilterBackward(std::shared_ptr<const DeviceGaussianFilter> f) : filter_(std::move(f)) {}
  const char* name() const override { return "GaussianFilterBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    CRFSEG_CHECK(filter_ != nullptr, AutogradError, name(), ": the graph was already freed by a backward pass");
    return {apply_filter(g, *filter_, /*transpose=*/true)};
  }
  void release_saved() override { filter_.reset(); }

 private:
  std::shared_ptr<const DeviceGaussianFilter> filter_;
};

}  // namespace

namespace {

// The spatial filter on `device`: the host one is cached by
// cached_spatial_filter; its uploaded twins are kept here (the last 4), so
// a CUDA training loop uploads the spatial lattice once, not every forward.
std::shared_ptr<const DeviceGaussianFilter> spatial_on(Device device, std::shared_ptr<const GaussianFilter> host) {
  if (device.is_cpu()) return to_device_filter(std::move(host), device);
  struct Entry {
    const GaussianFilter* host;
    Device device;
    std::shared_ptr<const DeviceGaussianFilter> filter;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;
  std::lock_guard<std::mutex> lock(mutex);
  for (const Entry& e : cache) {
    if (e.host == host.get() && e.device == device) return e.filter;
  }
  auto f = to_device_filter(host, device);  // holds `host`, so the pointer key stays valid
  if (cache.size() == 4) cache.erase(cache.begin());
  cache.push_back({host.get(), device, f});
  return f;
}

}  // namespace

namespace {

std::atomic<int> g_lattice_build{-1};  // -1: not read from the environment yet

// The batch's stacked bilateral filter on `dev`: prefetched on a host
// thread (crf/bilateral_prefetch.h), else built on the GPU when that is
// selected and applies, else on the host (and uploaded for CUDA).
std::shared_ptr<const DeviceGaussianFilter> bilateral_on(const Tensor& image, const MeanFieldOptions& o) {
  const profiler::Scope scope("CRF bilateral lattices");
  const Device dev = image.device();
  const bool device_build =
      dev.is_cuda() && o.mode == FilterMode::lattice && cuda_lattice_build() == LatticeBuild::device;
  std::optional<PrefetchedBilateral> p;
  if (!device_build) p = take_prefetched_bilateral(image, o);
  if (p) {
    if (!p->cuda) return to_device_filter(std::move(p->host), dev);
    auto f = std::make_shared<DeviceGaussianFilter>();
    f->device = dev;
    f->cuda = std::move(p->cuda);
    f->host = std::move(p->host);
    return f;
  }
  if (device_build) {
    // The image stays on the device: features, embedding, sort and tables there.
    std::optional<CudaPermutohedralFilter> built =
        CudaPermutohedralFilter::build_bilateral(image, o.theta_alpha, o.theta_beta);
    if (built) {
      auto f = std::make_shared<DeviceGaussianFilter>();
      f->device = dev;
      f->cuda = std::make_shared<const CudaPermutohedralFilter>(std::move(*built));
      return f;
    }
  }
  const Tensor host_image = ops::contiguous(ops::to_dtype(image.to(Device::cpu()), DType::f64));
  // For CUDA only the tables are used (uploaded): no CPU blur structures.
  return to_device_filter(std::make_shared<const StackedFilter>(build_bilateral_filters(host_image, o, dev.is_cuda())),
                          dev);
}

}  // namespace

LatticeBuild cuda_lattice_build() {
  int b = g_lattice_build.load();
  if (b < 0) {
    const char* env = std::getenv("CRFSEG_CUDA_LATTICE");
    const std::string v = env == nullptr ? "" : env;
    CRFSEG_CHECK(v.empty() || v == "host" || v == "device", ValueError,
                 "CRFSEG_CUDA_LATTICE: expected host or device, got '", v, "'");
    int expected = -1;
    g_lattice_build.compare_exchange_strong(expected, static_cast<int>(v == "device" ? LatticeBuild::device
                                                                                    : LatticeBuild::host));
    b = g_lattice_build.load();
  }
  return static_cast<LatticeBuild>(b);
}

LatticeBuild set_cuda_lattice_build(LatticeBuild build) {
  const LatticeBuild previous = cuda_lattice_build();
  g_lattice_build.store(static_cast<int>(build));
  return previous;
}

int64_t DeviceGaussianFilter::num_points() const { return host ? host->num_points() : cuda->num_points(); }

std::shared_ptr<const DeviceGaussianFilter> to_device_filter(std::shared_ptr<const GaussianFilter> host,
                                                             Device device) {
  CRFSEG_CHECK(host != nullptr, ValueError, kOp, ": to_device_filter of a null filter");
  auto f = std::make_shared<DeviceGaussianFilter>();
  f->device = device;
  if (device.is_cuda()) {
    // One filter, or a stack of them (one device filter for the stack).
    const auto lattices = parts_of_type<PermutohedralLattice>(*host);
    if (!lattices.empty()) {
      f->cuda = std::make_shared<CudaPermutohedralFilter>(lattice_tables(lattices), device.index);
    } else {
      const auto dense = parts_of_type<DenseGaussianFilter>(*host);
      CRFSEG_CHECK(!dense.empty(), ValueError, kOp, ": expected lattice or dense filters (one kind, not mixed) on ",
                   device.str());
      f->cuda = std::make_shared<CudaDenseGaussianFilter>(dense, device.index);
    }
  }
  f->host = std::move(host);
  return f;
}

Tensor gaussian_filter(const Tensor& values, std::shared_ptr<const DeviceGaussianFilter> filter) {
  check_defined("gaussian_filter", values, "values");
  CRFSEG_CHECK(values.dim() == 2 && values.size(0) == filter->num_points(), ShapeError,
               "gaussian_filter: expected values [", filter->num_points(), ", C], got ",
               shape_str(values.shape()));
  CRFSEG_CHECK(values.device() == filter->device, DeviceError, "gaussian_filter: the filter lives on ",
               filter->device.str(), ", the values on ", values.device().str());
  Tensor out = apply_filter(values, *filter, false);
  if (needs_grad({&values})) attach(out, std::make_shared<GaussianFilterBackward>(std::move(filter)), {&values});
  return out;
}

Tensor crf_mean_field_composed(const Tensor& unaries, const Tensor& image, const Tensor& ws, const Tensor& wb,
                               const Tensor& mu, const MeanFieldOptions& o) {
  check_mean_field_inputs(unaries, image, ws, wb, mu, o);  // the fused op's checks, on any device
  const int64_t L = unaries.size(1);
  const int64_t B = unaries.size(0), H = unaries.size(2), W = unaries.size(3), n = H * W;
  const Device dev = unaries.device();
  const TensorOptions topt = unaries.options();

  // Filters and normalisers (K 1: no gradient). The spatial lattice is one
  // for every image; the images' bilateral lattices build side by side (one
  // image per thread) and stack into one block-diagonal filter over the
  // batch's B n pixels (crf/stacked_filter.h), or build as one batch on the
  // GPU (cuda_lattice_build), so each step filters the whole batch in one
  // call: on CUDA one launch per step, not per image.
  const auto ks = spatial_on(dev, cached_spatial_filter(H, W, o.theta_gamma, o.mode));
  const auto kb = bilateral_on(image, o);
  Tensor norm_s, norm_b;
  {
    NoGradGuard no_grad;
    norm_s = reshape(apply_filter(ones({n, 1}, topt), *ks, false), {n, 1, 1});
    norm_b = apply_filter(ones({B * n, 1}, topt), *kb, false);  // [B n, 1]
  }

  // Z = U - (A_s W_s^T + A_b W_b^T) mu^T, pixel-major inside: every
  // product is one [B n, L] x [L, L] GEMM for the whole batch.
  const Tensor U = reshape(unaries, {B, L, n});
  const Tensor ws_t = transpose(ws, 0, 1), wb_t = transpose(wb, 0, 1), mu_t = transpose(mu, 0, 1);
  Tensor Z = U;
  for (int64_t t = 0; t < o.iterations; ++t) {
    const Tensor q = contiguous(transpose(softmax(Z, 1), 1, 2));  // [B, n, L]
    // Spatial: the same filter for every image, so the images are channels.
    const Tensor qs = reshape(contiguous(transpose(q, 0, 1)), {n, B * L});
    const Tensor as = div(reshape(gaussian_filter(qs, ks), {n, B, L}), norm_s);        // [n, B, L]
    const Tensor as_b = reshape(contiguous(transpose(as, 0, 1)), {B * n, L});           // [B n, L]
    const Tensor ab = div(gaussian_filter(reshape(q, {B * n, L}), kb), norm_b);        // [B n, L]
    const Tensor m = matmul(add(matmul(as_b, ws_t), matmul(ab, wb_t)), mu_t);          // [B n, L]
    Z = sub(U, transpose(reshape(m, {B, n, L}), 1, 2));
  }
  return reshape(Z, unaries.shape());
}

}  // namespace crfseg::crf
