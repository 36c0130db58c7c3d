// Baseline TIFF reading and writing (see tiff.h for what is supported).
//
// File layout, as far as we need it (TIFF 6.0, sections 2 and 7):
//   header    8 bytes: byte order "II" (little) or "MM" (big), 42, offset of IFD 0
//   IFD       u16 entry count, entries of 12 bytes, u32 offset of the next IFD (0 ends)
//   entry     u16 tag, u16 type, u32 count, 4 bytes holding the values when
//             they fit (left-justified), else the offset of the values
//   strips    RowsPerStrip rows each (the last may be shorter), at StripOffsets,
//             samples interleaved per pixel, 16-bit samples in the file's byte order
#include "datasets/tiff.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace crfseg::data {

namespace {

enum Tag : uint16_t {
  kNewSubfileType = 254, kImageWidth = 256, kImageLength = 257, kBitsPerSample = 258, kCompression = 259,
  kPhotometric = 262, kStripOffsets = 273, kSamplesPerPixel = 277, kRowsPerStrip = 278, kStripByteCounts = 279,
  kPlanarConfiguration = 284, kTileWidth = 322, kSampleFormat = 339,
};

// Bytes per value of each field type (1 BYTE ... 12 DOUBLE); 0 = unknown type.
int type_size(uint16_t type) {
  static constexpr int sizes[] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8};
  return type < 13 ? sizes[type] : 0;
}

const char* compression_name(uint64_t c) {
  switch (c) {
    case 2: return "CCITT RLE";
    case 3: return "CCITT Group 3";
    case 4: return "CCITT Group 4";
    case 5: return "LZW";
    case 6: case 7: return "JPEG";
    case 8: case 32946: return "Deflate";
    case 32773: return "PackBits";
    case 34925: return "LZMA";
    case 50000: return "Zstandard";
    default: return "unknown";
  }
}

// Bounds-checked reads in the file's byte order, from the file (seeking) or
// from its bytes in memory when `memory` is not null.
class Reader {
 public:
  Reader(const std::string& path, bool big_endian, uint64_t file_size, const std::vector<uint8_t>* memory)
      : path_(path), big_endian_(big_endian), size_(file_size), memory_(memory) {
    if (memory_) return;
    in_.open(path, std::ios::binary);
    CRFSEG_CHECK(in_.good(), IOError, "TiffFile: cannot open '", path, "' for reading");
  }
  void set_big_endian(bool b) { big_endian_ = b; }
  uint64_t size() const { return size_; }

  void read(uint64_t offset, void* dst, uint64_t n, const char* what) {
    CRFSEG_CHECK(offset <= size_ && n <= size_ - offset, IOError, "TiffFile: '", path_, "' is truncated or corrupt: ",
                 what, " at offset ", offset, " needs ", n, " bytes, the file has ", size_);
    if (memory_) {
      std::copy_n(memory_->data() + offset, n, static_cast<uint8_t*>(dst));
      return;
    }
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    CRFSEG_CHECK(in_.good(), IOError, "TiffFile: read error on '", path_, "' at offset ", offset, " (", what, ")");
  }
  uint16_t u16(uint64_t offset, const char* what) {
    uint8_t b[2];
    read(offset, b, 2, what);
    return big_endian_ ? uint16_t(b[0] << 8 | b[1]) : uint16_t(b[1] << 8 | b[0]);
  }
  uint32_t u32(uint64_t offset, const char* what) {
    uint8_t b[4];
    read(offset, b, 4, what);
    return big_endian_ ? uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]
                       : uint32_t(b[3]) << 24 | uint32_t(b[2]) << 16 | uint32_t(b[1]) << 8 | b[0];
  }

 private:
  std::ifstream in_;
  std::string path_;
  bool big_endian_;
  uint64_t size_;
  const std::vector<uint8_t>* memory_;
};

