// Mean-field inference of a dense CRF unrolled as a recurrent network: the
// CRF-RNN of Zheng et al., "Conditional Random Fields as Recurrent Neural
// Networks", ICCV 2015 (https://arxiv.org/abs/1502.03240), with Gaussian
// edge potentials as in Kraehenbuehl & Koltun, NIPS 2011.
//
// Shapes: unaries U [B, L, H, W] (logits; f32 or f64), image I [B, C, H, W]
// (values on the 0-255 scale; any dtype, read as f64; C = 3 RGB or 1
// grayscale, any C >= 1 works), spatial_weights W_s, bilateral_weights W_b,
// compatibility mu: [L, L], same dtype as U. Output: logits [B, L, H, W].
//
// Per image, with pixel i at (x, y) and n = H W:
//   spatial filter   K_s: features (x, y) / theta_gamma                 (d = 2)
//   bilateral filter K_b: features (x / theta_alpha, y / theta_alpha,
//                                   I_0 / theta_beta, ..., I_{C-1} / theta_beta)  (d = 2 + C)
//   Z_0 = U
//   for t = 0 .. T-1:
//     Q_t   = softmax over classes of Z_t
//     A_s   = K_s Q_t / K_s 1,   A_b = K_b Q_t / K_b 1     (per pixel, per class)
//     Z_t+1 = U - mu (W_s A_s + W_b A_b)                   (matrix products over classes)
//   output Z_T
// (The messages of each kernel sum to 1 over classes, so the CPU kernel
// filters L - 1 classes and takes the last as 1 minus the others: one
// channel fewer per forward filter call, the same function.)
// Both K are Gaussian filters INCLUDING the pixel itself (crf/gaussian_filter.h),
// the way crfasrnn's reference implementations filter: the normaliser K 1
// is then >= the self weight, never 0 (a 1x1 image, or a pixel no
// neighbour resembles within a few theta_beta, would otherwise divide 0 by
// 0), and the lattice, whose self weight varies with the pixel's place in
// its simplex, needs no approximate self-subtraction. The self term adds
// w Q_i to the message, which the learnable weights absorb.
//
// Sign convention: a message is subtracted, so mu(l, l') > 0 penalises
// label l where neighbours hold l'. The CrfRnn module initialises mu to the
// Potts model 1 - I (mu(l, l') = [l != l']) and W_s = 3 I, W_b = 5 I (the
// crfasrnn_keras / crfasrnn_pytorch kernel weights). Since the normalised
// messages of each kernel sum to 1 over classes, Potts 1 - I gives the same
// softmax as crfasrnn's "+ I" form (logits + W A): they differ by a
// per-pixel constant.
//
// Backward (exact, through all T iterations, see crf/mean_field.cpp):
// gradients for U, W_s, W_b and mu. NOT differentiated: the image (hence
// the bilateral features) and the thetas, which are hyper-parameters; no
// gradient flows to `image` even if it requires grad.
#pragma once

#include <memory>
#include <vector>

#include "crf/gaussian_filter.h"
#include "tensor/tensor.h"

namespace crfseg::crf {

struct MeanFieldOptions {
  int64_t iterations = 5;     // T >= 1
  double theta_alpha = 160.0;  // bilateral, spatial part (pixels)
  double theta_beta = 3.0;     // bilateral, intensity part (0-255 image units)
  double theta_gamma = 3.0;    // spatial kernel (pixels)
  FilterMode mode = FilterMode::lattice;
};

// What a forward pass keeps for the backward: the filters (the spatial one
// depends only on H, W, theta_gamma and the mode, so the batch shares it
// and it is cached across calls; one bilateral filter per image) and each
// iteration's softmax and normalised messages.
struct MeanFieldTape {
  MeanFieldOptions options;
  int64_t batch = 0, classes = 0, height = 0, width = 0;
  std::shared_ptr<const GaussianFilter> spatial;
  std::vector<std::unique_ptr<GaussianFilter>> bilateral;
  Tensor norm_spatial, norm_bilateral;  // [B, H W]: K 1 per pixel
  Tensor q, msg_spatial, msg_bilateral;  // [B, T, H W, L] (pixel-major): Q_t, A_s, A_b
};

struct MeanFieldForward {
  Tensor logits;                        // [B, L, H, W]
  std::shared_ptr<MeanFieldTape> tape;  // null unless record = true
};

// The raw forward (no graph). record = true keeps the tape for mean_field_backward.
// Throws ShapeError / DTypeError / NotImplementedError / ValueError naming
// "crf_mean_field", the expected and the actual, for inconsistent inputs.
MeanFieldForward mean_field_forward(const Tensor& unaries, const Tensor& image, const Tensor& spatial_weights,
                                    const Tensor& bilateral_weights, const Tensor& compatibility,
                                    const MeanFieldOptions& options, bool record);

struct MeanFieldGrads {
  Tensor unaries;            // [B, L, H, W]
  Tensor spatial_weights;    // [L, L]
  Tensor bilateral_weights;  // [L, L]
  Tensor compatibility;      // [L, L]
};

// Gradients of a loss given grad = dLoss/dlogits [B, L, H, W], for the
// weights the forward ran with.
MeanFieldGrads mean_field_backward(const Tensor& grad, const MeanFieldTape& tape, const Tensor& spatial_weights,
                                   const Tensor& bilateral_weights, const Tensor& compatibility);

// The argument checks of crf_mean_field, on any device (shapes, dtypes,
// options, the weights on the unaries' device): ShapeError / DTypeError /
// DeviceError / ValueError naming "crf_mean_field".
void check_mean_field_inputs(const Tensor& unaries, const Tensor& image, const Tensor& spatial_weights,
                             const Tensor& bilateral_weights, const Tensor& compatibility,
                             const MeanFieldOptions& options);

// One bilateral filter per image of `image` (CPU, f64, contiguous [B, C, H,
// W]), the images built side by side on the OpenMP threads. Errors
// (non-finite or too large features) are rethrown, the first image's first.
// for_gpu: lattices whose tables only go to the GPU (make_gaussian_filter).
std::vector<std::unique_ptr<GaussianFilter>> build_bilateral_filters(const Tensor& image,
                                                                     const MeanFieldOptions& options,
                                                                     bool for_gpu = false);

// The spatial filter of an H x W image depends on nothing but (H, W,
// theta_gamma, mode): the 4 most recently used are kept, so training at a
// fixed size builds its spatial lattice once (about 10 ms at 256x256).
// Filters are immutable, hence shareable.
std::shared_ptr<const GaussianFilter> cached_spatial_filter(int64_t H, int64_t W, double theta_gamma,
                                                            FilterMode mode);

// The differentiable op (autograd Node in crf/mean_field_op.cpp): gradients
// flow to unaries, spatial_weights, bilateral_weights and compatibility.
// CUDA unaries run crf_mean_field_composed (crf/mean_field_composed.h).
Tensor crf_mean_field(const Tensor& unaries, const Tensor& image, const Tensor& spatial_weights,
                      const Tensor& bilateral_weights, const Tensor& compatibility,
                      const MeanFieldOptions& options = {});

}  // namespace crfseg::crf
