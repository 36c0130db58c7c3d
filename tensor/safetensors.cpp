// safetensors reader and writer (format in safetensors.h).
//
// The header is JSON, so this file carries a small strict JSON parser
// (RFC 8259: no comments, no trailing commas, no NaN, UTF-8 checked, depth
// limited) producing a tiny DOM, and a writer that emits exactly the compact
// form Hugging Face's serializer does ({"__metadata__":{...},"a":{"dtype":
// "F32","shape":[2],"data_offsets":[0,8]}} plus space padding to 8 bytes).
// The DOM is then checked against the safetensors schema, and the data
// offsets against the file, before any tensor is allocated.
//
// Saving is atomic: write "<path>.tmp.<pid>", fflush, fsync, rename().
// rename() within one directory replaces the target in one step on POSIX
// file systems, so a crash leaves either the old file or the new one.
#include "tensor/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <memory>
#include <optional>

#include "tensor/crc32c.h"
#include "tensor/ops.h"

namespace crfseg {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian port needs byte swaps here");

namespace {

constexpr const char* kChecksumKey = kSafetensorsChecksumKey;

// ---------------------------------------------------------------- dtypes ----

struct DTypeCode {
  const char* code;
  DType dtype;
};
constexpr DTypeCode kDTypeCodes[] = {{"F32", DType::f32}, {"F64", DType::f64}, {"F16", DType::f16},
                                     {"BF16", DType::bf16}, {"I32", DType::i32}, {"I64", DType::i64},
                                     {"U8", DType::u8}};

const char* dtype_code(DType dtype) {
  for (const DTypeCode& c : kDTypeCodes) {
    if (c.dtype == dtype) return c.code;
  }
  return nullptr;
}

// ------------------------------------------------------------------ UTF-8 ----

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when it is
// malformed (bad lead or continuation byte, overlong form, surrogate, or a
// code point past U+10FFFF).
size_t utf8_sequence_length(const std::string& s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2, cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3, cp = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4, cp = lead & 0x07;
  } else {
    return 0;  // a continuation byte, or a lead of an overlong/out-of-range form
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  const uint32_t min_cp = len == 3 ? 0x800 : 0x10000;
  if (len > 2 && cp < min_cp) return 0;          // overlong
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;    // UTF-16 surrogates are not characters
  if (cp > 0x10FFFF) return 0;
  return len;
}

bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ------------------------------------------------------------ JSON parse ----

// An object's member. (Not std::pair<std::string, JsonValue>: a pair of the
// still-incomplete JsonValue inside JsonValue is rejected by clang.)
struct JsonMember;

struct JsonValue {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  std::string text;  // a string's unescaped value, or a number's literal text
  std::vector<JsonValue> items;     // array
  std::vector<JsonMember> members;  // object, in file order (duplicates kept)
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

const char* kind_name(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "a boolean";
    case JsonValue::Kind::number: return "a number";
    case JsonValue::Kind::string: return "a string";
    case JsonValue::Kind::array: return "an array";
    case JsonValue::Kind::object: return "an object";
  }
  return "?";
}

// Recursive descent over the header text. Errors throw IOError with the byte
// position inside the header. Depth is capped: the schema needs 3 levels, and
// a hostile "[[[[..." header must not overflow the stack.
class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& context) : s_(text), context_(context) {}

  JsonValue parse_document() {
    skip_whitespace();
    JsonValue v = parse_value(0);
    skip_whitespace();
    if (pos_ != s_.size()) fail("unexpected text after the top-level value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 32;

  [[noreturn]] void fail(const std::string& what) const {
    throw IOError(detail::concat_message(context_, ": malformed JSON header at byte ", pos_, ": ", what));
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  void expect(char c, const char* what) {
    if (peek() != c) fail(std::string("expected ") + what);
    ++pos_;
  }
  void skip_whitespace() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  JsonValue parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 32 levels");
    switch (peek()) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': {
        JsonValue v;
        v.kind = JsonValue::Kind::string;
        v.text = parse_string();
        return v;
      }
      case 't': return parse_literal("true", JsonValue::Kind::boolean);
      case 'f': return parse_literal("false", JsonValue::Kind::boolean);
      case 'n': return parse_literal("null", JsonValue::Kind::null);
      default: break;
    }
    if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
    fail(at_end() ? "unexpected end of header" : "expected a value");
  }

