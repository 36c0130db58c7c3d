// safetensors: round trips of every supported dtype, a byte-exact file
// written by hand (so the format itself is checked, not just save∘load), the
// loader's corruption checks, and atomic saving.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tensor/crc32c.h"
#include "tensor/safetensors.h"
#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::test;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file made of a header (its length prefixed little-endian) and raw data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((header.size() >> (8 * k)) & 0xFF);
  return out + header + data;
}

// The checksum entry the writer adds for a compact header `unsigned_header`
// (written without the entry) followed by `data`.
std::string checksum_of(const std::string& unsigned_header, const std::string& data) {
  const uint32_t crc = crc32c_update(crc32c_update(0, unsigned_header.data(), unsigned_header.size()), data.data(),
                                     data.size());
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", crc);
  return hex;
}

}  // namespace

TEST_CASE("safetensors round trip: every dtype, 0-d and empty tensors, metadata") {
  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  const Tensor f32 = random_tensor({2, 3}, 1, DType::f32);
  const Tensor f64 = scalar_tensor(-0.125, {DType::f64});  // 0-d
  const Tensor i32 = from_vector<int32_t>({-7, 0, 2147483647, -2147483647 - 1}, {4});
  const Tensor i64 = Tensor::empty({2, 0, 3}, {DType::i64});  // empty
  const Tensor u8 = from_vector<uint8_t>({0, 1, 128, 255, 7}, {5});
  const Tensor big = from_vector<int64_t>({int64_t{1} << 62, -5}, {1, 2});
  const Tensor strided = ops::transpose(random_tensor({3, 4}, 2, DType::f64), 0, 1);  // saved as a copy
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"quote\"back\\slash", "new\nline\ttab\x01"}, {"unicode", "caf\xc3\xa9 \xf0\x9f\x98\x80"}};
  // Names in a deliberately unsorted order: the file keeps it.
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.weight", f32}, {"a.scalar", f64}, {"ints", i32}, {"empty", i64},
      {"bytes", u8},     {"big", big},      {"t", strided}, {"名前 \"quoted\"", u8}};
  save_safetensors(path, tensors, metadata);

  const SafetensorsFile file = load_safetensors(path);
  CHECK(file.path == path);
  CHECK(file.metadata == metadata);
  REQUIRE(file.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    CAPTURE(tensors[i].first);
    const Tensor& got = file.tensors[i].second;
    CHECK(file.tensors[i].first == tensors[i].first);
    CHECK(got.dtype() == tensors[i].second.dtype());
    CHECK(got.shape() == tensors[i].second.shape());
    // (Tensor::is_contiguous() reports false for some empty shapes, e.g. [2, 0, 3].)
    CHECK((got.is_contiguous() || got.numel() == 0));
    CHECK(got.device().is_cpu());
    CHECK(values(got) == values(tensors[i].second));
  }
  CHECK(file.at("ints").to_vector<int32_t>() == std::vector<int32_t>{-7, 0, 2147483647, -2147483647 - 1});
  CHECK(file.at("big").to_vector<int64_t>()[0] == int64_t{1} << 62);
  CHECK(file.contains("empty"));
  CHECK(!file.contains("nope"));
  check_throws_with<ValueError>([&] { file.at("nope"); }, "no tensor named 'nope'");

  // No tensors and no metadata: the header holds only the checksum of "{}".
  save_safetensors(dir.file("none.safetensors"), {});
  const std::string none_header = R"({"__metadata__":{"crfseg.crc32c":")" + checksum_of("{}", "") + "\"}}";  // 45 bytes
  CHECK(read_bytes(dir.file("none.safetensors")) == safetensors_bytes(none_header + std::string(3, ' '), ""));
  const SafetensorsFile none = load_safetensors(dir.file("none.safetensors"));
  CHECK(none.tensors.empty());
  CHECK(none.metadata.empty());
}

