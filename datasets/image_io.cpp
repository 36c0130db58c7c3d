// Image decoding (stb_image), channel conversion and tensor conversion.
// PNG writing is in image_write.cpp; TIFF in tiff.cpp.
#include "datasets/image_io.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <tuple>

#include "datasets/tiff.h"
#include "tensor/ops.h"

// stb_image is compiled here and only here. STB_IMAGE_STATIC keeps its symbols
// private to this file, so linking next to Debian's libstb cannot clash.
// Included as <stb/...> from /usr/include, a system directory, so its
// warnings stay out of our -Wall -Wextra build.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_HDR      // no float formats: every image here is 8- or 16-bit
#define STBI_NO_LINEAR
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_TGA      // TGA has no magic number, so it could not be recognised safely
// stb_image 2.27 mallocs its JPEG decoder state without clearing it, so a
// scan that names a Huffman table the file never defined decodes through
// uninitialised memory (found by the CI fuzz run, session 26: UBSan, index
// out of bounds in stbi__jpeg_huff_decode). check_jpeg_scan() refuses such
// scans where it can see them; zeroed allocations make every other such
// case deterministic (an all-zero table decodes every code as symbol 0).
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(p, size) std::realloc(p, size)
#define STBI_FREE(p) std::free(p)
// Debian's stb_image (2.27) shifts its 32-bit JPEG bit buffer by 32 or more
// on some corrupt streams (stbi__grow_buffer_unsafe; upstream issue
// nothings/stb#1293, fixed after 2.27). The shift garbles only the pixels
// of an image that is corrupt anyway, but UBSan stops our fuzzers on it
// (fuzz_image found it in session 23: fuzz/corpus/fuzz_image/stb-1293.jpg).
// So shift checks, and only those, are off in stb's functions; ASan and
// every other check still cover them. Drop this when Debian ships 2.28.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("shift"))), apply_to = function)
#endif
#include <stb/stb_image.h>
#if defined(__clang__)
#pragma clang attribute pop
#endif

namespace crfseg::data {

const char* format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::png: return "png";
    case ImageFormat::jpeg: return "jpeg";
    case ImageFormat::bmp: return "bmp";
    case ImageFormat::pnm: return "pnm";
    case ImageFormat::gif: return "gif";
    case ImageFormat::tiff: return "tiff";
    case ImageFormat::unknown: break;
  }
  return "unknown";
}

Image Image::zeros(int64_t height, int64_t width, int64_t channels, int bit_depth) {
  Image image;
  image.height = height;
  image.width = width;
  image.channels = channels;
  image.file_channels = channels;
  image.bit_depth = bit_depth;
  image.pixels.assign(static_cast<size_t>(height * width * channels), 0);
  return image;
}

ImageFormat detect_format(const uint8_t* b, size_t n) {
  auto starts = [&](std::initializer_list<int> magic) {
    if (n < magic.size()) return false;
    size_t i = 0;
    for (int m : magic) {
      if (b[i++] != m) return false;
    }
    return true;
  };
  if (starts({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) return ImageFormat::png;
  if (starts({0xFF, 0xD8, 0xFF})) return ImageFormat::jpeg;
  if (starts({'B', 'M'})) return ImageFormat::bmp;
  if (starts({'G', 'I', 'F', '8'})) return ImageFormat::gif;
  if (starts({'I', 'I', 42, 0}) || starts({'M', 'M', 0, 42})) return ImageFormat::tiff;
  // Netpbm: "P1".."P6" (stb decodes the binary P5/P6; the ASCII ones fail
  // with stb's own message, which is clearer than "unknown format").
  if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') return ImageFormat::pnm;
  return ImageFormat::unknown;
}

ImageFormat format_from_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".png") return ImageFormat::png;
  if (ext == ".jpg" || ext == ".jpeg" || ext == ".jpe") return ImageFormat::jpeg;
  if (ext == ".bmp") return ImageFormat::bmp;
  if (ext == ".pgm" || ext == ".ppm" || ext == ".pnm") return ImageFormat::pnm;
  if (ext == ".gif") return ImageFormat::gif;
  if (ext == ".tif" || ext == ".tiff") return ImageFormat::tiff;
  return ImageFormat::unknown;
}

