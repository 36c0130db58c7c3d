// crf_mean_field as a differentiable op: the raw forward records its tape
// (filters, per-iteration Q and messages) when a gradient is needed, and
// MeanFieldBackward replays it backwards (math in crf/mean_field.cpp).
// The weights are SavedTensors, so an optimizer step between forward and
// backward is reported as an AutogradError instead of a silently wrong
// gradient. The image takes no part in the graph (it is not differentiated).
#include "autograd/autograd_meta.h"
#include "crf/mean_field.h"
#include "crf/mean_field_composed.h"

namespace crfseg::crf {

namespace {

class MeanFieldBackward : public Node {
 public:
  MeanFieldBackward(std::shared_ptr<MeanFieldTape> tape, const Tensor& ws, const Tensor& wb, const Tensor& mu)
      : tape_(std::move(tape)), ws_(ws), wb_(wb), mu_(mu) {}
  const char* name() const override { return "CrfMeanFieldBackward"; }

  // Gradients for (unaries, spatial_weights, bilateral_weights, compatibility).
  std::vector<Tensor> apply(const Tensor& g) override {
    CRFSEG_CHECK(tape_ != nullptr, AutogradError, name(), ": the graph was already freed by a backward pass");
    const MeanFieldGrads grads =
        mean_field_backward(g, *tape_, ws_.unpack(name()), wb_.unpack(name()), mu_.unpack(name()));
    return {grads.unaries, grads.spatial_weights, grads.bilateral_weights, grads.compatibility};
  }
  void release_saved() override {
    tape_.reset();
    ws_.release();
    wb_.release();
    mu_.release();
  }

 private:
  std::shared_ptr<MeanFieldTape> tape_;
  SavedTensor ws_, wb_, mu_;
};

}  // namespace

Tensor crf_mean_field(const Tensor& unaries, const Tensor& image, const Tensor& spatial_weights,
                      const Tensor& bilateral_weights, const Tensor& compatibility, const MeanFieldOptions& options) {
  if (unaries.defined() && unaries.device().is_cuda()) {
    // The fused kernel is CPU code; on CUDA the same function is composed
    // from device ops and the GPU lattice.
    return crf_mean_field_composed(unaries, image, spatial_weights, bilateral_weights, compatibility, options);
  }
  const bool grad = needs_grad({&unaries, &spatial_weights, &bilateral_weights, &compatibility});
  MeanFieldForward fwd =
      mean_field_forward(unaries, image, spatial_weights, bilateral_weights, compatibility, options, grad);
  if (grad) {
    attach(fwd.logits,
           std::make_shared<MeanFieldBackward>(fwd.tape, spatial_weights, bilateral_weights, compatibility),
           {&unaries, &spatial_weights, &bilateral_weights, &compatibility});
  }
  return fwd.logits;
}

}  // namespace crfseg::crf