TEST_CASE("safetensors writes exactly the documented bytes") {
  TempDir dir;
  const std::string path = dir.file("tiny.safetensors");
  save_safetensors(path, {{"a", from_vector<float>({1.0f, -2.0f}, {2})}, {"b", from_vector<uint8_t>({1, 2, 3}, {3})}},
                   {{"k", "v"}});
  // The checksum covers the header as it would be without its own entry,
  // then the data: 1.0f, -2.0f, 1, 2, 3.
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01\x02\x03", 11);
  const std::string tensors = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  const std::string crc = checksum_of(R"({"__metadata__":{"k":"v"},)" + tensors, data);
  // 159 header bytes + 1 space of padding = 160 = 0xa0.
  const std::string header = R"({"__metadata__":{"crfseg.crc32c":")" + crc + R"(","k":"v"},)" + tensors + " ";
  CHECK(read_bytes(path) == std::string("\xa0\0\0\0\0\0\0\0", 8) + header + data);

  // String escapes are those of serde_json (Hugging Face's writer).
  save_safetensors(path, {{"q\"\\\n\x1f", from_vector<uint8_t>({9}, {1})}});
  const std::string escaped = R"("q\"\\\n\u001f":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  const std::string escaped_crc = checksum_of("{" + escaped, "\x09");
  CHECK(read_bytes(path) == safetensors_bytes(R"({"__metadata__":{"crfseg.crc32c":")" + escaped_crc + "\"}," + escaped +
                                                  std::string(3, ' '),  // 109 + 3 = 112
                                              "\x09"));
}

