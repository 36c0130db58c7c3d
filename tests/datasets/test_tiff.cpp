// TIFF: the reader against byte files built by hand here (independently of
// write_tiff), in both byte orders; write_tiff round trips; the rejections.
#include <doctest/doctest.h>

#include <map>

#include "datasets/tiff.h"
#include "fixtures.h"
#include "support/helpers.h"
#include "support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::data;
using crfseg::test::TempDir;

namespace {

// One page to build: geometry, samples (row-major, interleaved) and tag
// overrides (tag -> SHORT value) to produce odd or unsupported files.
struct HandPage {
  int64_t width, height, channels = 1;
  int bits = 8;
  std::vector<uint16_t> samples;
  int64_t rows_per_strip = 0;  // 0: one strip
  std::map<uint16_t, uint16_t> shorts;  // extra or replaced SHORT tags
};

// Assembles a classic TIFF: header, then per page its strips, its IFD, and
// the out-of-line StripOffsets/StripByteCounts/BitsPerSample arrays.
std::vector<uint8_t> hand_tiff(bool big_endian, const std::vector<HandPage>& pages) {
  std::vector<uint8_t> b;
  auto put = [&](uint32_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(uint8_t(v >> (big_endian ? 8 * (n - 1 - i) : 8 * i)));
  };
  auto patch = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (big_endian ? 8 * (3 - i) : 8 * i));
  };
  b = {uint8_t(big_endian ? 'M' : 'I'), uint8_t(big_endian ? 'M' : 'I')};
  put(42, 2);
  size_t link = b.size();
  put(0, 4);
  for (const HandPage& p : pages) {
    const int64_t rps = p.rows_per_strip > 0 ? p.rows_per_strip : p.height;
    const int64_t row = p.width * p.channels;
    std::vector<uint32_t> offsets, counts;
    for (int64_t y = 0; y < p.height; y += rps) {
      offsets.push_back(uint32_t(b.size()));
      for (int64_t i = y * row; i < std::min(y + rps, p.height) * row; ++i) put(p.samples[i], p.bits / 8);
      counts.push_back(uint32_t(b.size() - offsets.back()));
    }
    if (b.size() % 2) b.push_back(0);
    const uint32_t arrays = uint32_t(b.size());
    for (uint32_t o : offsets) put(o, 4);
    for (uint32_t c : counts) put(c, 4);
    const uint32_t bits_at = uint32_t(b.size());
    for (int64_t c = 0; c < p.channels; ++c) put(uint32_t(p.bits), 2);
    patch(link, uint32_t(b.size()));
    std::map<uint16_t, std::pair<uint16_t, std::vector<uint32_t>>> e;  // tag -> (type, [count, field])
    const uint32_t n = uint32_t(offsets.size());
    e[256] = {3, {1, uint32_t(p.width)}};
    e[257] = {4, {1, uint32_t(p.height)}};
    e[258] = {3, {uint32_t(p.channels), p.channels == 1 ? uint32_t(p.bits) : bits_at}};
    e[262] = {3, {1, p.channels == 1 ? 1u : 2u}};
    e[273] = {4, {n, n == 1 ? offsets[0] : arrays}};
    e[277] = {3, {1, uint32_t(p.channels)}};
    e[278] = {3, {1, uint32_t(rps)}};
    e[279] = {4, {n, n == 1 ? counts[0] : arrays + 4 * n}};
    for (auto [tag, v] : p.shorts) e[tag] = {3, {1, v}};
    put(uint32_t(e.size()), 2);
    for (const auto& [tag, tv] : e) {
      put(tag, 2);
      put(tv.first, 2);
      put(tv.second[0], 4);
      if (tv.first == 3 && tv.second[0] == 1) {
        put(tv.second[1], 2);  // SHORT, left-justified in the 4-byte field
        put(0, 2);
      } else {
        put(tv.second[1], 4);
      }
    }
    link = b.size();
    put(0, 4);
  }
  return b;
}

std::vector<uint16_t> ramp(int64_t n, int step, int offset = 0) {
  std::vector<uint16_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(uint16_t(offset + i * step));
  return v;
}

}  // namespace