  JsonValue parse_literal(const char* word, JsonValue::Kind kind) {
    const size_t n = std::strlen(word);
    if (s_.compare(pos_, n, word) != 0) fail(std::string("expected '") + word + "'");
    pos_ += n;
    JsonValue v;
    v.kind = kind;
    v.text = word;
    return v;
  }

  JsonValue parse_object(int depth) {
    JsonValue v;
    v.kind = JsonValue::Kind::object;
    expect('{', "'{'");
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_whitespace();
      if (peek() != '"') fail("expected a string key");
      std::string key = parse_string();
      skip_whitespace();
      expect(':', "':' after an object key");
      skip_whitespace();
      v.members.push_back(JsonMember{std::move(key), parse_value(depth + 1)});
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}', "',' or '}' in an object");
      return v;
    }
  }

  JsonValue parse_array(int depth) {
    JsonValue v;
    v.kind = JsonValue::Kind::array;
    expect('[', "'['");
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_whitespace();
      v.items.push_back(parse_value(depth + 1));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']', "',' or ']' in an array");
      return v;
    }
  }

  // number = -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?; the literal is kept.
  JsonValue parse_number() {
    const size_t start = pos_;
    const auto digits = [&] {
      const size_t from = pos_;
      while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == from) fail("expected a digit");
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (peek() == '.') {
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    JsonValue v;
    v.kind = JsonValue::Kind::number;
    v.text = s_.substr(start, pos_ - start);
    return v;
  }

  uint32_t parse_hex4() {
    uint32_t value = 0;
    for (int k = 0; k < 4; ++k, ++pos_) {
      const char c = peek();
      uint32_t digit = 0;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        fail("expected 4 hex digits after \\u");
      }
      value = value * 16 + digit;
    }
    return value;
  }

  std::string parse_string() {
    expect('"', "'\"'");
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character in a string");
      if (c >= 0x80) {  // raw UTF-8: copy a whole well-formed sequence
        const size_t len = utf8_sequence_length(s_, pos_);
        if (len == 0) fail("invalid UTF-8 in a string");
        out.append(s_, pos_, len);
        pos_ += len;
        continue;
      }
      ++pos_;
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          // Characters past U+FFFF come as a UTF-16 surrogate pair \uD8xx\uDCxx.
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(pos_, 2, "\\u") != 0) fail("unpaired high surrogate in a \\u escape");
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("unpaired high surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; fail("invalid escape in a string");
      }
    }
  }

  const std::string& s_;
  const std::string& context_;
  size_t pos_ = 0;
};

// ------------------------------------------------------------ JSON write ----