bool extension_mismatch(const std::string& path, const Image& image) {
  const ImageFormat claimed = format_from_extension(path);
  return claimed != ImageFormat::unknown && image.format != ImageFormat::unknown && claimed != image.format;
}

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* op) {
  std::error_code ec;
  CRFSEG_CHECK(std::filesystem::is_regular_file(path, ec), IOError, op, ": '", path,
               "' does not exist or is not a regular file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  CRFSEG_CHECK(in.good(), IOError, op, ": cannot open '", path, "' for reading");
  const std::streamoff size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  CRFSEG_CHECK(in.good() || bytes.empty(), IOError, op, ": read error on '", path, "'");
  return bytes;
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes, const char* op) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  CRFSEG_CHECK(out.good(), IOError, op, ": cannot open '", path, "' for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  CRFSEG_CHECK(!out.fail(), IOError, op, ": write error on '", path, "' (disk full?)");
}

namespace {

// stb returns malloc'd pixels; this frees them on every path.
struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

// stb_image 2.27 (Debian 12) copies 16-bit PNM samples in host byte order,
// but PNM stores them big-endian, so on x86 every value comes back
// byte-swapped. Rather than trust a version number, decode a two-byte PGM
// once and see: this stays right when a fixed stb is installed.
bool stb_swaps_16bit_pnm() {
  static const bool swaps = [] {
    static const unsigned char pgm[] = {'P', '5', '\n', '1', ' ', '1', '\n', '6', '5', '5', '3', '5', '\n', 0x12, 0x34};
    int w = 0, h = 0, c = 0;
    std::unique_ptr<stbi_us, StbFree> p(stbi_load_16_from_memory(pgm, sizeof pgm, &w, &h, &c, 0));
    return p != nullptr && p.get()[0] == 0x3412;
  }();
  return swaps;
}

// stb_image 2.27 (Debian 12) builds a JPEG Huffman table from the DHT's 16
// code counts without checking that they add up to at most 256, and writes
// past its 257-entry arrays when they do not (found by fuzz/fuzz_image;
// fixed upstream in stb_image 2.28). Refuse such tables before stb sees them.
// A DHT segment holds tables of [class/id byte, 16 counts, the values].
// Returns the tables it defines, as bits 4 * class + id.
unsigned check_jpeg_dht(const uint8_t* b, size_t n, size_t at, const std::string& source) {
  unsigned defined = 0;
  if (at + 2 > n) return defined;  // stb reads zeros past the end: no codes
  int64_t left = (int64_t{b[at]} << 8 | b[at + 1]) - 2;
  size_t p = at + 2;
  while (left > 0 && p < n) {
    if ((b[p] >> 4) > 1 || (b[p] & 15) > 3) return defined;  // stb rejects the header itself
    defined |= 1u << (4 * (b[p] >> 4) + (b[p] & 15));
    int codes = 0;
    for (size_t i = 0; i < 16 && p + 1 + i < n; ++i) codes += b[p + 1 + i];
    CRFSEG_CHECK(codes <= 256, IOError, "load_image: cannot decode '", source, "' (jpeg): a Huffman table at byte ",
                 p, " defines ", codes, " codes, at most 256 are possible (corrupt JPEG)");
    // Canonical Huffman codes exist only when the lengths satisfy Kraft's
    // inequality: after the codes of length j, the next code must still fit
    // in j bits. stb_image 2.27 does not check, and later asserts while
    // decoding (found by the fuzz run in CI; 2.28 adds this same check).
    uint32_t next = 0;
    for (size_t j = 1; j <= 16; ++j) {
      next += p + j < n ? b[p + j] : 0;
      CRFSEG_CHECK(next <= (1u << j), IOError, "load_image: cannot decode '", source, "' (jpeg): the Huffman table at byte ",
                   p, " has more codes of length <= ", j, " than ", j, " bits can hold (corrupt JPEG)");
      next <<= 1;
    }
    left -= 17 + codes;
    p += 17 + static_cast<size_t>(codes);
  }
  return defined;
}

// A scan (SOS segment, length at byte `at`) may only use Huffman tables
// defined before it. A baseline scan decodes with both tables of each of its
// components; a progressive scan with the DC table in a first DC pass
// (Ss = 0, Ah = 0) and with the AC table in an AC pass (Ss > 0). Headers stb
// rejects itself (bad counts, table ids above 3) are left to stb.
void check_jpeg_scan(const uint8_t* b, size_t n, size_t at, unsigned defined, bool progressive,
                     const std::string& source) {
  if (at + 3 > n) return;
  const size_t components = b[at + 2];
  const size_t tail = at + 3 + 2 * components;  // Ss, Se, Ah/Al
  if (components < 1 || components > 4 || tail + 3 > n) return;
  const bool uses_dc = !progressive || (b[tail] == 0 && (b[tail + 2] >> 4) == 0);
  const bool uses_ac = !progressive || b[tail] != 0;
  for (size_t k = 0; k < components; ++k) {
    const int dc = b[at + 4 + 2 * k] >> 4, ac = b[at + 4 + 2 * k] & 15;
    if (dc > 3 || ac > 3) return;
    for (const auto& [used, cls, id] : {std::tuple{uses_dc, 0, dc}, std::tuple{uses_ac, 1, ac}}) {
      CRFSEG_CHECK(!used || (defined >> (4 * cls + id) & 1), IOError, "load_image: cannot decode '", source,
                   "' (jpeg): the scan at byte ", at - 2, " uses the ", cls == 0 ? "DC" : "AC", " Huffman table ", id,
                   ", which the file does not define before it (corrupt JPEG, or a Motion-JPEG frame that relies "
                   "on the standard tables, which stb_image does not supply)");
    }
  }
}

// RST0..RST7: restart markers, which sit inside entropy-coded data.
bool is_restart_marker(uint8_t marker) { return marker >= 0xD0 && marker <= 0xD7; }

// Where a scan's entropy-coded data ends: at the first marker, a 0xFF
// followed by neither a stuffed 0x00, a restart marker nor another 0xFF.
size_t skip_entropy_data(const uint8_t* b, size_t n, size_t p) {
  for (; p + 1 < n; ++p) {
    const uint8_t next = b[p + 1];
    if (b[p] == 0xFF && next != 0x00 && next != 0xFF && !is_restart_marker(next)) return p;
  }
  return n;
}

// Finds every DHT segment stb could parse: walks the marker segments up to
// the first scan; from there on (entropy-coded data, where 0xFF bytes are
// stuffed, or bytes stb would resynchronise on) every 0xFF 0xC4 is taken as
// one, so the check never misses a table stb reads. The walk itself goes on
// through the scans, as a well-formed file is laid out, and checks that each
// scan's tables were defined before it; where the walk loses the layout it
// stops, and the zeroed allocations above keep stb deterministic.
void check_jpeg_tables(const uint8_t* b, size_t n, const std::string& source) {
  unsigned defined = 0;
  bool huffman = false, progressive = false;  // the frame (SOF) seen so far
  size_t first_scan = n;
  size_t p = 2;  // after SOI
  while (p + 1 < n && b[p] == 0xFF) {
    while (p + 1 < n && b[p + 1] == 0xFF) ++p;  // fill bytes
    if (p + 1 >= n) break;                       // only fill bytes left
    const uint8_t marker = b[p + 1];
    p += 2;
    if (marker == 0xD9) break;
    if (marker == 0xD8 || marker == 0x01 || is_restart_marker(marker)) continue;
    if (p + 2 > n) break;
    const size_t length = size_t{b[p]} << 8 | b[p + 1];
    if (marker == 0xC4) defined |= check_jpeg_dht(b, n, p, source);
    // stb decodes Huffman frames only: baseline, extended, progressive. The
    // others (arithmetic, lossless) it refuses with its own message.
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) huffman = true;
    if (marker == 0xC2) progressive = true;
    if (length < 2) break;
    if (marker == 0xDA) {
      if (huffman) check_jpeg_scan(b, n, p, defined, progressive, source);
      first_scan = std::min(first_scan, p);
      p = skip_entropy_data(b, n, p + length);
      continue;
    }
    p += length;
  }
  for (size_t i = std::min(first_scan, std::min(p, n)); i + 1 < n; ++i) {
    if (b[i] == 0xFF && b[i + 1] == 0xC4) check_jpeg_dht(b, n, i + 2, source);
  }
}

// stb_image 2.27 reads the binary PNM header's width, height and maxval into
// an int with no overflow check (signed overflow, undefined behaviour: found
// by fuzz/fuzz_image; fixed upstream in stb_image 2.28). Walk the header as
// stbi__pnm_info does (whitespace, '#' comments to the end of the line,
// digits) and refuse a number above INT_MAX before stb parses it.
void check_pnm_header(const uint8_t* b, size_t n, const std::string& source) {
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return;  // stb decodes only P5 and P6
  size_t p = 2;
  auto eof = [&] { return p >= n; };
  auto next = [&]() -> int { return p < n ? b[p++] : 0; };
  auto space = [](int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  int c = next();
  for (const char* field : {"width", "height", "maximum value"}) {
    for (;;) {
      while (!eof() && space(c)) c = next();
      if (eof() || c != '#') break;
      while (!eof() && c != '\n' && c != '\r') c = next();
    }
    int64_t value = 0;
    while (!eof() && c >= '0' && c <= '9') {
      value = value * 10 + (c - '0');
      CRFSEG_CHECK(value <= INT_MAX, IOError, "load_image: cannot decode '", source, "' (pnm): the header's ", field,
                   " has too many digits (corrupt header)");
      c = next();
    }
  }
}

// stb_image 2.27 grows its IDAT buffer to a chunk's declared length before
// reading the chunk, so a 400-byte PNG declaring a 2 GB IDAT made it
// allocate 2 GB (found by fuzz/fuzz_image), and it allocates the whole
// inflated image up front from IHDR. Walk the chunks first: each must fit in
// the file, and the inflated size (rows of filter byte + packed samples)
// must be reachable from the IDAT bytes at Deflate's best ratio, 1032:1
// (with slack for the byte rounding of Adam7-interlaced rows).
void check_png_chunks(const uint8_t* b, size_t n, const std::string& source) {
  auto be32 = [&](size_t at) { return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3]; };
  uint64_t idat = 0, raw = 0, rows = 0;
  for (size_t p = 8; p + 8 <= n;) {
    const uint64_t length = be32(p);
    const std::string type(reinterpret_cast<const char*>(b + p + 4), 4);
    CRFSEG_CHECK(length <= n - p - 8, IOError, "load_image: cannot decode '", source, "' (png): chunk at byte ", p,
                 " declares ", length, " bytes, the file has ", n - p - 8, " left (truncated or corrupt PNG)");
    if (type == "IHDR" && length == 13 && p == 8) {
      static constexpr int kChannels[] = {1, 0, 3, 1, 2, 0, 4};  // by colour type; 0: invalid (stb rejects it)
      const uint64_t width = be32(p + 8), height = be32(p + 12), depth = b[p + 16], colour = b[p + 17];
      const uint64_t bits = depth * (colour < 7 ? kChannels[colour] : 0);
      raw = height * ((width * bits + 7) / 8 + 1);  // < 2^32 * 2^36: no overflow
      rows = height;
    }
    // stb_image 2.27 copies a zero-length IDAT seen before any image data
    // into its still-null buffer (memcpy(NULL, p, 0): undefined behaviour,
    // found by fuzz/fuzz_image under UBSan). Legal but pointless; refused.
    CRFSEG_CHECK(!(type == "IDAT" && length == 0 && idat == 0), IOError, "load_image: cannot decode '", source,
                 "' (png): an empty IDAT chunk at byte ", p, " comes before any image data (not supported)");
    if (type == "IDAT") idat += length;
    if (type == "IEND") break;
    p += 12 + length;
  }
  if (idat > 0) {
    CRFSEG_CHECK(raw <= 1032 * idat + rows + 1024, IOError,
                 "load_image: cannot decode '", source, "' (png): the header's geometry needs ", raw,
                 " bytes of image data, more than its ", idat, " compressed bytes can hold (corrupt PNG)");
  }
}

// stb's failure reason, fit for a message. stb names an unknown PNG chunk by
// its 4 raw bytes, which in a corrupt file may be unprintable or cut short
// by a zero byte ("I"); such reasons become a plain description.
std::string stb_reason() {
  const char* r = stbi_failure_reason();
  const std::string s = r != nullptr ? r : "";
  const bool printable = s.size() >= 4 && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c < 0x7f;
  });
  return printable ? s : "corrupt or truncated data";
}

