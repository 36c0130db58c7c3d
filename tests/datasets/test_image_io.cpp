// Image I/O: PNG round trips at 8 and 16 bits, JPEG decoding, channel
// conversion, format sniffing, tensor conversion and the errors.
#include <doctest/doctest.h>

#include "datasets/image_io.h"
#include "fixtures.h"
#include "support/helpers.h"
#include "support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::data;
using crfseg::test::TempDir;

TEST_CASE("save_png / load_image round-trip 8-bit gray, RGB, RGBA and 16-bit gray, RGB exactly") {
  TempDir dir;
  for (int depth : {8, 16}) {
    for (int64_t c : {1, 2, 3, 4}) {
      CAPTURE(depth);
      CAPTURE(c);
      const int maxv = depth == 16 ? 65535 : 255;
      // Values spread over the full range (both bytes matter at 16 bits).
      const Image in = test::make_image(5, 7, c, depth, [&](int64_t y, int64_t x, int64_t k) {
        return static_cast<int>((y * 7 + x) * 1031 * (k + 1) % (maxv + 1));
      });
      const std::string path = dir.file("img.png");
      save_png(path, in);
      const Image out = load_image(path);
      CHECK(out.format == ImageFormat::png);
      CHECK(out.bit_depth == depth);
      CHECK(out.channels == c);
      CHECK(out.height == 5);
      CHECK(out.width == 7);
      CHECK(out.pixels == in.pixels);
    }
  }
}

TEST_CASE("load_image decodes a JPEG close to what was written, gray and RGB") {
  TempDir dir;
  const Image rgb = test::make_image(16, 16, 3, 8, [](int64_t y, int64_t x, int64_t c) {
    return static_cast<int>(60 + 4 * y + 3 * x + 20 * c);
  });
  test::write_jpeg(dir.file("a.jpg"), rgb);
  const Image out = load_image(dir.file("a.jpg"));
  CHECK(out.format == ImageFormat::jpeg);
  REQUIRE(out.channels == 3);
  int max_err = 0;
  for (size_t i = 0; i < out.pixels.size(); ++i) max_err = std::max(max_err, std::abs(out.pixels[i] - rgb.pixels[i]));
  CHECK(max_err <= 8);  // quality 95 on a smooth gradient

  test::write_gray_jpeg_8x8(dir.file("g.jpg"));
  const Image g = load_image(dir.file("g.jpg"));
  CHECK(g.format == ImageFormat::jpeg);
  CHECK(g.channels == 1);
  CHECK(std::abs(g.at(3, 3) - 131) <= 1);
  const Image g3 = load_image(dir.file("g.jpg"), 3);  // gray replicated
  CHECK(g3.channels == 3);
  CHECK(g3.file_channels == 1);
  CHECK(g3.at(3, 3, 0) == g3.at(3, 3, 2));
  CHECK(g3.at(3, 3, 1) == g.at(3, 3));
}

TEST_CASE("convert_channels: RGBA drops alpha, gray replicates, RGB becomes BT.601 luma") {
  const Image rgba = test::make_image(1, 2, 4, 8, [](int64_t, int64_t x, int64_t c) {
    static const int px[2][4] = {{200, 100, 50, 7}, {0, 255, 0, 255}};
    return px[x][c];
  });
  const Image rgb = convert_channels(rgba, 3);
  CHECK(rgb.pixels == std::vector<uint16_t>{200, 100, 50, 0, 255, 0});
  const Image gray = convert_channels(rgba, 1);
  // 0.299*200 + 0.587*100 + 0.114*50 = 124.2 ; 0.587*255 = 149.685
  CHECK(gray.pixels == std::vector<uint16_t>{124, 150});
  const Image ga = test::make_image(1, 1, 2, 16, [](int64_t, int64_t, int64_t c) { return c ? 9 : 40000; });
  CHECK(convert_channels(ga, 3).pixels == std::vector<uint16_t>{40000, 40000, 40000});
  CHECK(convert_channels(ga, 1).pixels == std::vector<uint16_t>{40000});
  test::check_throws_with<ValueError>([&] { convert_channels(rgb, 2); }, "convert_channels: expected a target of 1 or 3");
}