// Escapes like serde_json: \" \\ and the short forms \b \f \n \r \t, other
// control characters as \u00xx; everything else (UTF-8 included) verbatim.
void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// One tensor's header entry, as written and as read back.
struct HeaderEntry {
  std::string name;
  const char* code;  // "F32", ...
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// The compact header without padding: {"__metadata__":{...},"name":{...},...}
// with metadata in key order and tensors in the given (file) order. The
// writer emits exactly this; the reader rebuilds it from what it parsed to
// recompute the checksum, so a header's bytes need not be kept.
std::string compact_header(const std::map<std::string, std::string>& metadata, const std::vector<HeaderEntry>& entries) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, key);
      header += ':';
      append_json_string(header, value);
    }
    header += '}';
  }
  for (const HeaderEntry& e : entries) {
    if (header.size() > 1) header += ',';
    append_json_string(header, e.name);
    header += ":{\"dtype\":\"";
    header += e.code;
    header += "\",\"shape\":[";
    for (size_t d = 0; d < e.shape.size(); ++d) {
      if (d > 0) header += ',';
      header += std::to_string(e.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(e.begin) + "," + std::to_string(e.end) + "]}";
  }
  header += '}';
  return header;
}

std::string checksum_text(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// ----------------------------------------------------------- file handles ----

struct FileCloser {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

std::string errno_text() { return std::strerror(errno); }

}  // namespace

// ------------------------------------------------------------------ save ----

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "save_safetensors(" + path + ")";
  // 1. Validate every input before touching the file system.
  for (const auto& [key, value] : metadata) {
    CRFSEG_CHECK(is_valid_utf8(key) && is_valid_utf8(value), IOError, where, ": metadata entry '", key,
                 "' is not valid UTF-8");
    CRFSEG_CHECK(key != kChecksumKey, IOError, where, ": metadata key '", key,
                 "' is reserved (the writer stores the file's checksum there)");
  }
  std::map<std::string, bool> names;
  std::vector<Tensor> host(tensors.size());  // contiguous CPU copies (or the tensors themselves)
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    CRFSEG_CHECK(is_valid_utf8(name), IOError, where, ": tensor name '", name, "' is not valid UTF-8");
    CRFSEG_CHECK(name != "__metadata__", IOError, where, ": '__metadata__' is reserved and cannot name a tensor");
    CRFSEG_CHECK(names.emplace(name, true).second, IOError, where, ": duplicate tensor name '", name, "'");
    CRFSEG_CHECK(t.defined(), IOError, where, ": tensor '", name, "' is undefined");
    CRFSEG_CHECK(dtype_code(t.dtype()) != nullptr, IOError, where, ": tensor '", name, "' has dtype ",
                 dtype_name(t.dtype()), ", which is not supported (F32, F64, F16, BF16, I32, I64, U8); convert it first");
    host[i] = ops::contiguous(t.device().is_cpu() ? t : ops::to_device(t, Device::cpu()));
  }

  // 2. The header: compact JSON, then spaces up to a multiple of 8 bytes so
  //    the data buffer starts 8-byte aligned (as Hugging Face's writer does).
  //    The checksum covers the header as written without its own entry, then
  //    the data buffer (see kChecksumKey).
  std::vector<HeaderEntry> entries;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = static_cast<uint64_t>(host[i].numel()) * dtype_size(host[i].dtype());
    entries.push_back({tensors[i].first, dtype_code(host[i].dtype()), host[i].shape(), offset, offset + bytes});
    offset += bytes;
  }
  std::map<std::string, std::string> meta = metadata;
  const std::string unsigned_header = compact_header(meta, entries);
  uint32_t crc = crc32c_update(0, unsigned_header.data(), unsigned_header.size());
  for (const Tensor& t : host) crc = crc32c_update(crc, t.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  meta[kChecksumKey] = checksum_text(crc);
  std::string header = compact_header(meta, entries);
  header.append((8 - header.size() % 8) % 8, ' ');

  // 3. Write a temporary file next to the target. The guard removes it on
  //    every path that does not reach the rename.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  struct TempGuard {
    const std::string& tmp;
    FilePtr file;
    bool committed = false;
    ~TempGuard() {
      file.reset();
      if (!committed) std::remove(tmp.c_str());
    }
  } guard{tmp, FilePtr(std::fopen(tmp.c_str(), "wb"))};
  CRFSEG_CHECK(guard.file != nullptr, IOError, where, ": cannot create temporary file ", tmp, ": ", errno_text());
  std::FILE* f = guard.file.get();
  const auto write = [&](const void* data, size_t bytes) {
    if (bytes == 0) return;  // fwrite of 0 items is fine, but an empty tensor's data() may be null
    CRFSEG_CHECK(std::fwrite(data, 1, bytes, f) == bytes, IOError, where, ": writing ", tmp, " failed: ",
                 errno_text());
  };
  unsigned char length[8];
  for (int k = 0; k < 8; ++k) length[k] = static_cast<unsigned char>(static_cast<uint64_t>(header.size()) >> (8 * k));
  write(length, 8);
  write(header.data(), header.size());
  for (const Tensor& t : host) write(t.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));

  // 4. Make the bytes durable before they become visible under `path`:
  //    fflush moves stdio's buffer to the kernel, fsync moves it to the disk.
  CRFSEG_CHECK(std::fflush(f) == 0, IOError, where, ": flushing ", tmp, " failed: ", errno_text());
  CRFSEG_CHECK(::fsync(::fileno(f)) == 0, IOError, where, ": fsync of ", tmp, " failed: ", errno_text());
  CRFSEG_CHECK(std::fclose(guard.file.release()) == 0, IOError, where, ": closing ", tmp, " failed: ",
               errno_text());
  CRFSEG_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, IOError, where, ": renaming ", tmp, " over it failed: ",
               errno_text());
  guard.committed = true;

  // 5. Best effort: sync the directory so the rename itself survives a power
  //    cut. The new file is already in place, so a failure here is not reported.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