// The header's geometry, through stbi_info (no pixels decoded).
ImageInfo stb_info(const uint8_t* data, size_t size, const std::string& source, ImageFormat format) {
  CRFSEG_CHECK(size <= static_cast<size_t>(INT_MAX), IOError, "load_image: '", source, "' is ", size,
               " bytes; stb decodes files below 2 GiB");
  // stb parses the JPEG tables before the frame header, so check them first
  // (and the PNM header's numbers).
  if (format == ImageFormat::jpeg) check_jpeg_tables(data, size, source);
  if (format == ImageFormat::pnm) check_pnm_header(data, size, source);
  if (format == ImageFormat::png) check_png_chunks(data, size, source);
  int w = 0, h = 0, c = 0;
  CRFSEG_CHECK(stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c) != 0, IOError,
               "load_image: cannot decode '", source, "' (", format_name(format), "): ", stb_reason());
  return ImageInfo{format, h, w, c};
}

void check_pixel_limit(const ImageInfo& info, const std::string& source) {
  CRFSEG_CHECK(info.height > 0 && info.width > 0 && info.height <= kMaxImagePixels / info.width, IOError,
               "load_image: '", source, "' (", format_name(info.format), ") claims ", info.width, "x", info.height,
               " pixels; expected a non-empty image of at most ", kMaxImagePixels, " pixels (corrupt header?)");
}