TEST_CASE("formats are recognised by content; a PNG named .jpg is a mislabelled PNG") {
  TempDir dir;
  save_png(dir.file("x.jpg"), Image::zeros(3, 3, 1));
  const Image im = load_image(dir.file("x.jpg"));
  CHECK(im.format == ImageFormat::png);
  CHECK(format_from_extension(dir.file("x.jpg")) == ImageFormat::jpeg);
  CHECK(extension_mismatch(dir.file("x.jpg"), im));
  CHECK_FALSE(extension_mismatch(dir.file("x.png"), im));
  CHECK(format_from_extension("a/B.TIFF") == ImageFormat::tiff);
  const uint8_t bmp[] = {'B', 'M', 0, 0}, pgm[] = {'P', '5', '\n'}, junk[] = {1, 2, 3};
  CHECK(detect_format(bmp, 4) == ImageFormat::bmp);
  CHECK(detect_format(pgm, 3) == ImageFormat::pnm);
  CHECK(detect_format(junk, 3) == ImageFormat::unknown);
}

TEST_CASE("load_image reads 8- and 16-bit PGM and a BMP written by hand") {
  TempDir dir;
  std::string pgm16 = "P5\n2 1\n65535\n";
  pgm16 += std::string("\x12\x34\xAB\xCD", 4);  // big-endian samples 0x1234, 0xABCD
  test::write_text(dir.file("a.pgm"), pgm16);
  const Image a = load_image(dir.file("a.pgm"));
  CHECK(a.bit_depth == 16);
  CHECK(a.pixels == std::vector<uint16_t>{0x1234, 0xABCD});
  test::write_text(dir.file("b.pgm"), std::string("P5\n3 1\n255\n\x01\x80\xff", 14));
  const Image b = load_image(dir.file("b.pgm"));
  CHECK(b.bit_depth == 8);
  CHECK(b.pixels == std::vector<uint16_t>{1, 128, 255});

  // A 2x1 24-bit BMP: 14-byte file header, 40-byte info header, one row of
  // 2 BGR pixels padded to 8 bytes.
  std::vector<uint8_t> bmp = {'B', 'M', 62, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0,
                              1, 0, 24, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              30, 20, 10, 60, 50, 40, 0, 0};
  write_file_bytes(dir.file("c.bmp"), bmp, "test");
  const Image c = load_image(dir.file("c.bmp"));
  CHECK(c.format == ImageFormat::bmp);
  CHECK(c.pixels == std::vector<uint16_t>{10, 20, 30, 40, 50, 60});
}

TEST_CASE("image_to_tensor scales by the bit depth; tensor_to_image inverts it") {
  const Image im8 = test::make_image(2, 3, 2, 8, [](int64_t y, int64_t x, int64_t c) { return int(y * 100 + x * 10 + c); });
  const Tensor t = image_to_tensor(im8);
  CHECK(t.shape() == Shape{2, 2, 3});
  CHECK(t.at({1, 1, 2}) == doctest::Approx(121.0 / 255.0));
  CHECK(image_to_tensor(im8, false).at({0, 1, 0}) == 100.0);
  const Image im16 = test::make_image(1, 1, 1, 16, [](int64_t, int64_t, int64_t) { return 65535; });
  CHECK(image_to_tensor(im16).item() == 1.0);
  CHECK(tensor_to_image(t).pixels == im8.pixels);
  const Image m = tensor_to_image(from_vector<int64_t>({0, 1, 2, 300}, {2, 2}), 8, false);
  CHECK(m.pixels == std::vector<uint16_t>{0, 1, 2, 255});  // clamped
}

TEST_CASE("image errors name the function, the path and the reason") {
  TempDir dir;
  test::check_throws_with<IOError>([&] { load_image(dir.file("missing.png")); }, "missing.png' does not exist");
  // A JPEG cut after its header: stb's reason is part of the message.
  test::write_jpeg(dir.file("ok.jpg"), Image::zeros(16, 16, 3));
  std::vector<uint8_t> bytes = read_file_bytes(dir.file("ok.jpg"), "test");
  bytes.resize(bytes.size() / 3);
  write_file_bytes(dir.file("cut.jpg"), bytes, "test");
  test::check_throws_with<IOError>([&] { load_image(dir.file("cut.jpg")); }, "cannot decode '" + dir.file("cut.jpg") + "' (jpeg): ");
  // Garbage with a JPEG magic number.
  write_file_bytes(dir.file("bad.jpg"), {0xFF, 0xD8, 0xFF, 0x00, 0x01, 0x02}, "test");
  test::check_throws_with<IOError>([&] { load_image(dir.file("bad.jpg")); }, "bad.jpg' (jpeg)");
  write_file_bytes(dir.file("text.png"), {'h', 'e', 'l', 'l', 'o'}, "test");
  test::check_throws_with<IOError>([&] { load_image(dir.file("text.png")); }, "is not a supported image");
  write_file_bytes(dir.file("empty.png"), {}, "test");
  test::check_throws_with<IOError>([&] { load_image(dir.file("empty.png")); }, "empty file");
  test::check_throws_with<IOError>([&] { save_png(dir.file("no/such/dir/x.png"), Image::zeros(2, 2, 1)); },
                                   "save_png: cannot open");
  test::check_throws_with<ValueError>([&] { save_png(dir.file("x.png"), Image::zeros(2, 2, 5)); }, "1-4 channels");
}

