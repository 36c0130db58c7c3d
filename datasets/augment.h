// Geometric augmentation of a sample, applied identically to image and mask.
//
// Images are [C, H, W] f32, masks [H, W] i64 (datasets/dataset.h). Every
// transform moves image pixels and mask pixels through the same coordinate
// map: flips and 90-degree rotations are exact permutations; resize samples
// the image bilinearly and the mask by nearest neighbour (a mask is labels,
// not intensities: interpolating class 0 and 2 must not invent class 1).
// Randomness comes only from the Generator passed in, so a sample's
// augmentation is reproducible (the DataLoader seeds one per sample from
// (seed, epoch, index)).
#pragma once

#include <cstdint>

#include "datasets/dataset.h"
#include "tensor/random.h"

namespace crfseg::data {

// Resize to out_h x out_w. Image: bilinear with half-pixel centres
// (src = (dst + 0.5) * in / out - 0.5, clamped), torch's
// interpolate(mode='bilinear', align_corners=False) without antialiasing.
// Mask: nearest with src = floor((dst + 0.5) * in / out) (the pixel whose
// area holds the output centre, torch's 'nearest-exact'), so a mask resized
// with its image stays centred on it.
Sample resize(const Sample& s, int64_t out_h, int64_t out_w);

// The window [top, top + h) x [left, left + w); parts outside the sample are
// padded with 0 in the image and kIgnoreIndex in the mask.
Sample crop(const Sample& s, int64_t top, int64_t left, int64_t h, int64_t w);

Sample hflip(const Sample& s);              // mirror left-right
Sample vflip(const Sample& s);              // mirror top-bottom
Sample rot90(const Sample& s, int64_t k);   // k quarter turns counter-clockwise (as numpy.rot90)

struct AugmentOptions {
  int64_t crop_height = 0, crop_width = 0;  // random crop (0: none); smaller samples are padded
  double scale_min = 1.0, scale_max = 1.0;  // random rescale before the crop (1, 1: none)
  bool hflip = true, vflip = false;         // each with probability 1/2
  bool rotate90 = false;                    // k in {0,1,2,3}; {0,2} for non-square samples, keeping H x W
};

// Applies, in this order and drawing from `gen` only for enabled steps:
// rescale by s ~ U[scale_min, scale_max] (both sides, rounded), random crop
// (a uniform top-left corner over the windows inside the sample, or, along a
// side shorter than the crop, over the placements that contain it), hflip,
// vflip, rot90.
// Throws ValueError for negative sizes or a bad scale range.
Sample augment(const Sample& s, const AugmentOptions& options, Generator& gen);

}  // namespace crfseg::data