Image decode_with_stb(const uint8_t* data, size_t size, const std::string& path, ImageFormat format) {
  // Check the header's size first: stb allocates the whole output from it,
  // so a few corrupt header bytes could otherwise ask for gigabytes.
  check_pixel_limit(stb_info(data, size, path, format), path);
  const int len = static_cast<int>(size);
  int w = 0, h = 0, c = 0;
  const bool is16 = stbi_is_16_bit_from_memory(data, len) != 0;
  std::unique_ptr<void, StbFree> pixels(is16 ? static_cast<void*>(stbi_load_16_from_memory(data, len, &w, &h, &c, 0))
                                             : static_cast<void*>(stbi_load_from_memory(data, len, &w, &h, &c, 0)));
  CRFSEG_CHECK(pixels != nullptr, IOError, "load_image: cannot decode '", path, "' (", format_name(format),
               "): ", stb_reason());
  Image image = Image::zeros(h, w, c, is16 ? 16 : 8);
  image.format = format;
  const size_t n = image.pixels.size();
  if (is16) {
    const auto* src = static_cast<const uint16_t*>(pixels.get());
    std::copy(src, src + n, image.pixels.begin());
    if (format == ImageFormat::pnm && stb_swaps_16bit_pnm()) {
      for (uint16_t& v : image.pixels) v = static_cast<uint16_t>(v << 8 | v >> 8);
    }
  } else {
    const auto* src = static_cast<const uint8_t*>(pixels.get());
    std::copy(src, src + n, image.pixels.begin());
  }
  return image;
}