TEST_CASE("decode_image decodes bytes in memory like load_image, naming the source in errors") {
  TempDir dir;
  const Image in = test::make_image(3, 4, 3, 8, [](int64_t y, int64_t x, int64_t k) { return int(y * 40 + x * 9 + k); });
  const std::string path = dir.file("img.png");
  save_png(path, in);
  const std::vector<uint8_t> bytes = read_file_bytes(path, "test");
  const Image a = load_image(path, 1), b = decode_image(bytes.data(), bytes.size(), "memory.png", 1);
  CHECK(a.pixels == b.pixels);
  CHECK(b.format == ImageFormat::png);
  CHECK(b.file_channels == 3);
  const ImageInfo info = probe_image(bytes.data(), bytes.size(), "memory.png");
  CHECK(info.format == ImageFormat::png);
  CHECK(info.height == 3);
  CHECK(info.width == 4);
  CHECK(info.channels == 3);
  const uint8_t junk[] = {1, 2, 3};
  test::check_throws_with<IOError>([&] { decode_image(junk, sizeof junk, "memory.bin"); },
                                   "'memory.bin' is not a supported image");
}

// stb allocates the whole output from the header's width and height; a few
// corrupt header bytes must not become a multi-gigabyte allocation.
TEST_CASE("decode_image refuses headers claiming more than kMaxImagePixels before allocating") {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {20000u, 20000u}) {
    for (int i = 3; i >= 0; --i) png.push_back(uint8_t(v >> 8 * i));
  }
  for (uint8_t v : {8, 0, 0, 0, 0, 0, 0, 0, 0}) png.push_back(v);  // 8-bit gray, CRC (stb does not check it)
  test::check_throws_with<IOError>([&] { decode_image(png.data(), png.size(), "big.png"); },
                                   "claims 20000x20000 pixels");
}

