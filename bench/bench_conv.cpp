// bench_conv: times crfseg's f32 convolution kernels (forward, backward-input,
// backward-weight + bias) on U-Net and ResNet-50 layer shapes, side by side
// with oneDNN's convolution primitives when built with oneDNN.
//
//   build/bench/bench_conv [--quick] [--json] [--repeats R] [--batch N] [--filter TEXT]
//
// Before timing, each crfseg kernel is checked on 64 sampled output elements
// against the convolution's definition, summed in double; a wrong kernel
// prints no number. Reports the median and min ms over R runs, each run
// after a warm-up run of its own, all of a layer's implementations and
// passes in alternated rounds (bench/support/timer.h's time_alternated);
// GFLOP/s = 2 N K P Q C R S / t, and % of the peak measured by the FMA
// probe (bench/support/peak.h).
// oneDNN runs with format_tag::any, so it picks its own blocked layouts
// (nChw8c/nChw16c); only the primitive is timed, not reorders into or out
// of those layouts. crfseg works on plain NCHW. That favours oneDNN.
// crfseg's production path runs Winograd F(4x4, 3x3) on its deep 3x3
// layers (kernels/cpu/conv2d_winograd.h); so the comparison is like for
// like, oneDNN's own Winograd F(4x4, 3x3) ("oneDNN-winograd", where it has
// one) runs beside its direct convolution, and the per-layer sums compare
// crfseg with the faster of the two. "crfseg-gemm" rows time crfseg's
// implicit-GEMM path on the passes that production sends elsewhere, and
// "crfseg-winograd" rows its Winograd kernels on the 3x3 stride-1 passes
// that production does not send to them; "crfseg-packed-b" rows time 1x1
// layers with their input packed for the GEMM instead of read in place. The per-layer table also names
// what oneDNN picks when left to choose (convolution_auto, its default):
// on the Intel VM with 2 threads, its direct JIT kernel on every U-Net
// layer, for all three passes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_map>
#include <string>
#include <vector>

#include "bench/support/peak.h"
#include "bench/support/timer.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "tensor/cpu_allocator.h"
#include "tensor/random.h"

#ifdef CRFSEG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

using namespace crfseg;
using kernels::ConvGeometry;