ImageFormat known_format(const uint8_t* bytes, size_t size, const std::string& source) {
  const ImageFormat format = detect_format(bytes, size);
  CRFSEG_CHECK(format != ImageFormat::unknown, IOError, "load_image: '", source,
               "' is not a supported image (PNG, JPEG, BMP, PGM/PPM, GIF or TIFF by content; ", size,
               " bytes", size == 0 ? ", empty file" : "", ")");
  return format;
}

}  // namespace

ImageInfo probe_image(const uint8_t* bytes, size_t size, const std::string& source) {
  const ImageFormat format = known_format(bytes, size, source);
  if (format == ImageFormat::tiff) {
    const TiffFile tiff(bytes, size, source);
    const TiffPage& page = tiff.page(0);
    return ImageInfo{format, page.height, page.width, page.channels};
  }
  return stb_info(bytes, size, source, format);
}

Image load_image(const std::string& path, int64_t channels) {
  CRFSEG_CHECK(channels == 0 || channels == 1 || channels == 3, ValueError, "load_image: channels must be 0 (keep), 1 or 3, got ",
               channels);
  const std::vector<uint8_t> bytes = read_file_bytes(path, "load_image");
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& source, int64_t channels) {
  CRFSEG_CHECK(channels == 0 || channels == 1 || channels == 3, ValueError, "load_image: channels must be 0 (keep), 1 or 3, got ",
               channels);
  const ImageFormat format = known_format(bytes, size, source);
  Image image;
  if (format == ImageFormat::tiff) {
    const TiffFile tiff(bytes, size, source);
    const TiffPage& page = tiff.page(0);
    check_pixel_limit(ImageInfo{format, page.height, page.width, page.channels}, source);
    image = tiff.read_page(0);
  } else {
    image = decode_with_stb(bytes, size, source, format);
  }
  image.format = format;
  image.file_channels = image.channels;
  return channels == 0 ? image : convert_channels(image, channels);
}