// Found by fuzz/fuzz_image: stb_image 2.27 builds a JPEG Huffman table from
// 16 code counts without checking that they add up to at most 256, writing
// past its arrays (UBSan: index 257 out of bounds for 'stbi_uc[257]').
TEST_CASE("decode_image rejects a JPEG Huffman table with more than 256 codes before stb reads it") {
  TempDir dir;
  const std::string path = dir.file("ok.jpg");
  test::write_jpeg(path, test::make_image(8, 8, 1, 8, [](int64_t y, int64_t x, int64_t) { return int(y * 30 + x); }));
  std::vector<uint8_t> bytes = read_file_bytes(path, "test");
  CHECK(decode_image(bytes.data(), bytes.size(), "ok.jpg").width == 8);
  size_t dht = 0;
  for (size_t i = 2; i + 1 < bytes.size() && dht == 0; ++i) {
    if (bytes[i] == 0xFF && bytes[i + 1] == 0xC4) dht = i;
  }
  REQUIRE(dht > 0);
  // Marker (2 bytes), length (2), class/id (1), then the 16 counts.
  bytes[dht + 5 + 14] = 200;
  bytes[dht + 5 + 15] = 200;
  test::check_throws_with<IOError>([&] { decode_image(bytes.data(), bytes.size(), "bad.jpg"); },
                                   "codes, at most 256 are possible (corrupt JPEG)");
  test::check_throws_with<IOError>([&] { probe_image(bytes.data(), bytes.size(), "bad.jpg"); }, "Huffman table");
  // Over-subscribed code lengths (3 codes of 1 bit) fail Kraft's inequality;
  // stb_image 2.27 then asserted while decoding (found by the CI fuzz run).
  bytes = read_file_bytes(path, "test");
  bytes[dht + 5] = 3;
  test::check_throws_with<IOError>([&] { decode_image(bytes.data(), bytes.size(), "kraft.jpg"); },
                                   "has more codes of length <= 1 than 1 bits can hold (corrupt JPEG)");
  // The guard's own marker walk must stop at the end (found by fuzz/fuzz_image
  // under ASan: a file of SOI and fill bytes made it read one byte past).
  const std::vector<uint8_t> fill = {0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  test::check_throws_with<IOError>([&] { decode_image(fill.data(), fill.size(), "fill.jpg"); }, "(jpeg)");
}

// Found by the CI fuzz run under UBSan (session 26): stb_image 2.27 mallocs
// its JPEG state without clearing it, so a scan naming a Huffman table the
// file never defines decodes through uninitialised memory (index out of
// bounds in stbi__jpeg_huff_decode). The marker walk refuses such a scan; and
// where the walk cannot follow the file (stray bytes stb resynchronises on),
// image_io.cpp's zeroed allocations make the decode the same every time.
// scripts/sanitize.sh fills fresh allocations with 0xFF, which made stb
// index past its tables here before the allocations were zeroed.
TEST_CASE("decode_image refuses a JPEG scan that uses an undefined Huffman table") {
  TempDir dir;
  const std::string path = dir.file("ok.jpg");
  test::write_jpeg(path, test::make_image(8, 8, 3, 8, [](int64_t y, int64_t x, int64_t c) { return int(y * 30 + x + c); }));
  const std::vector<uint8_t> ok = read_file_bytes(path, "test");
  size_t sos = 0;
  for (size_t i = 2; i + 1 < ok.size() && sos == 0; ++i) {
    if (ok[i] == 0xFF && ok[i + 1] == 0xDA) sos = i;
  }
  REQUIRE(sos > 0);
  // Marker (2 bytes), length (2), component count (1), then per component
  // its id and its table byte (DC id << 4 | AC id). The file defines tables
  // 0 and 1 only.
  std::vector<uint8_t> bytes = ok;
  bytes[sos + 6] = 0x30;
  test::check_throws_with<IOError>([&] { decode_image(bytes.data(), bytes.size(), "dc.jpg"); },
                                   "the scan at byte " + std::to_string(sos) + " uses the DC Huffman table 3, which the file does not define before it");
  bytes[sos + 6] = 0x02;
  test::check_throws_with<IOError>([&] { probe_image(bytes.data(), bytes.size(), "ac.jpg"); }, "uses the AC Huffman table 2");
  // An arithmetic-coded frame (SOF9) has no Huffman tables at all: stb's own
  // refusal stands, not a message about undefined tables.
  std::vector<uint8_t> arith = bytes;
  for (size_t i = 2; i + 1 < sos; ++i) {
    if (arith[i] == 0xFF && arith[i + 1] == 0xC0) arith[i + 1] = 0xC9;
  }
  test::check_throws_with<IOError>([&] { decode_image(arith.data(), arith.size(), "arith.jpg"); }, "(jpeg): unknown image type");

  // A stray byte after SOI's first segment: stb skips it, the walk stops.
  bytes.insert(bytes.begin() + 4 + (ok[4] << 8 | ok[5]), uint8_t{0x00});
  bytes[sos + 7] = 0x32;
  Image first, second;
  bool threw = false;
  try {
    first = decode_image(bytes.data(), bytes.size(), "stray.jpg");
    second = decode_image(bytes.data(), bytes.size(), "stray.jpg");
  } catch (const IOError&) {
    threw = true;
  }
  if (!threw) {
    CHECK(first.width == 8);
    CHECK(first.pixels == second.pixels);
  }
}

// Found by the CI fuzz run under UBSan (session 23): in this JPEG's entropy-
// coded data stb_image 2.27's bit reader shifts a 32-bit buffer by 33
// (nothings/stb#1293, fixed after 2.27). image_io.cpp switches UBSan's shift
// checks off inside stb; scripts/sanitize.sh runs this test under UBSan,
// where without that it stops the suite. Either outcome is a clean answer to
// a corrupt file: an IOError, or an image of the size the header gives.
TEST_CASE("a corrupt JPEG that makes stb_image 2.27 over-shift decodes or throws, nothing else") {
  const std::vector<uint8_t> bytes = {
      0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
      0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x06, 0x00, 0x08, 0x03, 0x01, 0x11,
      0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x01, 0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01,
      0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
      0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01, 0x02, 0x03,
      0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x33, 0x76, 0x03, 0x00, 0x80, 0x60, 0x00, 0x00, 0x81, 0x91, 0xa1,
      0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19,
      0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
      0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74,
      0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
      0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9,
      0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xe1, 0xe4,
      0xda, 0xe5, 0xe2, 0xe3, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0x01,
      0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03,
      0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04,
      0x04, 0x00, 0x01, 0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0xff, 0xc2, 0x07, 0x61,
      0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72,
      0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37,
      0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
      0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86,
      0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
      0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
      0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3,
      0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f,
      0x00, 0xc3, 0x65, 0xff, 0x00, 0x82, 0xff, 0xff, 0xff, 0x7f, 0x2f, 0x7e, 0xcb, 0x1e, 0x2d, 0xfd, 0xa6, 0x3f, 0xe1, 0x18,
      0x8f, 0x5c, 0xff, 0x85, 0x00, 0x77, 0xf0, 0xff, 0x00, 0x55, 0xf1, 0x3f, 0xf6, 0x27, 0xdb, 0x3e, 0xcd, 0xfd, 0xa1, 0xf6,
      0x0b, 0x19, 0x6e, 0xbe, 0xcf, 0xe7, 0x79, 0x72, 0x79, 0x5e, 0x67, 0x95, 0xb3, 0x7e, 0xc7, 0xdb, 0xbb, 0x3b, 0x5b, 0x18,
      0x20, 0x1f, 0xff, 0xd9,
  };
  try {
    const Image image = decode_image(bytes.data(), bytes.size(), "stb-1293.jpg");
    CHECK(image.width == probe_image(bytes.data(), bytes.size(), "stb-1293.jpg").width);
    CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels));
  } catch (const IOError&) {
    // refused: also fine
  }
}