// The integer values of one IFD entry (BYTE, SHORT or LONG).
std::vector<uint64_t> entry_values(Reader& r, uint64_t entry_offset, const std::string& where) {
  const uint16_t tag = r.u16(entry_offset, "IFD entry");
  const uint16_t type = r.u16(entry_offset + 2, "IFD entry");
  const uint32_t count = r.u32(entry_offset + 4, "IFD entry");
  CRFSEG_CHECK(type == 1 || type == 3 || type == 4, IOError, "TiffFile: ", where, ": tag ", tag,
               " has field type ", type, ", expected BYTE, SHORT or LONG");
  const uint64_t bytes = uint64_t{count} * type_size(type);
  const uint64_t at = bytes <= 4 ? entry_offset + 8 : r.u32(entry_offset + 8, "IFD entry");
  // Check the extent before allocating: a corrupt count must not become a huge vector.
  CRFSEG_CHECK(at <= r.size() && bytes <= r.size() - at, IOError, "TiffFile: ", where, ": tag ", tag, " claims ", count,
               " values at offset ", at, ", past the end of the file (", r.size(), " bytes)");
  std::vector<uint64_t> values(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t p = at + uint64_t{i} * type_size(type);
    if (type == 1) {
      uint8_t b;
      r.read(p, &b, 1, "tag values");
      values[i] = b;
    } else {
      values[i] = type == 3 ? r.u16(p, "tag values") : r.u32(p, "tag values");
    }
  }
  return values;
}

// Parses the IFD at `offset` into a page; returns false for a thumbnail
// (reduced-resolution) page the caller should skip.
bool parse_page(Reader& r, uint64_t offset, const std::string& where, uint64_t file_size, TiffPage& page,
                uint64_t& next) {
  const uint16_t n = r.u16(offset, "IFD entry count");
  std::map<uint16_t, std::vector<uint64_t>> tags;  // decoded values of the tags we use
  std::set<uint16_t> present;                       // every tag seen
  for (uint16_t i = 0; i < n; ++i) {
    const uint64_t e = offset + 2 + uint64_t{i} * 12;
    const uint16_t tag = r.u16(e, "IFD entry");
    const uint16_t type = r.u16(e + 2, "IFD entry");
    // Only the tags we interpret are decoded; others (resolution, software,
    // ImageJ metadata, ...) may use any field type and are skipped.
    static const std::set<uint16_t> wanted = {kNewSubfileType, kImageWidth, kImageLength, kBitsPerSample,
                                              kCompression, kPhotometric, kStripOffsets, kSamplesPerPixel,
                                              kRowsPerStrip, kStripByteCounts, kPlanarConfiguration, kSampleFormat};
    present.insert(tag);
    if (wanted.count(tag) && type_size(type) != 0) tags[tag] = entry_values(r, e, where);
  }
  next = r.u32(offset + 2 + uint64_t{n} * 12, "next IFD offset");

  auto one = [&](uint16_t tag, uint64_t fallback) { return tags[tag].empty() ? fallback : tags[tag][0]; };
  auto require = [&](bool ok, const std::string& what) {
    CRFSEG_CHECK(ok, IOError, "TiffFile: ", where, ": ", what);
  };
  if (one(kNewSubfileType, 0) & 1) return false;

  const uint64_t compression = one(kCompression, 1);
  require(compression == 1, "compression " + std::to_string(compression) + " (" + compression_name(compression) +
                                ") is not supported; only uncompressed TIFF is read (save the stack uncompressed)");
  require(!present.count(kTileWidth), "tiled TIFF is not supported; only strips are read");
  page.width = static_cast<int64_t>(one(kImageWidth, 0));
  page.height = static_cast<int64_t>(one(kImageLength, 0));
  require(page.width > 0 && page.height > 0, "missing or zero ImageWidth/ImageLength");
  page.channels = static_cast<int64_t>(one(kSamplesPerPixel, 1));
  const std::vector<uint64_t>& bits = tags[kBitsPerSample];
  const uint64_t depth = bits.empty() ? 1 : bits[0];
  require(std::all_of(bits.begin(), bits.end(), [&](uint64_t b) { return b == depth; }) && (depth == 8 || depth == 16),
          std::to_string(depth) + "-bit samples are not supported; expected 8 or 16 bits per sample");
  page.bit_depth = static_cast<int>(depth);
  for (uint64_t f : tags[kSampleFormat]) {
    require(f == 1, "sample format " + std::to_string(f) +
                        (f == 3 ? " (floating point)" : f == 2 ? " (signed)" : "") +
                        " is not supported; expected unsigned integers (convert float reconstructions to 16-bit)");
  }
  const uint64_t photometric = one(kPhotometric, 1);
  require(photometric <= 2, "photometric interpretation " + std::to_string(photometric) +
                                (photometric == 3 ? " (palette)" : "") + " is not supported; expected gray or RGB");
  const bool gray = photometric <= 1;
  require(gray ? (page.channels == 1 || page.channels == 2) : (page.channels == 3 || page.channels == 4),
          std::to_string(page.channels) + " samples per pixel do not fit a " + (gray ? "gray" : "RGB") + " image");
  page.white_is_zero = photometric == 0;
  require(one(kPlanarConfiguration, 1) == 1 || page.channels == 1, "planar (separate) sample planes are not supported");

  page.rows_per_strip = static_cast<int64_t>(std::min<uint64_t>(one(kRowsPerStrip, UINT32_MAX), page.height));
  require(page.rows_per_strip > 0, "RowsPerStrip is 0");
  const uint64_t strips = (page.height + page.rows_per_strip - 1) / page.rows_per_strip;
  page.strip_offsets = tags[kStripOffsets];
  require(page.strip_offsets.size() == strips, "expected " + std::to_string(strips) + " StripOffsets, found " +
                                                   std::to_string(page.strip_offsets.size()));
  page.strip_byte_counts = tags[kStripByteCounts];
  // Width and height are 32-bit, so rows * row_bytes can overflow 64 bits:
  // compare by division. Every strip must lie inside the file, and all of
  // them together too (an uncompressed page cannot hold more pixels than the
  // file has bytes, however its strips alias), so no header can make
  // read_page allocate more than the file's size in samples.
  const uint64_t row_bytes = uint64_t(page.width) * page.channels * (page.bit_depth / 8);
  uint64_t total = 0;
  for (uint64_t s = 0; s < strips; ++s) {
    const uint64_t rows = std::min<uint64_t>(page.rows_per_strip, page.height - s * page.rows_per_strip);
    const bool fits = rows <= file_size / row_bytes;
    const uint64_t need = fits ? rows * row_bytes : 0;
    CRFSEG_CHECK(fits && page.strip_offsets[s] <= file_size && need <= file_size - page.strip_offsets[s], IOError,
                 "TiffFile: ", where, ": strip ", s, " (", rows, " rows of ", row_bytes,
                 " bytes) runs past the end of the file (", file_size, " bytes; truncated?)");
    // StripByteCounts is optional for uncompressed data (it follows from the
    // geometry); when given it may include padding but not fall short.
    if (!page.strip_byte_counts.empty()) {
      CRFSEG_CHECK(page.strip_byte_counts.size() == strips && page.strip_byte_counts[s] >= need, IOError,
                   "TiffFile: ", where, ": strip ", s, " holds fewer bytes than its ", rows, " rows need");
    }
    total += need;
    CRFSEG_CHECK(total <= file_size, IOError, "TiffFile: ", where, ": the strips of a ", page.width, "x", page.height,
                 " page need more bytes than the file's ", file_size, " (overlapping strips or corrupt geometry)");
  }
  return true;
}

}  // namespace

