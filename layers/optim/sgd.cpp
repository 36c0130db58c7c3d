// SGD: validation of the options and the fused update loop (see sgd.h for
// the math). One pass reads p, g and b once and writes p and b once:
// 12 bytes/element moved for f32 with momentum, so the step is memory bound.
#include "layers/optim/sgd.h"

#include <cmath>

#include "kernels/optim_step.h"
#include "tensor/cuda_memory.h"
#include "tensor/dispatch.h"
#include "tensor/factory.h"

#ifdef CRFSEG_WITH_CUDA
#include "kernels/cuda/optim.h"
#endif

namespace crfseg::optim {

namespace {

// The update of sgd.h over n contiguous elements; `buf` is null without
// momentum. The per-element rule is kernels/optim_step.h's, shared with CUDA.
template <typename T>
void sgd_update(T* p, const T* g, T* buf, int64_t n, const kernels::SgdStep& c) {
  const kernels::SgdConstants<T> k(c);
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) kernels::sgd_update_element(p[i], g[i], buf != nullptr ? buf + i : nullptr, k);
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), options.lr, "SGD"), options_(options) {
  CRFSEG_CHECK(options.momentum >= 0.0 && std::isfinite(options.momentum), ValueError,
               "SGD: invalid momentum ", options.momentum, " (expected >= 0)");
  CRFSEG_CHECK(options.weight_decay >= 0.0 && std::isfinite(options.weight_decay), ValueError,
               "SGD: invalid weight_decay ", options.weight_decay, " (expected >= 0)");
  CRFSEG_CHECK(std::isfinite(options.dampening), ValueError, "SGD: invalid dampening ", options.dampening);
  CRFSEG_CHECK(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0), ValueError,
               "SGD: nesterov momentum requires momentum > 0 and dampening == 0, got momentum ",
               options.momentum, " and dampening ", options.dampening);
  momentum_buffers_.resize(this->params().size());
}

void SGD::update(size_t index, const Tensor& param, const Tensor& grad) {
  kernels::SgdStep c{lr_for(index), options_.momentum, options_.dampening, options_.weight_decay,
                     options_.nesterov, options_.maximize, false};
  Tensor& buf = momentum_buffers_[index];
  // A buffer made before the parameter moved (Module::to) follows it.
  if (buf.defined() && buf.device() != param.device()) buf = buf.to(param.device());
  if (options_.momentum != 0.0 && !buf.defined()) {
    buf = Tensor::empty(param.shape(), param.options());  // filled by the loop (first = true)
    c.first = true;
  }
  dispatch_float(param.dtype(), "SGD::step", [&](auto tag) {
    using T = decltype(tag);
#ifdef CRFSEG_WITH_CUDA
    if (param.device().is_cuda()) {
      kernels::cuda::sgd_step<T>(param.data<T>(), grad.data<T>(), buf.defined() ? buf.data<T>() : nullptr,
                                 param.numel(), c, cuda::launch_stream(param.device().index));
      return;
    }
#endif
    sgd_update<T>(param.data<T>(), grad.data<T>(), buf.defined() ? buf.data<T>() : nullptr, param.numel(), c);
  });
  if (buf.defined()) buf.bump_version();
}

void SGD::export_param_state(size_t index, NamedTensors& out) const {
  if (momentum_buffers_[index].defined()) out.emplace_back("momentum_buffer", momentum_buffers_[index]);
}

void SGD::import_param_states(const std::vector<std::map<std::string, Tensor>>& per_param) {
  std::vector<Tensor> buffers(per_param.size());
  for (size_t i = 0; i < per_param.size(); ++i) {
    for (const auto& [key, t] : per_param[i]) {
      CRFSEG_CHECK(key == "momentum_buffer" && options_.momentum != 0.0, ValueError, where(),
                   "load_state: unknown entry 'param.", i, ".", key, "' (SGD with momentum ", options_.momentum,
                   options_.momentum != 0.0 ? " keeps only 'momentum_buffer')" : " keeps no per-parameter state)");
      buffers[i] = checked_buffer(i, key, t);
    }
  }
  momentum_buffers_ = std::move(buffers);
}

}  // namespace crfseg::optim
