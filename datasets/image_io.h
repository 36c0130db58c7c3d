// Image files in and out: JPEG, PNG (8/16-bit), BMP, PGM/PPM and GIF through
// stb_image (Debian's libstb-dev), uncompressed TIFF through our own reader
// (datasets/tiff.h); PNG out (8-bit through stb_image_write, 16-bit through a
// small chunk writer on stb's deflate).
//
// Formats are recognised by their magic bytes, not the file extension: a PNG
// named .jpg loads as the PNG it is (Image::format says which, and
// extension_mismatch() reports the misnaming so datasets can count it).
//
// Errors: a missing or unreadable file, or one the decoder rejects, throws
// IOError naming the function, the path and (for stb) its failure reason,
// e.g. "load_image: cannot decode '/d/a.jpg' (jpeg): bad huffman code".
// All functions are thread-safe (stb keeps its failure reason thread-local;
// no stb global setting is ever changed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg::data {

enum class ImageFormat { unknown, png, jpeg, bmp, pnm, gif, tiff };
const char* format_name(ImageFormat format);

// A decoded image. Pixels are stored row-major with the channels interleaved
// (pixels[(y * width + x) * channels + c]), as in the files, in 16-bit words
// whatever the source depth: values lie in [0, max_value()].
struct Image {
  int64_t height = 0, width = 0, channels = 0;
  int bit_depth = 8;  // 8 or 16
  std::vector<uint16_t> pixels;
  ImageFormat format = ImageFormat::unknown;  // the decoded file's format (unknown if built in memory)
  int64_t file_channels = 0;                  // channels as stored in the file, before any conversion

  // An image of the given geometry filled with zeros.
  static Image zeros(int64_t height, int64_t width, int64_t channels, int bit_depth = 8);
  int64_t max_value() const { return bit_depth == 16 ? 65535 : 255; }
  uint16_t at(int64_t y, int64_t x, int64_t c = 0) const { return pixels[(y * width + x) * channels + c]; }
  uint16_t& at(int64_t y, int64_t x, int64_t c = 0) { return pixels[(y * width + x) * channels + c]; }
};

// The format named by the first bytes of a file (unknown if none matches).
ImageFormat detect_format(const uint8_t* bytes, size_t size);
// The format the file name's extension claims (case-insensitive; unknown if none).
ImageFormat format_from_extension(const std::string& path);
// True when the extension names a known format other than the decoded one.
bool extension_mismatch(const std::string& path, const Image& image);

// Reads / writes a whole file; IOError naming `op` and the path if it cannot.
std::vector<uint8_t> read_file_bytes(const std::string& path, const char* op);
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes, const char* op);

// Decodes an image file. channels = 0 keeps the file's channel count; 1 or 3
// converts (convert_channels). A multi-page TIFF gives its first page; 16-bit
// PNG/PGM/TIFF keep 16 bits, everything else is 8-bit. Images of more than
// kMaxImagePixels pixels are refused (IOError) before any pixel is allocated.
Image load_image(const std::string& path, int64_t channels = 0);

// The same on a file's bytes held in memory; `source` names them in errors
// ("load_image: cannot decode '<source>' (png): ..."). load_image is this
// function applied to the file's contents, with the path as source.
Image decode_image(const uint8_t* bytes, size_t size, const std::string& source, int64_t channels = 0);

// Width x height limit of decode_image/load_image: 2^28 pixels (16384 x
// 16384), far above any dataset here. A corrupt header cannot make the
// decoder allocate gigabytes.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// What an image's header says, without decoding the pixels (for stb formats
// through stbi_info, for TIFF the first page's directory). Throws IOError
// like decode_image for unknown formats and unreadable headers.
struct ImageInfo {
  ImageFormat format = ImageFormat::unknown;
  int64_t height = 0, width = 0, channels = 0;
};
ImageInfo probe_image(const uint8_t* bytes, size_t size, const std::string& source);

// Channel conversion, the rule used everywhere:
//   gray -> RGB replicates; gray+alpha drops alpha (then replicates for RGB);
//   RGB(A) -> gray is the ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B,
//   rounded; RGBA -> RGB drops alpha. Palette images arrive as RGB(A) from
//   stb. Throws ValueError for a target other than 1, 3 or 4 (4 only from 4).
Image convert_channels(const Image& image, int64_t channels);

// [C, H, W] f32 on the CPU. scale_to_unit divides by max_value() (so 8- and
// 16-bit images both land in [0, 1]); otherwise the raw values are kept.
Tensor image_to_tensor(const Image& image, bool scale_to_unit = true);

// The inverse, for writing predictions: t is [C, H, W] or [H, W] (f32/f64 or
// an integer type). from_unit multiplies by the depth's maximum first; values
// are rounded and clamped to [0, 2^bit_depth - 1].
Image tensor_to_image(const Tensor& t, int bit_depth = 8, bool from_unit = true);

// Writes a PNG with 1-4 channels at the image's bit depth (8 or 16).
// Throws IOError naming the path when it cannot be written.
void save_png(const std::string& path, const Image& image);

}  // namespace crfseg::data