TiffFile::TiffFile(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  CRFSEG_CHECK(std::filesystem::is_regular_file(path_, ec), IOError, "TiffFile: '", path_,
               "' does not exist or is not a regular file");
  file_size_ = std::filesystem::file_size(path_, ec);
  parse_directories();
}

TiffFile::TiffFile(const uint8_t* bytes, size_t size, std::string source)
    : path_(std::move(source)), bytes_(std::make_shared<const std::vector<uint8_t>>(bytes, bytes + size)),
      file_size_(size) {
  parse_directories();
}

void TiffFile::parse_directories() {
  Reader r(path_, false, file_size_, bytes_.get());
  uint8_t header[4];
  r.read(0, header, 4, "header");
  CRFSEG_CHECK((header[0] == 'I' && header[1] == 'I') || (header[0] == 'M' && header[1] == 'M'), IOError,
               "TiffFile: '", path_, "' is not a TIFF file (no II/MM byte-order mark)");
  big_endian_ = header[0] == 'M';
  r.set_big_endian(big_endian_);
  const uint16_t magic = r.u16(2, "header");
  CRFSEG_CHECK(magic != 43, IOError, "TiffFile: '", path_, "' is a BigTIFF, which is not supported");
  CRFSEG_CHECK(magic == 42, IOError, "TiffFile: '", path_, "' has version ", magic, ", expected 42");

  // Follow the IFD chain, refusing loops (a corrupt file could cycle forever).
  std::set<uint64_t> seen;
  for (uint64_t offset = r.u32(4, "header"), index = 0; offset != 0; ++index) {
    CRFSEG_CHECK(seen.insert(offset).second, IOError, "TiffFile: '", path_, "' has a loop in its IFD chain at offset ",
                 offset);
    TiffPage page;
    uint64_t next = 0;
    const std::string where = "'" + path_ + "' page " + std::to_string(index);
    if (parse_page(r, offset, where, file_size_, page, next)) pages_.push_back(std::move(page));
    offset = next;
  }
  CRFSEG_CHECK(!pages_.empty(), IOError, "TiffFile: '", path_, "' holds no image pages");
}