namespace {

struct Layer {
  const char* name;
  int64_t C, H, W, K, R, S, stride, pad;
};

// Representative layers: U-Net at 256x256 (the LBNL system's input size),
// among them the six that issue #3 names (3 -> 64 and the second, C -> C
// convolution of each of the five stages) and two up-convolutions, and
// ResNet-50 at 224x224.
const std::vector<Layer> kLayers = {
    {"unet.enc1.conv1 3->64 256^2 3x3", 3, 256, 256, 64, 3, 3, 1, 1},
    {"unet.enc1.conv2 64->64 256^2 3x3", 64, 256, 256, 64, 3, 3, 1, 1},
    {"unet.enc2.conv2 128->128 128^2 3x3", 128, 128, 128, 128, 3, 3, 1, 1},
    {"unet.enc3.conv1 128->256 64^2 3x3", 128, 64, 64, 256, 3, 3, 1, 1},
    {"unet.enc3.conv2 256->256 64^2 3x3", 256, 64, 64, 256, 3, 3, 1, 1},
    {"unet.enc4.conv2 512->512 32^2 3x3", 512, 32, 32, 512, 3, 3, 1, 1},
    {"unet.enc5.conv1 512->1024 16^2 3x3", 512, 16, 16, 1024, 3, 3, 1, 1},
    {"unet.enc5.conv2 1024->1024 16^2 3x3", 1024, 16, 16, 1024, 3, 3, 1, 1},
    // The decoder's 2x2 stride-2 up-convolutions, as the convolutions they
    // transpose: an up-convolution's forward is this row's backward-input,
    // its input gradient this row's forward (the U-Net's first and last).
    {"unet.up1 conv-transpose 1024->512 16^2->32^2 (conv 512->1024 32^2 2x2 s2)", 512, 32, 32, 1024, 2, 2, 2, 0},
    {"unet.up4 conv-transpose 128->64 128^2->256^2 (conv 64->128 256^2 2x2 s2)", 64, 256, 256, 128, 2, 2, 2, 0},
    {"resnet.stem 3->64 224^2 7x7 s2", 3, 224, 224, 64, 7, 7, 2, 3},
    {"resnet.layer1.conv1 256->64 56^2 1x1", 256, 56, 56, 64, 1, 1, 1, 0},
    {"resnet.layer3.conv2 256->256 14^2 3x3", 256, 14, 14, 256, 3, 3, 1, 1},
    {"resnet.layer3.down 512->1024 28^2 1x1 s2", 512, 28, 28, 1024, 1, 1, 2, 0},
};
const std::vector<Layer> kQuickLayers = {{"quick 16->24 33^2 3x3", 16, 33, 33, 24, 3, 3, 1, 1}};

ConvGeometry geometry(const Layer& l, int64_t batch) {
  ConvGeometry g;
  g.N = batch, g.C = l.C, g.H = l.H, g.W = l.W, g.K = l.K, g.R = l.R, g.S = l.S;
  g.sh = g.sw = l.stride;
  g.ph = g.pw = l.pad;
  g.P = (g.H + 2 * g.ph - (g.R - 1) - 1) / g.sh + 1;
  g.Q = (g.W + 2 * g.pw - (g.S - 1) - 1) / g.sw + 1;
  return g;
}

// 64-byte aligned through the CPU allocator, like every crfseg tensor and
// oneDNN's own buffers: kernels may take aligned-only paths (e.g. the direct
// convolution's streaming stores), which a std::vector's malloc'd block
// (16-byte aligned) would never see.
using FloatVec = CpuVector<float>;

FloatVec random_floats(int64_t n, uint64_t seed) {
  Generator gen(seed);
  FloatVec v(static_cast<size_t>(n));
  for (float& x : v) x = gen.uniform_f32() - 0.5f;
  return v;
}

// The input pixel read by tap (r, s) of output (p, q), or false if padding.
bool tap(const ConvGeometry& g, int64_t p, int64_t q, int64_t r, int64_t s, int64_t* h, int64_t* w) {
  *h = p * g.sh - g.ph + r * g.dh;
  *w = q * g.sw - g.pw + s * g.dw;
  return *h >= 0 && *h < g.H && *w >= 0 && *w < g.W;
}

bool close(double got, double want, double scale) { return std::abs(got - want) <= 1e-4 * scale + 1e-5; }

// Samples 64 elements of y, dx and dw and recomputes them from the definition.
bool verify(const ConvGeometry& g, const FloatVec& x, const FloatVec& w, const FloatVec& dy, const FloatVec& y,
            const FloatVec& dx, const FloatVec& dw) {
  Generator gen(99);
  auto pick = [&](int64_t n) { return static_cast<int64_t>(gen.next_u32() % static_cast<uint32_t>(n)); };
  for (int i = 0; i < 64; ++i) {
    // y[n, k, p, q]
    const int64_t n = pick(g.N), k = pick(g.K), p = pick(g.P), q = pick(g.Q);
    double acc = 0, scale = 0;
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s) {
          int64_t h, ww;
          if (!tap(g, p, q, r, s, &h, &ww)) continue;
          const double t = double(w[((k * g.C + c) * g.R + r) * g.S + s]) * x[((n * g.C + c) * g.H + h) * g.W + ww];
          acc += t;
          scale += std::abs(t);
        }
    if (!close(y[((n * g.K + k) * g.P + p) * g.Q + q], acc, scale)) return false;
    // dw[k, c, r, s]
    const int64_t c = pick(g.C), r = pick(g.R), s = pick(g.S);
    acc = scale = 0;
    for (int64_t nn = 0; nn < g.N; ++nn)
      for (int64_t pp = 0; pp < g.P; ++pp)
        for (int64_t qq = 0; qq < g.Q; ++qq) {
          int64_t h, ww;
          if (!tap(g, pp, qq, r, s, &h, &ww)) continue;
          const double t = double(dy[((nn * g.K + k) * g.P + pp) * g.Q + qq]) * x[((nn * g.C + c) * g.H + h) * g.W + ww];
          acc += t;
          scale += std::abs(t);
        }
    if (!close(dw[((k * g.C + c) * g.R + r) * g.S + s], acc, scale)) return false;
    // dx[n, c, h, w]: every (k, r, s) whose window lands on (h, w)
    const int64_t h = pick(g.H), ww = pick(g.W);
    acc = scale = 0;
    for (int64_t kk = 0; kk < g.K; ++kk)
      for (int64_t rr = 0; rr < g.R; ++rr)
        for (int64_t ss = 0; ss < g.S; ++ss) {
          const int64_t ph = h + g.ph - rr * g.dh, pw = ww + g.pw - ss * g.dw;
          if (ph < 0 || pw < 0 || ph % g.sh || pw % g.sw || ph / g.sh >= g.P || pw / g.sw >= g.Q) continue;
          const double t = double(w[((kk * g.C + c) * g.R + rr) * g.S + ss]) *
                           dy[((n * g.K + kk) * g.P + ph / g.sh) * g.Q + pw / g.sw];
          acc += t;
          scale += std::abs(t);
        }
    if (!close(dx[((n * g.C + c) * g.H + h) * g.W + ww], acc, scale)) return false;
  }
  return true;
}

