// Test data builders (see fixtures.h).
#include "fixtures.h"

#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

namespace crfseg::test {

namespace fs = std::filesystem;

data::Image make_image(int64_t h, int64_t w, int64_t c, int bit_depth,
                       const std::function<int(int64_t, int64_t, int64_t)>& fn) {
  data::Image image = data::Image::zeros(h, w, c, bit_depth);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t k = 0; k < c; ++k) image.at(y, x, k) = static_cast<uint16_t>(fn(y, x, k));
    }
  }
  return image;
}

void write_jpeg(const std::string& path, const data::Image& image) {
  fs::create_directories(fs::path(path).parent_path());
  std::vector<uint8_t> bytes(image.pixels.begin(), image.pixels.end());
  REQUIRE(stbi_write_jpg(path.c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                         static_cast<int>(image.channels), bytes.data(), 95) != 0);
}

void write_gray_jpeg_8x8(const std::string& path) {
  std::vector<uint8_t> j = {0xFF, 0xD8};                // SOI
  j.insert(j.end(), {0xFF, 0xDB, 0x00, 0x43, 0x00, 8});  // DQT: table 0, DC quantiser 8 ...
  j.insert(j.end(), 63, 1);                             // ... AC quantisers 1
  j.insert(j.end(), {0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0});  // SOF0: 8-bit, 8x8, 1 component
  // DHT: DC table 0 and AC table 0, each a single 1-bit code "0" for
  // symbol 2 (DC difference of 2 bits) and symbol 0x00 (end of block).
  for (uint8_t table_and_symbol : {uint8_t(0x00), uint8_t(0x10)}) {
    j.insert(j.end(), {0xFF, 0xC4, 0x00, 0x14, table_and_symbol, 1});
    j.insert(j.end(), 15, 0);
    j.push_back(table_and_symbol == 0x00 ? 2 : 0x00);
  }
  j.insert(j.end(), {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0});  // SOS
  j.push_back(0x6F);  // bits 0 (DC code) 11 (diff +3) 0 (EOB), padded with 1s
  j.insert(j.end(), {0xFF, 0xD9});  // EOI
  fs::create_directories(fs::path(path).parent_path());
  data::write_file_bytes(path, j, "write_gray_jpeg_8x8");
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

data::Image pet_trimap(int64_t h, int64_t w) {
  return make_image(h, w, 1, 8, [&](int64_t y, int64_t x, int64_t) {
    const int64_t y0 = h / 4, y1 = h - 1 - h / 4, x0 = w / 4, x1 = w - 1 - w / 4;
    if (y < y0 || y > y1 || x < x0 || x > x1) return 2;
    if (y == y0 || y == y1 || x == x0 || x == x1) return 3;
    return 1;
  });
}

void make_pets_folder(const std::string& root) {
  const fs::path r(root);
  fs::create_directories(r / "images");
  fs::create_directories(r / "annotations" / "trimaps");
  // Smooth content so JPEG artefacts stay small: a gradient per channel.
  auto rgb = [](int64_t y, int64_t x, int64_t c) { return static_cast<int>(40 + 10 * y + 5 * x + 30 * c); };
  write_jpeg((r / "images" / "pet_a.jpg").string(), make_image(12, 16, 3, 8, rgb));
  write_gray_jpeg_8x8((r / "images" / "pet_b.jpg").string());
  data::save_png((r / "images" / "pet_c.jpg").string(), make_image(6, 6, 4, 8, [](int64_t, int64_t, int64_t c) {
                   return c == 3 ? 128 : 50 * (static_cast<int>(c) + 1);
                 }));
  write_jpeg((r / "images" / "pet_d.jpg").string(), make_image(10, 10, 3, 8, rgb));
  const std::pair<const char*, int64_t> sizes[] = {{"pet_a", 12}, {"pet_b", 8}, {"pet_c", 6}, {"pet_d", 10}};
  for (const auto& [stem, h] : sizes) {
    const int64_t w = std::string(stem) == "pet_a" ? 16 : h;
    data::save_png((r / "annotations" / "trimaps" / (std::string(stem) + ".png")).string(), pet_trimap(h, w));
  }
  write_text((r / "annotations" / "trainval.txt").string(), "pet_a 1 1 1\npet_b 2 2 1\n\npet_c 3 1 2\n");
  write_text((r / "annotations" / "test.txt").string(), "pet_d 1 1 1\n");
}

}  // namespace crfseg::test