const TiffPage& TiffFile::page(int64_t index) const {
  CRFSEG_CHECK(index >= 0 && index < num_pages(), ValueError, "TiffFile: page ", index, " out of range for '", path_,
               "' with ", num_pages(), " pages");
  return pages_[static_cast<size_t>(index)];
}

Image TiffFile::read_page(int64_t index) const {
  const TiffPage& p = page(index);
  Reader r(path_, big_endian_, file_size_, bytes_.get());
  Image image = Image::zeros(p.height, p.width, p.channels, p.bit_depth);
  image.format = ImageFormat::tiff;
  const int bytes_per_sample = p.bit_depth / 8;
  const int64_t row_values = p.width * p.channels;
  std::vector<uint8_t> buffer;
  for (size_t s = 0; s < p.strip_offsets.size(); ++s) {
    const int64_t y0 = static_cast<int64_t>(s) * p.rows_per_strip;
    const int64_t rows = std::min(p.rows_per_strip, p.height - y0);
    buffer.resize(static_cast<size_t>(rows * row_values * bytes_per_sample));
    r.read(p.strip_offsets[s], buffer.data(), buffer.size(), "strip data");
    uint16_t* dst = &image.pixels[static_cast<size_t>(y0 * row_values)];
    for (size_t i = 0; i < static_cast<size_t>(rows * row_values); ++i) {
      if (bytes_per_sample == 1) {
        dst[i] = buffer[i];
      } else {
        const uint8_t a = buffer[2 * i], b = buffer[2 * i + 1];
        dst[i] = big_endian_ ? uint16_t(a << 8 | b) : uint16_t(b << 8 | a);
      }
    }
  }
  if (p.white_is_zero) {
    const uint16_t maxv = static_cast<uint16_t>(image.max_value());
    for (uint16_t& v : image.pixels) v = static_cast<uint16_t>(maxv - v);
  }
  image.file_channels = image.channels;
  return image;
}

namespace {
std::vector<Image> read_all_pages(const TiffFile& file) {
  std::vector<Image> pages;
  for (int64_t i = 0; i < file.num_pages(); ++i) pages.push_back(file.read_page(i));
  return pages;
}
}  // namespace

std::vector<Image> read_tiff(const std::string& path) { return read_all_pages(TiffFile(path)); }

std::vector<Image> read_tiff(const uint8_t* bytes, size_t size, const std::string& source) {
  return read_all_pages(TiffFile(bytes, size, source));
}

// ---- writing ----

namespace {

class Writer {
 public:
  explicit Writer(bool big_endian) : big_endian_(big_endian) {}
  std::vector<uint8_t> bytes;

  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void patch_u32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = byte_of(v, 4, i);
  }
  void align2() {
    if (bytes.size() % 2) bytes.push_back(0);  // the spec wants IFDs on word boundaries
  }
  // One 12-byte IFD entry whose values fit in its 4-byte field, or that
  // points at `offset` when they do not.
  void entry(uint16_t tag, uint16_t type, uint32_t count, uint32_t value_or_offset) {
    u16(tag);
    u16(type);
    u32(count);
    if (type == 3 && count == 1) {  // a SHORT value is left-justified in the field
      u16(static_cast<uint16_t>(value_or_offset));
      u16(0);
    } else {
      u32(value_or_offset);
    }
  }