struct Row {
  std::string layer, impl, pass;
  double median_ms = 0, min_ms = 0, gflops = 0;
  bool verified = true;
};

#ifdef CRFSEG_HAVE_DNNL
// oneDNN forward, backward-data and backward-weights(+bias) primitives for g.
struct DnnlConv {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::primitive fwd, bwd_data, bwd_weights;
  std::unordered_map<int, dnnl::memory> fwd_args, bwd_data_args, bwd_weights_args;
  std::string impl;  // the three primitives' implementation names, "fwd / bwd-data / bwd-weights"

  static dnnl::memory filled(const dnnl::memory::desc& md, const dnnl::engine& eng) {
    dnnl::memory m(md, eng);
    float* p = static_cast<float*>(m.get_data_handle());
    const size_t n = md.get_size() / sizeof(float);
    for (size_t i = 0; i < n; ++i) p[i] = 0.01f * static_cast<float>(i % 97) - 0.5f;
    return m;
  }

  // algo: convolution_direct, convolution_winograd (oneDNN throws
  // dnnl::error where it has no such implementation for g or this CPU), or
  // convolution_auto (oneDNN's choice, named in `impl`).
  DnnlConv(const ConvGeometry& g, dnnl::algorithm algo) {
    using namespace dnnl;
    using dt = memory::data_type;
    const auto any = memory::format_tag::any;
    const memory::dims strides{g.sh, g.sw}, dil{g.dh - 1, g.dw - 1}, pad_l{g.ph, g.pw};
    // Right padding that makes oneDNN's output size equal ours (floor division).
    const memory::dims pad_r{(g.P - 1) * g.sh + (g.R - 1) * g.dh + 1 - g.H - g.ph,
                             (g.Q - 1) * g.sw + (g.S - 1) * g.dw + 1 - g.W - g.pw};
    const memory::desc src({g.N, g.C, g.H, g.W}, dt::f32, any), wei({g.K, g.C, g.R, g.S}, dt::f32, any),
        bia({g.K}, dt::f32, memory::format_tag::a), dst({g.N, g.K, g.P, g.Q}, dt::f32, any);
    const convolution_forward::primitive_desc fpd(
        convolution_forward::desc(prop_kind::forward_training, algo, src, wei, bia, dst,
                                  strides, dil, pad_l, pad_r),
        eng);
    fwd = convolution_forward(fpd);
    fwd_args = {{DNNL_ARG_SRC, filled(fpd.src_desc(), eng)},
                {DNNL_ARG_WEIGHTS, filled(fpd.weights_desc(), eng)},
                {DNNL_ARG_BIAS, filled(fpd.bias_desc(), eng)},
                {DNNL_ARG_DST, filled(fpd.dst_desc(), eng)}};
    const convolution_backward_data::primitive_desc dpd(
        convolution_backward_data::desc(algo, src, wei, dst, strides, dil, pad_l, pad_r),
        eng, fpd);
    bwd_data = convolution_backward_data(dpd);
    bwd_data_args = {{DNNL_ARG_DIFF_DST, filled(dpd.diff_dst_desc(), eng)},
                     {DNNL_ARG_WEIGHTS, filled(dpd.weights_desc(), eng)},
                     {DNNL_ARG_DIFF_SRC, filled(dpd.diff_src_desc(), eng)}};
    const convolution_backward_weights::primitive_desc wpd(
        convolution_backward_weights::desc(algo, src, wei, bia, dst, strides, dil, pad_l,
                                           pad_r),
        eng, fpd);
    bwd_weights = convolution_backward_weights(wpd);
    bwd_weights_args = {{DNNL_ARG_SRC, filled(wpd.src_desc(), eng)},
                        {DNNL_ARG_DIFF_DST, filled(wpd.diff_dst_desc(), eng)},
                        {DNNL_ARG_DIFF_WEIGHTS, filled(wpd.diff_weights_desc(), eng)},
                        {DNNL_ARG_DIFF_BIAS, filled(wpd.diff_bias_desc(), eng)}};
    impl = std::string(fpd.impl_info_str()) + " / " + dpd.impl_info_str() + " / " + wpd.impl_info_str();
  }
  void run(dnnl::primitive& p, std::unordered_map<int, dnnl::memory>& args) {
    p.execute(strm, args);
    strm.wait();
  }
};
#endif