TEST_CASE("safetensors reads a hand-written header with whitespace and escapes") {
  TempDir dir;
  const std::string path = dir.file("hand.safetensors");
  // 0-d I64 = 5, then [2] F64 = {0.5, -1}; \u escapes incl. a surrogate pair (U+1F600).
  const std::string header = "{ \"__metadata__\" : { \"x\\/y\" : \"\\u00e9\\ud83d\\ude00\" } ,\n"
                             "  \"s\\tcalar\" : {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 8]},\n"
                             "  \"v\": {\"shape\": [2], \"data_offsets\": [8, 24], \"dtype\": \"F64\"} }\r\n";
  std::string data(24, '\0');
  const int64_t five = 5;
  const double v[2] = {0.5, -1.0};
  std::memcpy(data.data(), &five, 8);
  std::memcpy(data.data() + 8, v, 16);
  write_bytes(path, safetensors_bytes(header, data));
  const SafetensorsFile file = load_safetensors(path);
  CHECK(file.metadata.at("x/y") == "\xc3\xa9\xf0\x9f\x98\x80");
  REQUIRE(file.tensors.size() == 2);
  CHECK(file.tensors[0].first == "s\tcalar");
  CHECK(file.tensors[0].second.dim() == 0);
  CHECK(file.tensors[0].second.item() == 5.0);
  CHECK(values(file.at("v")) == std::vector<double>{0.5, -1.0});

  // Tensors come back in data order, whatever the header order.
  write_bytes(path, safetensors_bytes(R"({"late":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                                      R"("early":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                      "\x01\x02"));
  const SafetensorsFile ordered = load_safetensors(path);
  CHECK(ordered.tensors[0].first == "early");
  CHECK(ordered.tensors[1].first == "late");
}

TEST_CASE("safetensors rejects corrupt files with IOError naming the path and the field") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const auto expect_error = [&](const std::string& bytes, const std::string& needle) {
    CAPTURE(needle);
    write_bytes(path, bytes);
    check_throws_with<IOError>([&] { load_safetensors(path); }, needle);
    check_throws_with<IOError>([&] { load_safetensors(path); }, "load_safetensors(" + path + ")");
  };
  const auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  };
  const std::string f32x2 = entry("a", "F32", "[2]", "[0,8]");
  const std::string eight(8, '\x11');

  check_throws_with<IOError>([&] { load_safetensors(dir.file("missing")); }, "cannot open");
  // Sizes.
  expect_error(std::string("\x05\0\0", 3), "file is 3 bytes, shorter than the 8-byte header length");
  expect_error(std::string("\xff\0\0\0\0\0\0\0{}", 10), "header length 255 exceeds the file (10 bytes; truncated?)");
  expect_error(std::string("\0\0\0\0\0\0\0\x80", 8), "header length 9223372036854775808 exceeds the file");
  // Malformed JSON (the position is the byte inside the header).
  expect_error(safetensors_bytes("{" + f32x2 + ",}", eight), "malformed JSON header at byte 54: expected a string key");
  expect_error(safetensors_bytes("", ""), "malformed JSON header at byte 0: unexpected end of header");
  expect_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32", ""), "unterminated string");
  expect_error(safetensors_bytes("{\"a\\x\":1}", ""), "invalid escape in a string");
  expect_error(safetensors_bytes("{\"\xff\":1}", ""), "invalid UTF-8 in a string");
  expect_error(safetensors_bytes("{\"\xc0\xaf\":1}", ""), "invalid UTF-8 in a string");  // overlong '/'
  expect_error(safetensors_bytes("{\"\\ud800\":1}", ""), "unpaired high surrogate");
  expect_error(safetensors_bytes("{\"a\nb\":1}", ""), "unescaped control character");
  expect_error(safetensors_bytes("{\"a\":NaN}", ""), "expected a value");
  expect_error(safetensors_bytes("{\"a\":01}", ""), "',' or '}' in an object");
  expect_error(safetensors_bytes("{} {}", ""), "unexpected text after the top-level value");
  expect_error(safetensors_bytes(std::string(100, '[') + std::string(100, ']'), ""), "nesting deeper than 32");
  // Schema.
  expect_error(safetensors_bytes("[]", ""), "header: expected a JSON object, got an array");
  expect_error(safetensors_bytes("{\"__metadata__\":{\"k\":1}}", ""), "__metadata__: entry 'k': expected a string");
  expect_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}", ""),
               "tensor 'a': missing field 'data_offsets'");
  expect_error(safetensors_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":1}}", ""),
               "tensor 'a': unknown field 'x'");
  expect_error(safetensors_bytes("{" + entry("a", "Q8", "[2]", "[0,8]") + "}", eight), "tensor 'a': unknown dtype 'Q8'");
  // 16-bit floats take 2 bytes per element: 8 bytes hold 4 of them, not 2.
  expect_error(safetensors_bytes("{" + entry("a", "F16", "[2]", "[0,8]") + "}", eight),
               "tensor 'a': data_offsets [0, 8] hold 8 bytes but dtype F16 and shape [2] need 4");
  expect_error(safetensors_bytes("{" + entry("a", "BF16", "[2]", "[0,8]") + "}", eight),
               "hold 8 bytes but dtype BF16 and shape [2] need 4");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[-2]", "[0,8]") + "}", eight),
               "tensor 'a': shape: expected a non-negative integer, got -2");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[2.0]", "[0,8]") + "}", eight),
               "expected a non-negative integer, got 2.0");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[2]", "[0]") + "}", eight),
               "data_offsets: expected an array [begin, end]");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[99999999999999999999]", "[0,8]") + "}", eight),
               "does not fit in 64 bits");
  expect_error(safetensors_bytes("{" + f32x2 + "," + entry("a", "U8", "[0]", "[8,8]") + "}", eight),
               "duplicate tensor name 'a'");
  // Offsets.
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[2,2]", "[0,12]") + "}", std::string(12, 'x')),
               "tensor 'a': data_offsets [0, 12] hold 12 bytes but dtype F32 and shape [2, 2] need 16");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[1099511627776,1099511627776]", "[0,8]") + "}", eight),
               "need more than 2^63 - 1");  // numel * 4 = 2^82 overflows 64 bits: caught, not wrapped
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[2]", "[8,0]") + "}", eight), "end before they begin");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[2]", "[4,12]") + "}", eight),
               "tensor 'a': data_offsets [4, 12] fall outside the 8-byte data buffer");
  expect_error(safetensors_bytes("{" + f32x2 + "," + entry("b", "F32", "[2]", "[4,12]") + "}", std::string(12, 'x')),
               "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
  expect_error(safetensors_bytes("{" + f32x2 + "," + entry("b", "F32", "[1]", "[12,16]") + "}", std::string(16, 'x')),
               "tensor 'b': data_offsets [12, 16] leave bytes [8, 12) of the data buffer unused");
  expect_error(safetensors_bytes("{" + entry("a", "F32", "[1]", "[4,8]") + "}", eight), "leave bytes [0, 4)");
  expect_error(safetensors_bytes("{" + f32x2 + "}", std::string(9, 'x')),
               "the data buffer has 9 bytes but the tensors cover 8 (trailing bytes)");
}