Image convert_channels(const Image& in, int64_t channels) {
  CRFSEG_CHECK(channels == 1 || channels == 3 || (channels == 4 && in.channels == 4), ValueError,
               "convert_channels: expected a target of 1 or 3 channels (4 only from 4), got ", channels, " from ",
               in.channels);
  CRFSEG_CHECK(in.channels >= 1 && in.channels <= 4, ValueError, "convert_channels: expected an image with 1-4 channels, got ",
               in.channels);
  if (in.channels == channels) return in;
  Image out = Image::zeros(in.height, in.width, channels, in.bit_depth);
  out.format = in.format;
  out.file_channels = in.file_channels;
  const int64_t n = in.height * in.width;
  for (int64_t p = 0; p < n; ++p) {
    const uint16_t* src = &in.pixels[p * in.channels];
    uint16_t* dst = &out.pixels[p * channels];
    // Gray and gray+alpha carry their value in channel 0; colour becomes luma.
    const bool colour = in.channels >= 3;
    if (channels == 1) {
      dst[0] = colour ? static_cast<uint16_t>((299u * src[0] + 587u * src[1] + 114u * src[2] + 500u) / 1000u) : src[0];
    } else {  // 3
      for (int c = 0; c < 3; ++c) dst[c] = colour ? src[c] : src[0];
    }
  }
  return out;
}

Tensor image_to_tensor(const Image& image, bool scale_to_unit) {
  const int64_t C = image.channels, H = image.height, W = image.width;
  Tensor t = Tensor::empty({C, H, W});
  float* out = t.data<float>();
  const float scale = scale_to_unit ? 1.0f / static_cast<float>(image.max_value()) : 1.0f;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t p = 0; p < H * W; ++p) out[c * H * W + p] = static_cast<float>(image.pixels[p * C + c]) * scale;
  }
  return t;
}

Image tensor_to_image(const Tensor& t, int bit_depth, bool from_unit) {
  CRFSEG_CHECK(bit_depth == 8 || bit_depth == 16, ValueError, "tensor_to_image: bit_depth must be 8 or 16, got ", bit_depth);
  CRFSEG_CHECK(t.dim() == 2 || t.dim() == 3, ShapeError, "tensor_to_image: expected [C, H, W] or [H, W], got ",
               shape_str(t.shape()));
  const int64_t C = t.dim() == 3 ? t.size(0) : 1, H = t.size(-2), W = t.size(-1);
  CRFSEG_CHECK(C >= 1 && C <= 4, ShapeError, "tensor_to_image: expected 1-4 channels, got ", C);
  Image image = Image::zeros(H, W, C, bit_depth);
  const std::vector<double> v = ops::contiguous(t.to(Device::cpu())).to_vector<double>();
  const double maxv = static_cast<double>(image.max_value());
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t p = 0; p < H * W; ++p) {
      double x = v[c * H * W + p] * (from_unit ? maxv : 1.0);
      if (std::isnan(x)) x = 0.0;
      image.pixels[p * C + c] = static_cast<uint16_t>(std::clamp(std::round(x), 0.0, maxv));
    }
  }
  return image;
}

}  // namespace crfseg::data