// Issue #3's measure per layer: forward + backward-input + backward-weight
// (+ bias), the sum of the three medians, crfseg's production path against
// oneDNN's direct convolution and, where oneDNN has one for the layer, its
// Winograd F(4x4, 3x3). Speed ratio = the faster oneDNN's time / crfseg's
// (above 1: crfseg faster).
void print_pass_sums(const std::vector<Row>& rows, const std::unordered_map<std::string, std::string>& dnnl_auto) {
  const char* impls[] = {"crfseg", "oneDNN", "oneDNN-winograd"};
  std::vector<std::string> layers;
  std::unordered_map<std::string, double> sum[3];
  std::unordered_map<std::string, int> passes[3];
  for (const Row& r : rows) {
    int impl = -1;
    for (int i = 0; i < 3; ++i)
      if (r.impl == impls[i]) impl = i;
    if (impl < 0 || !r.verified) continue;
    if (std::find(layers.begin(), layers.end(), r.layer) == layers.end()) layers.push_back(r.layer);
    sum[impl][r.layer] += r.median_ms;
    ++passes[impl][r.layer];
  }
  if (layers.empty() || sum[1].empty()) return;
  std::printf("\n| layer | crfseg fwd + bwd ms | oneDNN direct ms | oneDNN Winograd ms | crfseg speed / best oneDNN's "
              "| oneDNN's own choice (convolution_auto) |\n|---|---|---|---|---|---|\n");
  for (const std::string& l : layers) {
    if (passes[0][l] != 3 || passes[1][l] != 3) continue;  // a pass unverified: no sum
    const bool wino = passes[2][l] == 3;
    const double best = wino ? std::min(sum[1][l], sum[2][l]) : sum[1][l];
    char wino_ms[32] = "-";
    if (wino) std::snprintf(wino_ms, sizeof wino_ms, "%.2f", sum[2][l]);
    const auto choice = dnnl_auto.find(l);
    std::printf("| %s | %.2f | %.2f | %s | %.2f | %s |\n", l.c_str(), sum[0][l], sum[1][l], wino_ms, best / sum[0][l],
                choice == dnnl_auto.end() ? "-" : choice->second.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, quick = false;
  int repeats = 10;
  int64_t batch = 1;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") json = true;
    else if (a == "--quick") quick = true;
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::atoll(argv[++i]);
    else if (a == "--filter" && i + 1 < argc) filter = argv[++i];
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_conv [--quick] [--json] [--repeats R] [--batch N] [--filter TEXT]\n"
                  "  --filter TEXT times only the layers whose name contains TEXT\n");
      return 0;
    } else {
      std::fprintf(stderr, "usage: bench_conv [--quick] [--json] [--repeats R] [--batch N] [--filter TEXT]\n");
      return 2;
    }
  }
  if (quick) repeats = 3;
  if (repeats < 1 || batch < 1) {
    std::fprintf(stderr, "bench_conv: --repeats and --batch must be >= 1\n");
    return 2;
  }
  const double peak = bench::measured_peak_gflops();

  std::vector<Row> rows;
  std::unordered_map<std::string, std::string> dnnl_auto;  // layer -> oneDNN's choice
  for (const Layer& l : quick ? kQuickLayers : kLayers) {
    if (!filter.empty() && std::string(l.name).find(filter) == std::string::npos) continue;
    const ConvGeometry g = geometry(l, batch);
    const double flops = 2.0 * g.N * g.K * g.pq() * g.crs();
    const auto x = random_floats(g.N * g.C * g.hw(), 1), w = random_floats(g.K * g.crs(), 2),
               b = random_floats(g.K, 3), dy = random_floats(g.N * g.K * g.pq(), 4);
    FloatVec y(dy.size()), dx(x.size()), dw(w.size()), db(g.K);
    kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data());
    kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data());
    kernels::cpu::conv2d_backward_weight<float>(g, dy.data(), x.data(), dw.data(), db.data());
    // The forward ran with bias; verify() checks y - b against the bias-free sum.
    FloatVec y_nobias(y);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t i = 0; i < g.pq(); ++i) y_nobias[(n * g.K + k) * g.pq() + i] -= b[k];
    // The bias gradient came from the weight gradient's pass: check it against a plain sum.
    FloatVec db_want(g.K);
    kernels::ref::conv2d_backward_bias<float>(g, dy.data(), db_want.data());
    bool db_ok = true;
    for (int64_t k = 0; k < g.K; ++k) {
      double scale = 0;  // sum of |terms|, as verify() scales its sums
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t i = 0; i < g.pq(); ++i) scale += std::abs(dy[(n * g.K + k) * g.pq() + i]);
      db_ok = db_ok && close(db[k], db_want[k], scale);
    }
    const bool ok = db_ok && verify(g, x, w, dy, y_nobias, dx, dw);

    // The layer's contenders (every implementation and pass) are timed
    // together once all are added, alternated (bench/support/timer.h).
    std::vector<bench::Contender> contenders;
    std::vector<size_t> contender_row;
    auto add = [&](const char* impl, const char* pass, bool verified, const std::function<void()>& fn) {
      Row r{l.name, impl, pass};
      r.verified = verified;
      contenders.push_back({std::string(impl) + " " + pass, verified, fn, {}});
      contender_row.push_back(rows.size());
      rows.push_back(r);
    };
    add("crfseg", "forward", ok,
        [&] { kernels::cpu::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data()); });
    namespace kc = kernels::cpu;
    // Another path's three passes (the forward without bias), verified as production's are.
    using Forward = void (*)(const ConvGeometry&, const float*, const float*, const float*, float*, bool);
    using BackwardInput = void (*)(const ConvGeometry&, const float*, const float*, float*);
    using BackwardWeight = void (*)(const ConvGeometry&, const float*, const float*, float*);
    auto verified = [&](Forward fwd, BackwardInput bwd_in, BackwardWeight bwd_w) {
      FloatVec ya(y.size()), dxa(dx.size()), dwa(dw.size());
      fwd(g, x.data(), w.data(), nullptr, ya.data(), false);
      bwd_in(g, dy.data(), w.data(), dxa.data());
      bwd_w(g, dy.data(), x.data(), dwa.data());
      return verify(g, x, w, dy, ya, dxa, dwa);
    };
    // Passes production sends to the direct or Winograd kernels: their implicit-GEMM path too.
    const bool gemm_fwd = kc::conv2d_forward_takes_direct(g) || kc::conv2d_forward_takes_winograd(g),
               gemm_bwd_in = kc::conv2d_backward_input_takes_direct(g) || kc::conv2d_backward_input_takes_winograd(g),
               gemm_bwd_w = kc::conv2d_weight_grad_takes_direct(g) || kc::conv2d_weight_grad_takes_winograd(g);
    const bool gemm_ok = (gemm_fwd || gemm_bwd_in || gemm_bwd_w) &&
                         verified(kc::conv2d_forward_gemm, kc::conv2d_backward_input_gemm,
                                  kc::conv2d_backward_weight_gemm);
    if (gemm_fwd) {
      add("crfseg-gemm", "forward", gemm_ok,
          [&] { kc::conv2d_forward_gemm(g, x.data(), w.data(), b.data(), y.data()); });
    }
    // Winograd on the passes production sends elsewhere (where it applies), so
    // that it can be timed on every layer, verified the same way.
    const bool wino_fwd = kc::conv2d_winograd_applies(g) && !kc::conv2d_forward_takes_winograd(g),
               wino_bwd_in = kc::conv2d_winograd_applies(g) && !kc::conv2d_backward_input_takes_winograd(g),
               wino_bwd_w = kc::conv2d_winograd_applies(g) && !kc::conv2d_weight_grad_takes_winograd(g);
    const bool wino_ok = (wino_fwd || wino_bwd_in || wino_bwd_w) &&
                         verified(kc::conv2d_winograd_forward, kc::conv2d_winograd_backward_input,
                                  kc::conv2d_winograd_backward_weight);
    if (wino_fwd) {
      add("crfseg-winograd", "forward", wino_ok,
          [&] { kc::conv2d_winograd_forward(g, x.data(), w.data(), b.data(), y.data()); });
    }
    // 1x1 layers: production with the input packed, as before B was read in
    // place (kc::set_conv_b_in_place), verified the same way.
    const auto packed_b = [&](const std::function<void()>& fn) {
      const bool was = kc::set_conv_b_in_place(false);
      fn();
      kc::set_conv_b_in_place(was);
    };
    bool packed_ok = false;
    if (g.is_pointwise()) {
      packed_b([&] {
        packed_ok = verified(kc::conv2d_forward<float>, kc::conv2d_backward_input<float>,
                             kc::conv2d_backward_weight_gemm);
      });
      add("crfseg-packed-b", "forward", packed_ok,
          [&] { packed_b([&] { kc::conv2d_forward<float>(g, x.data(), w.data(), b.data(), y.data()); }); });
    }