TEST_CASE("safetensors saving is atomic: a failed save leaves the old file untouched") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const Tensor w = from_vector<float>({1, 2, 3}, {3});
  save_safetensors(path, {{"w", w}}, {{"epoch", "1"}});
  const std::string original = read_bytes(path);
  const auto check_untouched = [&] {
    CHECK(read_bytes(path) == original);
    CHECK(dir.entries() == 1);  // no temporary file left behind
  };

  // Errors found while validating: nothing is written.
  check_throws_with<IOError>([&] { save_safetensors(path, {{"w", w}, {"u", Tensor()}}); }, "tensor 'u' is undefined");
  check_untouched();
  check_throws_with<IOError>([&] { save_safetensors(path, {{"w", w}, {"w", w}}); }, "duplicate tensor name 'w'");
  check_throws_with<IOError>([&] { save_safetensors(path, {{"__metadata__", w}}); }, "'__metadata__' is reserved");
  check_throws_with<IOError>([&] { save_safetensors(path, {{"\xff", w}}); }, "is not valid UTF-8");
  check_throws_with<IOError>([&] { save_safetensors(path, {}, {{"k", "\xc3"}}); }, "metadata entry 'k'");
  check_untouched();

  // A failure in the middle of writing: cap the process's file size
  // (RLIMIT_FSIZE; SIGXFSZ ignored so write() fails with EFBIG instead of
  // killing us) below the new file's size. The temporary is removed and the
  // old file survives.
  rlimit old_limit{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  bool thrown = false;
  std::string message;
  try {
    save_safetensors(path, {{"w", zeros({100000})}});
  } catch (const IOError& e) {
    thrown = true;
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  CHECK(thrown);
  CHECK_MESSAGE(message.find("save_safetensors(" + path + "): writing " + path + ".tmp.") != std::string::npos, message);
  check_untouched();

  // An unwritable location: no file appears.
  check_throws_with<IOError>([&] { save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"w", w}}); },
                             "cannot create temporary file");
  check_untouched();

  // A successful save replaces the file in one step.
  save_safetensors(path, {{"w2", ones({2})}});
  CHECK(dir.entries() == 1);
  CHECK(load_safetensors(path).contains("w2"));
}

