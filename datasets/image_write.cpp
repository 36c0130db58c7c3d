// PNG writing. 8-bit images go through stb_image_write (which picks a row
// filter per line and compresses well). stb cannot write 16-bit PNG, so for
// those we assemble the file ourselves around stb's deflate:
//
//   signature | IHDR | IDAT (zlib of the filtered rows) | IEND
//
// Each chunk is length (u32 BE), type (4 bytes), data, CRC-32 of type + data.
// Rows are stored with filter byte 0 (None) and samples big-endian, as the
// PNG spec requires for 16-bit data.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "datasets/image_io.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

namespace crfseg::data {

namespace {

// CRC-32 (ISO 3309, reflected polynomial 0xEDB88320), as PNG chunks use.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

void put_u32_be(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const uint8_t* data, size_t n) {
  put_u32_be(out, static_cast<uint32_t>(n));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data, data + n);
  put_u32_be(out, crc32(out.data() + start, n + 4));
}

std::vector<uint8_t> encode_png16(const Image& image) {
  const size_t row_bytes = static_cast<size_t>(image.width * image.channels) * 2;
  std::vector<uint8_t> raw;
  raw.reserve((row_bytes + 1) * static_cast<size_t>(image.height));
  for (int64_t y = 0; y < image.height; ++y) {
    raw.push_back(0);  // filter: None
    for (int64_t i = 0; i < image.width * image.channels; ++i) {
      const uint16_t v = image.pixels[y * image.width * image.channels + i];
      raw.push_back(static_cast<uint8_t>(v >> 8));
      raw.push_back(static_cast<uint8_t>(v & 0xFF));
    }
  }
  int zlen = 0;
  std::unique_ptr<unsigned char, decltype(&std::free)> z(
      stbi_zlib_compress(raw.data(), static_cast<int>(raw.size()), &zlen, 8), &std::free);
  CRFSEG_CHECK(z != nullptr, IOError, "save_png: deflate failed");

  static constexpr uint8_t colour_type[5] = {0, 0, 4, 2, 6};  // by channel count: gray, gray+alpha, RGB, RGBA
  std::vector<uint8_t> ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(image.width));
  put_u32_be(ihdr, static_cast<uint32_t>(image.height));
  ihdr.insert(ihdr.end(), {16, colour_type[image.channels], 0, 0, 0});  // depth, colour, deflate, filter 0, no interlace

  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  put_chunk(out, "IHDR", ihdr.data(), ihdr.size());
  put_chunk(out, "IDAT", z.get(), static_cast<size_t>(zlen));
  put_chunk(out, "IEND", nullptr, 0);
  return out;
}

std::vector<uint8_t> encode_png8(const Image& image) {
  std::vector<uint8_t> pixels(image.pixels.size());
  std::transform(image.pixels.begin(), image.pixels.end(), pixels.begin(),
                 [](uint16_t v) { return static_cast<uint8_t>(std::min<uint16_t>(v, 255)); });
  std::vector<uint8_t> out;
  auto append = [](void* context, void* data, int size) {
    auto* bytes = static_cast<uint8_t*>(data);
    static_cast<std::vector<uint8_t>*>(context)->insert(static_cast<std::vector<uint8_t>*>(context)->end(), bytes,
                                                         bytes + size);
  };
  const int ok = stbi_write_png_to_func(append, &out, static_cast<int>(image.width), static_cast<int>(image.height),
                                        static_cast<int>(image.channels), pixels.data(),
                                        static_cast<int>(image.width * image.channels));
  CRFSEG_CHECK(ok != 0, IOError, "save_png: stb_image_write failed to encode a ", image.width, "x", image.height,
               " image");
  return out;
}

}  // namespace

void save_png(const std::string& path, const Image& image) {
  CRFSEG_CHECK(image.channels >= 1 && image.channels <= 4, ValueError, "save_png: expected 1-4 channels, got ",
               image.channels, " (for '", path, "')");
  CRFSEG_CHECK(image.bit_depth == 8 || image.bit_depth == 16, ValueError, "save_png: expected bit depth 8 or 16, got ",
               image.bit_depth, " (for '", path, "')");
  CRFSEG_CHECK(image.height > 0 && image.width > 0 && image.width * image.height < (int64_t{1} << 30), ValueError,
               "save_png: expected a non-empty image below 2^30 pixels, got ", image.height, "x", image.width);
  CRFSEG_CHECK(static_cast<int64_t>(image.pixels.size()) == image.height * image.width * image.channels, ValueError,
               "save_png: pixel buffer holds ", image.pixels.size(), " values, expected ",
               image.height * image.width * image.channels);
  write_file_bytes(path, image.bit_depth == 16 ? encode_png16(image) : encode_png8(image), "save_png");
}

}  // namespace crfseg::data