#ifdef CRFSEG_HAVE_DNNL
    DnnlConv dnnl_conv(g, dnnl::algorithm::convolution_direct);
    add("oneDNN", "forward", true, [&] { dnnl_conv.run(dnnl_conv.fwd, dnnl_conv.fwd_args); });
    std::unique_ptr<DnnlConv> dnnl_wino;
    if (g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1) {
      try {
        dnnl_wino = std::make_unique<DnnlConv>(g, dnnl::algorithm::convolution_winograd);
      } catch (const dnnl::error&) {
        // no Winograd implementation in this oneDNN for g on this CPU: no rows
      }
    }
    if (dnnl_wino) add("oneDNN-winograd", "forward", true, [&] { dnnl_wino->run(dnnl_wino->fwd, dnnl_wino->fwd_args); });
    dnnl_auto[l.name] = DnnlConv(g, dnnl::algorithm::convolution_auto).impl;
#endif
    add("crfseg", "backward-input", ok,
        [&] { kernels::cpu::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data()); });
    if (gemm_bwd_in) {
      add("crfseg-gemm", "backward-input", gemm_ok,
          [&] { kc::conv2d_backward_input_gemm(g, dy.data(), w.data(), dx.data()); });
    }
    if (wino_bwd_in) {
      add("crfseg-winograd", "backward-input", wino_ok,
          [&] { kc::conv2d_winograd_backward_input(g, dy.data(), w.data(), dx.data()); });
    }
    if (g.is_pointwise()) {
      add("crfseg-packed-b", "backward-input", packed_ok,
          [&] { packed_b([&] { kc::conv2d_backward_input<float>(g, dy.data(), w.data(), dx.data()); }); });
    }