TEST_CASE("safetensors checksum: any changed byte of a written file is rejected, and truncation is named") {
  TempDir dir;
  const std::string path = dir.file("ck.safetensors");
  save_safetensors(path, {{"w", random_tensor({3, 5}, 7, DType::f32)}, {"n", from_vector<int64_t>({42}, {1})}},
                   {{"epoch", "3"}, {"note", "ok"}});
  const std::string good = read_bytes(path);
  const SafetensorsFile loaded = load_safetensors(path);
  CHECK(loaded.metadata == std::map<std::string, std::string>{{"epoch", "3"}, {"note", "ok"}});  // entry removed
  const std::string where = "load_safetensors(" + path + ")";

  CHECK(loaded.checksum_verified);

  // Flip one bit of every byte in turn (data, tensor entries, metadata
  // values, the checksum itself): each file is rejected with IOError, most
  // by the checksum, the rest by the structural checks (JSON, offsets),
  // except a damaged checksum key, which loads as unverified (checkpoint
  // readers then refuse it, see test_checkpoint.cpp).
  int64_t by_checksum = 0, unverified = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    write_bytes(path, bad);
    bool rejected = false;
    try {
      rejected = !load_safetensors(path).checksum_verified;
      unverified += rejected;
    } catch (const IOError& e) {
      rejected = std::string(e.what()).find(where) != std::string::npos;
      by_checksum += std::string(e.what()).find("checksum mismatch") != std::string::npos;
    }
    CAPTURE(i);
    CHECK(rejected);
  }
  CHECK(by_checksum >= 15 * 4 + 8);  // at least every data byte
  CHECK(unverified <= 13);           // only bytes of the key "crfseg.crc32c"

  // The value of a metadata entry (same length, still valid JSON).
  std::string edited = good;
  const size_t at = edited.find("\"epoch\":\"3\"");
  REQUIRE(at != std::string::npos);
  edited[at + 9] = '4';
  write_bytes(path, edited);
  check_throws_with<IOError>([&] { load_safetensors(path); }, where + ": checksum mismatch: the header records CRC-32C");

  // Truncation at any length is named as such.
  for (size_t len : {size_t{0}, size_t{7}, size_t{8}, size_t{20}, good.size() - 60, good.size() - 1}) {
    write_bytes(path, good.substr(0, len));
    CAPTURE(len);
    bool named = false;
    try {
      load_safetensors(path);
    } catch (const IOError& e) {
      const std::string m = e.what();
      named = m.find("shorter than the 8-byte header length") != std::string::npos ||
              m.find("truncated?") != std::string::npos;
    }
    CHECK(named);
  }

  // A file without the entry (another writer's) loads unchecked.
  const std::string plain = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  write_bytes(path, safetensors_bytes(plain, "\x01\x02"));
  const SafetensorsFile foreign = load_safetensors(path);
  CHECK(foreign.at("a").to_vector<uint8_t>() == std::vector<uint8_t>{1, 2});
  CHECK(!foreign.checksum_verified);

  // The key is reserved for the writer.
  check_throws_with<IOError>([&] { save_safetensors(path, {}, {{kSafetensorsChecksumKey, "0"}}); },
                             "metadata key 'crfseg.crc32c' is reserved");
}

TEST_CASE("parse_safetensors reads the same bytes from memory, naming the source") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const Tensor w = random_tensor({4, 3}, 3, DType::f64);
  save_safetensors(path, {{"w", w}}, {{"k", "v"}});
  const std::string bytes = read_bytes(path);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const SafetensorsFile f = parse_safetensors(p, bytes.size(), "memory");
  CHECK(f.path == "memory");
  CHECK(f.metadata == std::map<std::string, std::string>{{"k", "v"}});
  CHECK(values(f.at("w")) == values(w));
  for (size_t len : {size_t{0}, size_t{5}, bytes.size() - 1}) {
    check_throws_with<IOError>([&] { parse_safetensors(p, len, "memory"); }, "parse_safetensors(memory)");
  }
  check_throws_with<IOError>([&] { parse_safetensors(nullptr, 3, "memory"); }, "null buffer of 3 bytes");
}

TEST_CASE("crc32c: check value, and the SSE4.2 path equals the table reference at every length and alignment") {
  CHECK(crc32c_update(0, "123456789", 9) == 0xE3069283u);
  CHECK(crc32c_update_reference(0, "123456789", 9) == 0xE3069283u);
  CHECK(crc32c_update(0, "", 0) == 0u);
  std::vector<unsigned char> buf(300);
  uint32_t state = 12345;
  for (auto& b : buf) b = static_cast<unsigned char>((state = state * 1103515245u + 12345u) >> 16);
  for (size_t offset : {size_t{0}, size_t{1}, size_t{3}, size_t{7}}) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{31}, size_t{64}, size_t{257}}) {
      CAPTURE(offset);
      CAPTURE(len);
      CHECK(crc32c_update(0, buf.data() + offset, len) == crc32c_update_reference(0, buf.data() + offset, len));
    }
  }
  // Chaining equals one pass.
  CHECK(crc32c_update(crc32c_update(0, buf.data(), 100), buf.data() + 100, 200) == crc32c_update(0, buf.data(), 300));
}