 private:
  uint8_t byte_of(uint32_t v, int width, int i) const {
    const int shift = big_endian_ ? 8 * (width - 1 - i) : 8 * i;
    return static_cast<uint8_t>(v >> shift);
  }
  void put(uint32_t v, int width) {
    for (int i = 0; i < width; ++i) bytes.push_back(byte_of(v, width, i));
  }
  bool big_endian_;
};

}  // namespace

void write_tiff(const std::string& path, const std::vector<Image>& pages, bool big_endian, int64_t rows_per_strip) {
  CRFSEG_CHECK(!pages.empty(), ValueError, "write_tiff: no pages to write to '", path, "'");
  Writer w(big_endian);
  w.bytes = {static_cast<uint8_t>(big_endian ? 'M' : 'I'), static_cast<uint8_t>(big_endian ? 'M' : 'I')};
  w.u16(42);
  size_t next_pointer = w.bytes.size();  // where the offset of the next IFD goes
  w.u32(0);
  for (size_t k = 0; k < pages.size(); ++k) {
    const Image& im = pages[k];
    CRFSEG_CHECK((im.channels == 1 || im.channels == 3) && (im.bit_depth == 8 || im.bit_depth == 16) && im.height > 0 &&
                     im.width > 0,
                 ValueError, "write_tiff: page ", k, " must be a non-empty 8/16-bit image with 1 or 3 channels, got ",
                 im.height, "x", im.width, "x", im.channels, " at ", im.bit_depth, " bits");
    const int64_t rps = rows_per_strip > 0 ? std::min(rows_per_strip, im.height) : im.height;
    const int64_t row_values = im.width * im.channels;
    std::vector<uint32_t> offsets, counts;
    for (int64_t y0 = 0; y0 < im.height; y0 += rps) {
      const int64_t rows = std::min(rps, im.height - y0);
      w.align2();
      offsets.push_back(static_cast<uint32_t>(w.bytes.size()));
      for (int64_t i = y0 * row_values; i < (y0 + rows) * row_values; ++i) {
        if (im.bit_depth == 8) {
          w.bytes.push_back(static_cast<uint8_t>(im.pixels[i]));
        } else {
          w.u16(im.pixels[i]);
        }
      }
      counts.push_back(static_cast<uint32_t>(w.bytes.size() - offsets.back()));
    }
    // Out-of-line arrays (only needed when they do not fit in 4 bytes).
    w.align2();
    const uint32_t bits_at = static_cast<uint32_t>(w.bytes.size());
    for (int64_t c = 0; c < im.channels; ++c) w.u16(static_cast<uint16_t>(im.bit_depth));
    const uint32_t offsets_at = static_cast<uint32_t>(w.bytes.size());
    for (uint32_t o : offsets) w.u32(o);
    const uint32_t counts_at = static_cast<uint32_t>(w.bytes.size());
    for (uint32_t c : counts) w.u32(c);

    const uint32_t ifd = static_cast<uint32_t>(w.bytes.size());
    w.patch_u32(next_pointer, ifd);
    const uint32_t nstrips = static_cast<uint32_t>(offsets.size());
    const uint32_t spp = static_cast<uint32_t>(im.channels);
    w.u16(10);  // entries, in ascending tag order as the spec requires
    w.entry(kImageWidth, 4, 1, static_cast<uint32_t>(im.width));
    w.entry(kImageLength, 4, 1, static_cast<uint32_t>(im.height));
    w.entry(kBitsPerSample, 3, spp, spp == 1 ? static_cast<uint32_t>(im.bit_depth) : bits_at);
    w.entry(kCompression, 3, 1, 1);
    w.entry(kPhotometric, 3, 1, spp == 1 ? 1 : 2);
    w.entry(kStripOffsets, 4, nstrips, nstrips == 1 ? offsets[0] : offsets_at);
    w.entry(kSamplesPerPixel, 3, 1, spp);
    w.entry(kRowsPerStrip, 4, 1, static_cast<uint32_t>(rps));
    w.entry(kStripByteCounts, 4, nstrips, nstrips == 1 ? counts[0] : counts_at);
    w.entry(kPlanarConfiguration, 3, 1, 1);
    next_pointer = w.bytes.size();
    w.u32(0);
  }
  write_file_bytes(path, w.bytes, "write_tiff");
}

}  // namespace crfseg::data