#ifdef CRFSEG_HAVE_DNNL
    add("oneDNN", "backward-input", true, [&] { dnnl_conv.run(dnnl_conv.bwd_data, dnnl_conv.bwd_data_args); });
    if (dnnl_wino) {
      add("oneDNN-winograd", "backward-input", true,
          [&] { dnnl_wino->run(dnnl_wino->bwd_data, dnnl_wino->bwd_data_args); });
    }
#endif
    add("crfseg", "backward-weight+bias", ok,
        [&] { kernels::cpu::conv2d_backward_weight<float>(g, dy.data(), x.data(), dw.data(), db.data()); });
    if (gemm_bwd_w) {
      add("crfseg-gemm", "backward-weight+bias", gemm_ok, [&] {
        kernels::cpu::conv2d_backward_weight_gemm(g, dy.data(), x.data(), dw.data());
        kernels::cpu::conv2d_backward_bias<float>(g, dy.data(), db.data());
      });
    }
    if (wino_bwd_w) {
      add("crfseg-winograd", "backward-weight+bias", wino_ok, [&] {
        kc::conv2d_winograd_backward_weight(g, dy.data(), x.data(), dw.data());
        kc::conv2d_backward_bias<float>(g, dy.data(), db.data());
      });
    }
#ifdef CRFSEG_HAVE_DNNL
    add("oneDNN", "backward-weight+bias", true,
        [&] { dnnl_conv.run(dnnl_conv.bwd_weights, dnnl_conv.bwd_weights_args); });
    if (dnnl_wino) {
      add("oneDNN-winograd", "backward-weight+bias", true,
          [&] { dnnl_wino->run(dnnl_wino->bwd_weights, dnnl_wino->bwd_weights_args); });
    }
