// ConvAutotuner: picks a convolution algorithm per layer by timing each one
// once, as cuDNN's benchmark mode does (torch.backends.cudnn.benchmark).
//
// The key: which pass (forward, backward-input, backward-weight), the
// geometry, the element size, the GEMM precision, the device, the
// convolution workspace limit (it sets the image groups) and the switches
// that change what a candidate runs (the flipped backward-input, the
// production SGEMM variant). The first call with a key times every
// candidate through the caller's function (on CUDA: a warm-up run, then
// the mean of 3 runs between two events; tensor/ops_conv.cpp), without
// holding the tuner's lock, and keeps the fastest; ties go to the earlier
// candidate, so the reference path wins an exact tie; a candidate whose
// timing throws a crfseg::Error (e.g. its workspace does not fit) counts
// as infinitely slow. Later calls return the kept choice without timing
// anything. Each candidate's workspace stays in the caching allocator
// afterwards (reserved memory grows until empty_cache or an out-of-memory
// retry).
// Winograd F(4x4) may be chosen for f32 layers: its transforms cost about
// 10x F(2x2)'s rounding error (a few 1e-5 relative), as cuDNN's FP32
// Winograd does.
//
// The choice depends on timings, so two processes may choose differently
// and their results differ by rounding: the autotuned mode (CRFSEG_CUDA_CONV
// = auto) is opt-in, like cuDNN's, and runs are then not bit-reproducible.
// The tuner is plain host code (no CUDA), so its rules run in CPU tests with
// a fake clock; report() lists every key with each candidate's time, the
// per-layer comparison of the algorithms that a GPU run should record.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/ref/conv2d.h"

namespace crfseg::kernels {

enum class ConvPass { forward, backward_input, backward_weight };
const char* conv_pass_name(ConvPass pass);

struct ConvTuneKey {
  ConvPass pass = ConvPass::forward;
  int64_t N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int element_bytes = 4;
  int precision = 0;  // the GEMM precision's enum value (fp32, tf32, bf16)
  int device = 0;
  int64_t workspace_limit = 0;
  // Switches that change what a candidate runs (bit 0: the im2col path's
  // flipped backward-input, CRFSEG_CUDA_CONV_FLIP; the bits above: the
  // production CUDA SGEMM variant's index), so that a choice timed under
  // one setting is not reused under another.
  int options = 0;

  auto operator<=>(const ConvTuneKey&) const = default;
  static ConvTuneKey of(ConvPass pass, const ConvGeometry& g, int element_bytes, int precision, int device = 0,
                        int64_t workspace_limit = 0);
  // "forward 64 -> 64, 3x3, in [16, 64, 256, 256]" (stride, padding and dilation when not 1, 0, 1).
  std::string str() const;
};

struct ConvTuneResult {
  int chosen = -1;                                // the candidate kept
  std::vector<std::pair<int, double>> times_ms;   // every candidate, in the order timed
};

class ConvAutotuner {
 public:
  // The kept choice for key, or (first call) times every candidate with
  // time_ms(candidate) and keeps the fastest; a crfseg::Error from
  // time_ms counts as an infinite time (when every candidate fails, the
  // first is kept, and running it reports its error). Throws ValueError for
  // no candidates; other exceptions pass through and nothing is kept. Two
  // threads timing one key at once both time it; the first to finish wins.
  int choose(const ConvTuneKey& key, const std::vector<int>& candidates, const std::function<double(int)>& time_ms);
  // The choices so far, by key.
  std::map<ConvTuneKey, ConvTuneResult> results() const;
  // A markdown table of results(): one row per key, a column per candidate
  // (its time in ms; the chosen one starred). name(candidate) heads the columns.
  std::string report(const std::function<std::string(int)>& name) const;
  void clear();

 private:
  mutable std::mutex lock_;
  std::map<ConvTuneKey, ConvTuneResult> results_;
};

// The process-wide tuner the CUDA convolutions use.
ConvAutotuner& conv_autotuner();

}  // namespace crfseg::kernels
