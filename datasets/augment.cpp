// Geometric augmentation (see augment.h). Plain loops, no OpenMP: these run
// inside DataLoader worker threads, one sample each, and nested thread teams
// would only oversubscribe the cores.
#include "datasets/augment.h"

#include <algorithm>
#include <cmath>

#include "datasets/seeding.h"

namespace crfseg::data {

namespace {

void check_sample(const Sample& s, const char* op) {
  CRFSEG_CHECK(s.image.defined() && s.mask.defined() && s.image.dim() == 3 && s.mask.dim() == 2, ShapeError, op,
               ": expected an image [C, H, W] and a mask [H, W], got ",
               s.image.defined() ? shape_str(s.image.shape()) : "undefined", " and ",
               s.mask.defined() ? shape_str(s.mask.shape()) : "undefined");
  CRFSEG_CHECK(s.image.size(1) == s.mask.size(0) && s.image.size(2) == s.mask.size(1), ShapeError, op,
               ": image ", shape_str(s.image.shape()), " and mask ", shape_str(s.mask.shape()), " differ in size");
  check_dtype(op, s.image, DType::f32);
  check_dtype(op, s.mask, DType::i64);
  CRFSEG_CHECK(s.image.is_contiguous() && s.mask.is_contiguous(), ValueError, op, ": expected contiguous tensors");
}

// Builds a new sample of size out_h x out_w whose pixel (y, x) is read from
// the source pixel src(y, x) (or is padding when src returns false). Used by
// crop, flips and rotations, so image and mask always move together.
template <typename Map>
Sample remap(const Sample& s, int64_t out_h, int64_t out_w, Map src) {
  const int64_t C = s.image.size(0), W = s.image.size(2), H = s.image.size(1);
  Sample out{Tensor::empty({C, out_h, out_w}), Tensor::empty({out_h, out_w}, {DType::i64}), s.name};
  const float* img = s.image.data<float>();
  const int64_t* lab = s.mask.data<int64_t>();
  float* oimg = out.image.data<float>();
  int64_t* olab = out.mask.data<int64_t>();
  for (int64_t y = 0; y < out_h; ++y) {
    for (int64_t x = 0; x < out_w; ++x) {
      int64_t sy = 0, sx = 0;
      const bool inside = src(y, x, sy, sx) && sy >= 0 && sy < H && sx >= 0 && sx < W;
      olab[y * out_w + x] = inside ? lab[sy * W + sx] : kIgnoreIndex;
      for (int64_t c = 0; c < C; ++c) {
        oimg[(c * out_h + y) * out_w + x] = inside ? img[(c * H + sy) * W + sx] : 0.0f;
      }
    }
  }
  return out;
}

}  // namespace

Sample resize(const Sample& s, int64_t out_h, int64_t out_w) {
  check_sample(s, "resize");
  CRFSEG_CHECK(out_h > 0 && out_w > 0, ValueError, "resize: expected a positive size, got ", out_h, "x", out_w);
  const int64_t C = s.image.size(0), H = s.image.size(1), W = s.image.size(2);
  if (H == out_h && W == out_w) return s;
  Sample out{Tensor::empty({C, out_h, out_w}), Tensor::empty({out_h, out_w}, {DType::i64}), s.name};
  const float* img = s.image.data<float>();
  const int64_t* lab = s.mask.data<int64_t>();
  float* oimg = out.image.data<float>();
  int64_t* olab = out.mask.data<int64_t>();
  const double sh = static_cast<double>(H) / out_h, sw = static_cast<double>(W) / out_w;
  for (int64_t y = 0; y < out_h; ++y) {
    // Bilinear source row pair and weight (half-pixel centres, clamped at 0).
    const double fy = std::max((y + 0.5) * sh - 0.5, 0.0);
    const int64_t y0 = std::min(static_cast<int64_t>(fy), H - 1), y1 = std::min(y0 + 1, H - 1);
    const double wy = fy - y0;
    const int64_t ny = std::min(static_cast<int64_t>((y + 0.5) * sh), H - 1);  // nearest for the mask
    for (int64_t x = 0; x < out_w; ++x) {
      const double fx = std::max((x + 0.5) * sw - 0.5, 0.0);
      const int64_t x0 = std::min(static_cast<int64_t>(fx), W - 1), x1 = std::min(x0 + 1, W - 1);
      const double wx = fx - x0;
      for (int64_t c = 0; c < C; ++c) {
        const float* p = img + c * H * W;
        const double top = p[y0 * W + x0] * (1 - wx) + p[y0 * W + x1] * wx;
        const double bottom = p[y1 * W + x0] * (1 - wx) + p[y1 * W + x1] * wx;
        oimg[(c * out_h + y) * out_w + x] = static_cast<float>(top * (1 - wy) + bottom * wy);
      }
      const int64_t nx = std::min(static_cast<int64_t>((x + 0.5) * sw), W - 1);
      olab[y * out_w + x] = lab[ny * W + nx];
    }
  }
  return out;
}

Sample crop(const Sample& s, int64_t top, int64_t left, int64_t h, int64_t w) {
  check_sample(s, "crop");
  CRFSEG_CHECK(h > 0 && w > 0, ValueError, "crop: expected a positive size, got ", h, "x", w);
  return remap(s, h, w, [&](int64_t y, int64_t x, int64_t& sy, int64_t& sx) {
    sy = top + y;
    sx = left + x;
    return true;
  });
}

Sample hflip(const Sample& s) {
  check_sample(s, "hflip");
  const int64_t W = s.image.size(2);
  return remap(s, s.image.size(1), W, [&](int64_t y, int64_t x, int64_t& sy, int64_t& sx) {
    sy = y;
    sx = W - 1 - x;
    return true;
  });
}

Sample vflip(const Sample& s) {
  check_sample(s, "vflip");
  const int64_t H = s.image.size(1);
  return remap(s, H, s.image.size(2), [&](int64_t y, int64_t x, int64_t& sy, int64_t& sx) {
    sy = H - 1 - y;
    sx = x;
    return true;
  });
}

Sample rot90(const Sample& s, int64_t k) {
  check_sample(s, "rot90");
  const int64_t H = s.image.size(1), W = s.image.size(2);
  k = ((k % 4) + 4) % 4;
  if (k == 0) return s;
  // numpy.rot90 (counter-clockwise): out[y][x] = in[x][W-1-y] for one turn,
  // in[H-1-y][W-1-x] for two, in[H-1-x][y] for three.
  const int64_t out_h = k == 2 ? H : W, out_w = k == 2 ? W : H;
  return remap(s, out_h, out_w, [&](int64_t y, int64_t x, int64_t& sy, int64_t& sx) {
    if (k == 1) {
      sy = x;
      sx = W - 1 - y;
    } else if (k == 2) {
      sy = H - 1 - y;
      sx = W - 1 - x;
    } else {
      sy = H - 1 - x;
      sx = y;
    }
    return true;
  });
}

Sample augment(const Sample& s, const AugmentOptions& o, Generator& gen) {
  check_sample(s, "augment");
  CRFSEG_CHECK(o.crop_height >= 0 && o.crop_width >= 0 && (o.crop_height > 0) == (o.crop_width > 0), ValueError,
               "augment: crop size must be both positive or both 0, got ", o.crop_height, "x", o.crop_width);
  CRFSEG_CHECK(0 < o.scale_min && o.scale_min <= o.scale_max, ValueError,
               "augment: expected 0 < scale_min <= scale_max, got ", o.scale_min, " and ", o.scale_max);
  Sample out = s;
  if (o.scale_min != 1.0 || o.scale_max != 1.0) {
    const double scale = o.scale_min + (o.scale_max - o.scale_min) * gen.uniform_f64();
    const int64_t h = std::max<int64_t>(1, std::llround(out.image.size(1) * scale));
    const int64_t w = std::max<int64_t>(1, std::llround(out.image.size(2) * scale));
    out = resize(out, h, w);
  }
  if (o.crop_height > 0) {
    // Offsets range over [min(0, H - h), max(0, H - h)]: windows inside a
    // large sample, or placements of a small sample inside the window.
    auto offset = [&](int64_t size, int64_t window) {
      const int64_t lo = std::min<int64_t>(0, size - window), hi = std::max<int64_t>(0, size - window);
      return lo + uniform_index(gen, hi - lo + 1);
    };
    const int64_t top = offset(out.image.size(1), o.crop_height);
    const int64_t left = offset(out.image.size(2), o.crop_width);
    out = crop(out, top, left, o.crop_height, o.crop_width);
  }
  if (o.hflip && (gen.next_u32() & 1)) out = hflip(out);
  if (o.vflip && (gen.next_u32() & 1)) out = vflip(out);
  if (o.rotate90) {
    const bool square = out.image.size(1) == out.image.size(2);
    const int64_t k = square ? uniform_index(gen, 4) : 2 * uniform_index(gen, 2);
    out = rot90(out, k);
  }
  return out;
}

}  // namespace crfseg::data