// Found by fuzz/fuzz_image: stb_image 2.27 parses the PNM header's numbers
// into an int without an overflow check (UBSan: signed integer overflow in
// stbi__pnm_getinteger).
TEST_CASE("decode_image refuses PNM header numbers above INT_MAX before stb parses them") {
  const std::string ok = "P5\n# comment 99999999999999\n2 1\n255\n\x01\x02";
  const Image image = decode_image(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "ok.pgm");
  CHECK(image.width == 2);
  CHECK(image.at(0, 1) == 2);
  for (const std::string bad : {"P5\n5 4\n25666666666666\n\x01", "P6 99999999999 1 255 x", "P5 1\n#c\n2147483648 255 "}) {
    test::check_throws_with<IOError>(
        [&] { decode_image(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), "bad.pgm"); },
        "has too many digits (corrupt header)");
  }
}

// Found by fuzz/fuzz_image: stb_image 2.27 grows its buffer to an IDAT
// chunk's declared length before reading it (a 437-byte file asked for 2 GB),
// and allocates the inflated image from IHDR before inflating.
TEST_CASE("decode_image checks PNG chunk lengths and the inflated size against the file first") {
  auto png = [](uint32_t width, uint32_t height, uint32_t idat_length, size_t idat_present) {
    std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    auto be32 = [&](uint32_t v) {
      for (int i = 3; i >= 0; --i) b.push_back(uint8_t(v >> 8 * i));
    };
    be32(width);
    be32(height);
    for (uint8_t v : {8, 0, 0, 0, 0}) b.push_back(v);  // 8-bit gray, deflate, no interlace
    be32(0);                                           // CRC (stb does not check it)
    be32(idat_length);
    for (char c : std::string("IDAT")) b.push_back(uint8_t(c));
    b.insert(b.end(), idat_present, 0);
    return b;
  };
  const std::vector<uint8_t> huge_chunk = png(5, 4, 0x80000000u, 16);
  test::check_throws_with<IOError>([&] { decode_image(huge_chunk.data(), huge_chunk.size(), "chunk.png"); },
                                   "declares 2147483648 bytes, the file has 16 left");
  // 16000 x 10000 gray (under kMaxImagePixels) needs 160 MB inflated: 16 bytes cannot hold it.
  const std::vector<uint8_t> bomb = png(16000, 10000, 16, 16);
  test::check_throws_with<IOError>([&] { decode_image(bomb.data(), bomb.size(), "bomb.png"); },
                                   "needs 160010000 bytes of image data, more than its 16 compressed bytes");
  // Found by the CI fuzz run under UBSan: an empty first IDAT made stb call memcpy(NULL, p, 0).
  const std::vector<uint8_t> empty_idat = png(5, 8, 0, 0);
  test::check_throws_with<IOError>([&] { decode_image(empty_idat.data(), empty_idat.size(), "e.png"); },
                                   "an empty IDAT chunk at byte 33 comes before any image data");
}