TEST_CASE("TiffFile reads hand-built 8- and 16-bit gray and RGB pages in both byte orders") {
  TempDir dir;
  for (bool be : {false, true}) {
    CAPTURE(be);
    const HandPage gray8{3, 2, 1, 8, ramp(6, 40), 0, {}};
    const HandPage gray16{4, 5, 1, 16, ramp(20, 3001, 7), 2, {}};  // 3 strips (2, 2, 1 rows), values > 255
    const HandPage rgb16{2, 2, 3, 16, ramp(12, 5000), 1, {}};
    const std::string path = dir.file(be ? "be.tif" : "le.tif");
    write_file_bytes(path, hand_tiff(be, {gray8, gray16, rgb16}), "test");
    const TiffFile file(path);
    CHECK(file.big_endian() == be);
    REQUIRE(file.num_pages() == 3);
    const Image a = file.read_page(0), b = file.read_page(1), c = file.read_page(2);
    CHECK(a.bit_depth == 8);
    CHECK(a.width == 3);
    CHECK(a.height == 2);
    CHECK(a.pixels == gray8.samples);
    CHECK(b.bit_depth == 16);
    CHECK(b.height == 5);
    CHECK(b.pixels == gray16.samples);
    CHECK(c.channels == 3);
    CHECK(c.pixels == rgb16.samples);
    CHECK(read_tiff(path).size() == 3);
    CHECK(load_image(path).pixels == gray8.samples);  // load_image gives page 0
  }
}

TEST_CASE("TiffFile inverts WhiteIsZero and skips thumbnail pages") {
  TempDir dir;
  HandPage white{2, 1, 1, 8, {0, 200}, 0, {{262, 0}}};
  HandPage thumb{1, 1, 1, 8, {9}, 0, {{254, 1}}};  // NewSubfileType: reduced resolution
  HandPage main{2, 1, 1, 16, {1, 65535}, 0, {}};
  write_file_bytes(dir.file("w.tif"), hand_tiff(false, {white, thumb, main}), "test");
  const TiffFile file(dir.file("w.tif"));
  REQUIRE(file.num_pages() == 2);
  CHECK(file.read_page(0).pixels == std::vector<uint16_t>{255, 55});
  CHECK(file.read_page(1).pixels == std::vector<uint16_t>{1, 65535});
}

TEST_CASE("write_tiff round-trips single- and multi-page stacks in both byte orders") {
  TempDir dir;
  for (bool be : {false, true}) {
    for (int64_t rps : {0, 3}) {
      CAPTURE(be);
      CAPTURE(rps);
      std::vector<Image> pages;
      for (int k = 0; k < 3; ++k) {
        pages.push_back(test::make_image(7, 5, 1, 16, [&](int64_t y, int64_t x, int64_t) { return int(k * 20000 + y * 700 + x * 3); }));
      }
      pages.push_back(test::make_image(4, 6, 3, 8, [](int64_t y, int64_t x, int64_t c) { return int(y * 50 + x * 7 + c); }));
      write_tiff(dir.file("s.tif"), pages, be, rps);
      const std::vector<Image> back = read_tiff(dir.file("s.tif"));
      REQUIRE(back.size() == pages.size());
      for (size_t k = 0; k < pages.size(); ++k) {
        CHECK(back[k].pixels == pages[k].pixels);
        CHECK(back[k].channels == pages[k].channels);
        CHECK(back[k].bit_depth == pages[k].bit_depth);
      }
    }
  }
}

TEST_CASE("TiffFile rejects compressed, tiled, float, palette, 1-bit, BigTIFF, truncated and looping files clearly") {
  TempDir dir;
  auto bad = [&](const std::vector<uint8_t>& bytes, const std::string& needle) {
    write_file_bytes(dir.file("bad.tif"), bytes, "test");
    test::check_throws_with<IOError>([&] { TiffFile f(dir.file("bad.tif")); }, needle);
  };
  const HandPage ok{2, 2, 1, 8, {1, 2, 3, 4}, 0, {}};
  auto with = [&](uint16_t tag, uint16_t value) {
    HandPage p = ok;
    p.shorts[tag] = value;
    return hand_tiff(false, {p});
  };
  bad(with(259, 5), "compression 5 (LZW) is not supported");
  bad(with(259, 8), "compression 8 (Deflate)");
  bad(with(259, 32773), "(PackBits)");
  bad(with(322, 16), "tiled TIFF is not supported");
  bad(with(339, 3), "sample format 3 (floating point) is not supported");
  bad(with(262, 3), "photometric interpretation 3 (palette)");
  bad(with(258, 1), "1-bit samples are not supported");
  bad({'I', 'I', 43, 0, 8, 0, 0, 0}, "BigTIFF");
  bad({'X', 'X', 42, 0}, "is not a TIFF file");
  std::vector<uint8_t> truncated = hand_tiff(false, {ok});
  truncated.resize(truncated.size() - 20);
  bad(truncated, "past the end of the file");
  // Point the last page's "next IFD" back at the first IFD.
  std::vector<uint8_t> loop = hand_tiff(false, {ok});
  for (int i = 0; i < 4; ++i) loop[loop.size() - 4 + i] = loop[4 + i];
  bad(loop, "loop in its IFD chain");
  test::check_throws_with<IOError>([&] { TiffFile f(dir.file("missing.tif")); }, "does not exist");
  write_file_bytes(dir.file("one.tif"), hand_tiff(true, {ok}), "test");
  test::check_throws_with<ValueError>([&] { TiffFile(dir.file("one.tif")).read_page(1); }, "page 1 out of range");
}