#endif
    // One call at a time, each after a warm-up call of its own, in rounds
    // that alternate direction: a slow phase of the VM then falls on every
    // contender alike (timed one after another, the same build's layer
    // moved by up to 30% between runs, and so did its ratios to oneDNN).
    // No pause: crfseg and oneDNN share libgomp's thread pool.
    bench::time_alternated(contenders, repeats, 1, std::chrono::milliseconds(0));
    for (size_t i = 0; i < contenders.size(); ++i) {
      if (!contenders[i].verified) continue;
      const bench::Timing t = bench::summarize(contenders[i].ms);
      Row& r = rows[contender_row[i]];
      r.median_ms = t.median_ms;
      r.min_ms = t.min_ms;
      r.gflops = flops / (t.median_ms * 1e6);
    }
  }

  if (json) {
    std::printf("{\"machine\": \"%s\", \"peak_gflops\": %.1f, \"batch\": %lld, \"repeats\": %d, \"results\": [\n",
                bench::machine_info().c_str(), peak, (long long)batch, repeats);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("  {\"layer\": \"%s\", \"impl\": \"%s\", \"pass\": \"%s\", \"verified\": %s, \"median_ms\": %.4f, "
                  "\"min_ms\": %.4f, \"gflops\": %.2f}%s\n",
                  r.layer.c_str(), r.impl.c_str(), r.pass.c_str(), r.verified ? "true" : "false", r.median_ms,
                  r.min_ms, r.gflops, i + 1 < rows.size() ? "," : "");
    }
    std::printf("]}\n");
  } else {
    std::printf("# conv2d f32, batch %lld, %s, %d repeats, measured peak %.0f GFLOP/s\n", (long long)batch,
                bench::machine_info().c_str(), repeats, peak);
    std::printf("| layer | pass | impl | median ms | min ms | GFLOP/s | %% peak |\n|---|---|---|---|---|---|---|\n");
    for (const Row& r : rows) {
      if (!r.verified) {
        std::printf("| %s | %s | %s | WRONG RESULT, not timed | | | |\n", r.layer.c_str(), r.pass.c_str(),
                    r.impl.c_str());
        continue;
      }
      std::printf("| %s | %s | %s | %.3f | %.3f | %.1f | %.0f%% |\n", r.layer.c_str(), r.pass.c_str(), r.impl.c_str(),
                  r.median_ms, r.min_ms, r.gflops, 100.0 * r.gflops / peak);
    }
    print_pass_sums(rows, dnnl_auto);
  }
  for (const Row& r : rows) {
    if (!r.verified) return 1;
  }
  return 0;
}