// ------------------------------------------------------------------ load ----

namespace {

// One tensor entry of the header, checked against the schema.
struct TensorEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// Checks a JSON number literal is a non-negative integer that fits int64.
int64_t to_index(const JsonValue& v, const std::string& where, const std::string& field) {
  CRFSEG_CHECK(v.kind == JsonValue::Kind::number, IOError, where, ": ", field, ": expected a non-negative integer, got ",
               kind_name(v.kind));
  const bool digits_only = std::all_of(v.text.begin(), v.text.end(), [](char c) { return c >= '0' && c <= '9'; });
  CRFSEG_CHECK(digits_only, IOError, where, ": ", field, ": expected a non-negative integer, got ", v.text);
  int64_t value = 0;
  for (char c : v.text) {
    CRFSEG_CHECK(value <= (INT64_MAX - (c - '0')) / 10, IOError, where, ": ", field, ": ", v.text,
                 " does not fit in 64 bits");
    value = value * 10 + (c - '0');
  }
  return value;
}

TensorEntry parse_tensor_entry(const std::string& name, const JsonValue& v, const std::string& where) {
  const std::string field = "tensor '" + name + "'";
  CRFSEG_CHECK(v.kind == JsonValue::Kind::object, IOError, where, ": ", field, ": expected an object, got ",
               kind_name(v.kind));
  const JsonValue* dtype = nullptr;
  const JsonValue* shape = nullptr;
  const JsonValue* offsets = nullptr;
  for (const auto& [key, value] : v.members) {
    const JsonValue** slot = key == "dtype" ? &dtype : key == "shape" ? &shape : key == "data_offsets" ? &offsets
                                                                                                      : nullptr;
    CRFSEG_CHECK(slot != nullptr, IOError, where, ": ", field, ": unknown field '", key,
                 "' (expected dtype, shape, data_offsets)");
    CRFSEG_CHECK(*slot == nullptr, IOError, where, ": ", field, ": duplicate field '", key, "'");
    *slot = &value;
  }
  CRFSEG_CHECK(dtype != nullptr, IOError, where, ": ", field, ": missing field 'dtype'");
  CRFSEG_CHECK(shape != nullptr, IOError, where, ": ", field, ": missing field 'shape'");
  CRFSEG_CHECK(offsets != nullptr, IOError, where, ": ", field, ": missing field 'data_offsets'");

  TensorEntry e;
  e.name = name;
  CRFSEG_CHECK(dtype->kind == JsonValue::Kind::string, IOError, where, ": ", field, ": dtype: expected a string, got ",
               kind_name(dtype->kind));
  const DTypeCode* code = std::find_if(std::begin(kDTypeCodes), std::end(kDTypeCodes),
                                       [&](const DTypeCode& c) { return dtype->text == c.code; });
  CRFSEG_CHECK(code != std::end(kDTypeCodes), IOError, where, ": ", field, ": unknown dtype '", dtype->text,
               "' (supported: F32, F64, F16, BF16, I32, I64, U8)");
  e.dtype = code->dtype;

  CRFSEG_CHECK(shape->kind == JsonValue::Kind::array, IOError, where, ": ", field, ": shape: expected an array, got ",
               kind_name(shape->kind));
  // numel * itemsize in 128 bits, saturated at 2^63: a hostile shape can
  // neither overflow the product nor match a real byte count.
  constexpr auto kSaturated = static_cast<unsigned __int128>(INT64_MAX) + 1;
  unsigned __int128 bytes = dtype_size(e.dtype);
  for (const JsonValue& d : shape->items) {
    e.shape.push_back(to_index(d, where, field + ": shape"));
    bytes = std::min(bytes * static_cast<uint64_t>(e.shape.back()), kSaturated);
  }
  CRFSEG_CHECK(offsets->kind == JsonValue::Kind::array && offsets->items.size() == 2, IOError, where, ": ", field,
               ": data_offsets: expected an array [begin, end]");
  e.begin = static_cast<uint64_t>(to_index(offsets->items[0], where, field + ": data_offsets"));
  e.end = static_cast<uint64_t>(to_index(offsets->items[1], where, field + ": data_offsets"));
  CRFSEG_CHECK(e.begin <= e.end, IOError, where, ": ", field, ": data_offsets [", e.begin, ", ", e.end,
               "] end before they begin");
  CRFSEG_CHECK(bytes == e.end - e.begin, IOError, where, ": ", field, ": data_offsets [", e.begin, ", ", e.end,
               "] hold ", e.end - e.begin, " bytes but dtype ", dtype->text, " and shape ", shape_str(e.shape),
               " need ", bytes == kSaturated ? "more than 2^63 - 1" : std::to_string(static_cast<uint64_t>(bytes)));
  return e;
}

// Where the bytes come from: a file read sequentially, or a memory buffer.
// read() copies the next `bytes` bytes to dst or throws naming `what`.
struct ByteSource {
  uint64_t size = 0;
  std::function<void(void* dst, size_t bytes, const std::string& what)> read;
};

SafetensorsFile parse(ByteSource& src, const std::string& where, const std::string& path) {
  const uint64_t size = src.size;
  // The 8-byte header length, then the header itself.
  CRFSEG_CHECK(size >= 8, IOError, where, ": file is ", size, " bytes, shorter than the 8-byte header length");
  unsigned char length[8];
  src.read(length, 8, "the header length");
  uint64_t header_size = 0;
  for (int k = 7; k >= 0; --k) header_size = (header_size << 8) | length[k];
  CRFSEG_CHECK(header_size <= size - 8, IOError, where, ": header length ", header_size, " exceeds the file (",
               size, " bytes; truncated?)");
  // Hugging Face caps headers at 100 MB too; it bounds the allocation below.
  CRFSEG_CHECK(header_size <= (100u << 20), IOError, where, ": header length ", header_size,
               " exceeds the 100 MiB limit");
  std::string header(header_size, '\0');
  src.read(header.data(), header.size(), "the header");
  const JsonValue root = JsonParser(header, where).parse_document();
  CRFSEG_CHECK(root.kind == JsonValue::Kind::object, IOError, where, ": header: expected a JSON object, got ",
               kind_name(root.kind));

  // The schema: "__metadata__" (string -> string) and tensor entries.
  SafetensorsFile out;
  out.path = path;
  bool seen_metadata = false;
  std::map<std::string, bool> names;
  std::vector<TensorEntry> entries;
  for (const auto& [name, value] : root.members) {
    if (name == "__metadata__") {
      CRFSEG_CHECK(!seen_metadata, IOError, where, ": duplicate '__metadata__'");
      seen_metadata = true;
      CRFSEG_CHECK(value.kind == JsonValue::Kind::object, IOError, where, ": __metadata__: expected an object, got ",
                   kind_name(value.kind));
      for (const auto& [key, v] : value.members) {
        CRFSEG_CHECK(v.kind == JsonValue::Kind::string, IOError, where, ": __metadata__: entry '", key,
                     "': expected a string, got ", kind_name(v.kind));
        CRFSEG_CHECK(out.metadata.emplace(key, v.text).second, IOError, where, ": __metadata__: duplicate key '",
                     key, "'");
      }
      continue;
    }
    CRFSEG_CHECK(names.emplace(name, true).second, IOError, where, ": duplicate tensor name '", name, "'");
    entries.push_back(parse_tensor_entry(name, value, where));
  }

  // The data regions must tile [0, buffer) exactly: sorted by offset, each
  // starts where the previous one ended (empty tensors are zero-length tiles).
  const uint64_t buffer = size - 8 - header_size;
  for (const TensorEntry& e : entries) {
    CRFSEG_CHECK(e.end <= buffer, IOError, where, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
                 "] fall outside the ", buffer, "-byte data buffer (truncated?)");
  }
  std::stable_sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& e : entries) {
    CRFSEG_CHECK(e.begin >= covered, IOError, where, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
                 "] overlap tensor '", previous->name, "' [", previous->begin, ", ", previous->end, "]");
    CRFSEG_CHECK(e.begin == covered, IOError, where, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
                 "] leave bytes [", covered, ", ", e.begin, ") of the data buffer unused");
    covered = e.end;
    previous = &e;
  }
  CRFSEG_CHECK(covered == buffer, IOError, where, ": the data buffer has ", buffer, " bytes but the tensors cover ",
               covered, " (trailing bytes)");

