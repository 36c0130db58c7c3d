// Builders for on-disk test data: tiny Oxford-IIIT Pet and micro-CT folders,
// JPEGs (written with stb_image_write in fixtures.cpp) and hand-made images.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "datasets/image_io.h"

namespace crfseg::test {

// An image whose pixel (y, x, c) is fn(y, x, c).
data::Image make_image(int64_t h, int64_t w, int64_t c, int bit_depth,
                       const std::function<int(int64_t, int64_t, int64_t)>& fn);

// Writes an 8-bit JPEG (quality 95) of 1 or 3 channels.
void write_jpeg(const std::string& path, const data::Image& image);

// Writes an 8x8 single-component (truly grayscale) baseline JPEG, built by
// hand because stb_image_write always writes three components. Every pixel
// decodes to 131: one block whose only coefficient is DC = 3 (x quantiser 8).
void write_gray_jpeg_8x8(const std::string& path);

// Writes text to a file (creating folders).
void write_text(const std::string& path, const std::string& text);

// The trimap used for pet sample k of size h x w: value 1 inside a centred
// box, 3 on its one-pixel rim, 2 elsewhere.
data::Image pet_trimap(int64_t h, int64_t w);

// A tiny Oxford-IIIT Pet folder under root:
//   trainval: pet_a (RGB JPEG 12x16), pet_b (grayscale JPEG 8x8), pet_c (RGBA PNG named .jpg)
//   test:     pet_d (RGB JPEG 10x10)
// with matching trimaps (pet_trimap). Returns nothing; tests break it on purpose.
void make_pets_folder(const std::string& root);

}  // namespace crfseg::test