namespace {

// A little-endian TIFF whose IFD holds the given LONG tags (ascending), after
// `data_bytes` zero bytes of pixel data at offset 8; tags with several values
// store them out of line. For headers hand_tiff cannot express.
std::vector<uint8_t> long_tag_tiff(const std::vector<std::pair<uint16_t, std::vector<uint32_t>>>& tags,
                                   size_t data_bytes) {
  std::vector<uint8_t> b(8 + data_bytes, 0);
  b[0] = b[1] = 'I';
  b[2] = 42;
  auto put = [&](uint32_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(uint8_t(v >> 8 * i));
  };
  std::vector<uint32_t> at(tags.size());
  for (size_t i = 0; i < tags.size(); ++i) {
    at[i] = uint32_t(b.size());
    if (tags[i].second.size() > 1) {
      for (uint32_t v : tags[i].second) put(v, 4);
    }
  }
  const uint32_t ifd = uint32_t(b.size());
  for (int i = 0; i < 4; ++i) b[4 + i] = uint8_t(ifd >> 8 * i);
  put(uint32_t(tags.size()), 2);
  for (size_t i = 0; i < tags.size(); ++i) {
    put(tags[i].first, 2);
    put(4, 2);  // LONG
    put(uint32_t(tags[i].second.size()), 4);
    put(tags[i].second.size() > 1 ? at[i] : tags[i].second[0], 4);
  }
  put(0, 4);
  return b;
}

}  // namespace

TEST_CASE("TiffFile from memory reads like TiffFile from the file and names the source in errors") {
  TempDir dir;
  const std::vector<uint8_t> bytes = hand_tiff(true, {HandPage{3, 2, 1, 16, {1, 2, 3, 400, 500, 65535}, 1, {}},
                                                      HandPage{1, 1, 1, 8, {9}, 0, {}}});
  write_file_bytes(dir.file("two.tif"), bytes, "test");
  const std::vector<Image> from_file = read_tiff(dir.file("two.tif"));
  const std::vector<Image> from_memory = read_tiff(bytes.data(), bytes.size(), "in-memory.tif");
  REQUIRE(from_memory.size() == 2);
  for (size_t k = 0; k < 2; ++k) {
    CHECK(from_memory[k].pixels == from_file[k].pixels);
    CHECK(from_memory[k].bit_depth == from_file[k].bit_depth);
  }
  CHECK(TiffFile(bytes.data(), bytes.size(), "in-memory.tif").path() == "in-memory.tif");
  const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + 12);
  test::check_throws_with<IOError>([&] { TiffFile(cut.data(), cut.size(), "in-memory.tif"); }, "'in-memory.tif'");
}

// Found while writing fuzz/fuzz_tiff: the strip size rows * width * samples * bytes was
// computed in 64 bits and could wrap (here 2^30 rows of 2^34 bytes = 2^64 ->
// 0), so a 100-byte file passed the "strip inside the file" check and
// read_page tried to allocate a 2^63-sample image.
TEST_CASE("TiffFile rejects strip geometry that overflows 64 bits instead of allocating from it") {
  const std::vector<uint8_t> bytes = long_tag_tiff({{256, {1u << 31}},      // ImageWidth 2^31
                                                   {257, {1u << 30}},      // ImageLength 2^30
                                                   {258, {16, 16, 16, 16}},  // 16-bit samples
                                                   {262, {2}},             // RGB
                                                   {273, {8}},             // one strip at offset 8
                                                   {277, {4}}},            // RGBA
                                                  16);
  test::check_throws_with<IOError>([&] { TiffFile(bytes.data(), bytes.size(), "wrap.tif"); },
                                   "strip 0 (1073741824 rows of 17179869184 bytes) runs past the end of the file");
}

// Strips may alias (all StripOffsets equal): each lies inside the file, but
// together they would decode a 2000 x 2000 page from 2000 bytes of data.
TEST_CASE("TiffFile rejects pages whose strips together need more bytes than the file has") {
  const std::vector<uint8_t> bytes = long_tag_tiff({{256, {2000}},
                                                   {257, {2000}},
                                                   {258, {8}},
                                                   {262, {1}},
                                                   {273, std::vector<uint32_t>(2000, 8)},
                                                   {277, {1}},
                                                   {278, {1}}},
                                                  2000);
  test::check_throws_with<IOError>([&] { TiffFile(bytes.data(), bytes.size(), "alias.tif"); },
                                   "overlapping strips or corrupt geometry");
}