  // The checksum, when the writer left one (crfseg always does; other
  // writers do not): recomputed over the canonical header without it, then
  // over the data as it streams in.
  std::optional<uint32_t> crc;
  std::string expected;
  if (auto it = out.metadata.find(kChecksumKey); it != out.metadata.end()) {
    expected = it->second;
    out.metadata.erase(it);
    std::vector<HeaderEntry> canonical;
    for (const TensorEntry& e : entries) {
      canonical.push_back({e.name, dtype_code(e.dtype), e.shape, e.begin, e.end});
    }
    const std::string unsigned_header = compact_header(out.metadata, canonical);
    crc = crc32c_update(0, unsigned_header.data(), unsigned_header.size());
  }

  // The data: one sequential pass, straight into freshly allocated tensors.
  for (const TensorEntry& e : entries) {
    Tensor t = Tensor::empty(e.shape, {e.dtype});
    const auto bytes = static_cast<size_t>(e.end - e.begin);
    src.read(t.raw_data(), bytes, "the data of tensor '" + e.name + "'");
    if (crc) crc = crc32c_update(*crc, t.raw_data(), bytes);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  if (crc) {
    CRFSEG_CHECK(checksum_text(*crc) == expected, IOError, where, ": checksum mismatch: the header records CRC-32C ",
                 expected, " but the contents hash to ", checksum_text(*crc),
                 "; the file is corrupted (a bad disk, an interrupted copy, or an edit)");
    out.checksum_verified = true;
  }
  return out;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "load_safetensors(" + path + ")";
  FilePtr file(std::fopen(path.c_str(), "rb"));
  CRFSEG_CHECK(file != nullptr, IOError, where, ": cannot open: ", errno_text());
  std::FILE* f = file.get();
  CRFSEG_CHECK(::fseeko(f, 0, SEEK_END) == 0, IOError, where, ": cannot seek: ", errno_text());
  const off_t file_size = ::ftello(f);
  CRFSEG_CHECK(file_size >= 0 && ::fseeko(f, 0, SEEK_SET) == 0, IOError, where, ": cannot seek: ", errno_text());
  ByteSource src{static_cast<uint64_t>(file_size), [&](void* dst, size_t bytes, const std::string& what) {
                   if (bytes == 0) return;
                   CRFSEG_CHECK(std::fread(dst, 1, bytes, f) == bytes, IOError, where, ": reading ", what, " failed",
                                std::ferror(f) ? ": " + errno_text() : std::string(" (unexpected end of file)"));
                 }};
  return parse(src, where, path);
}

SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source) {
  const std::string where = "parse_safetensors(" + source + ")";
  CRFSEG_CHECK(bytes != nullptr || size == 0, IOError, where, ": null buffer of ", size, " bytes");
  size_t pos = 0;
  ByteSource src{size, [&](void* dst, size_t n, const std::string& what) {
                   CRFSEG_CHECK(n <= size - pos, IOError, where, ": reading ", what, " failed (unexpected end of data)");
                   if (n > 0) std::memcpy(dst, bytes + pos, n);
                   pos += n;
                 }};
  return parse(src, where, source);
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& entry) { return entry.first == name; });
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [key, t] : tensors) {
    if (key == name) return t;
  }
  throw ValueError(detail::concat_message("SafetensorsFile(", path, "): no tensor named '", name, "'"));
}

}  // namespace crfseg
