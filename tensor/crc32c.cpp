// CRC-32C: a bytewise table reference and the SSE4.2 instruction (crc32c.h).
#include "tensor/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace crfseg {

namespace {

// table[b] = the CRC register after shifting byte b through 8 steps of the
// reflected polynomial division.
constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t r = b;
    for (int k = 0; k < 8; ++k) r = (r >> 1) ^ ((r & 1u) ? 0x82F63B78u : 0u);
    table[b] = r;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kTable = make_table();

#if defined(__x86_64__)
// The crc32 instruction keeps the same (pre- and post-inverted) register
// convention as the table form, so the two agree byte for byte.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const unsigned char* p, size_t n) {
  uint64_t r = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    r = _mm_crc32_u64(r, word);
  }
  auto r32 = static_cast<uint32_t>(r);
  for (; n > 0; --n, ++p) r32 = _mm_crc32_u8(r32, *p);
  return ~r32;
}
#endif

}  // namespace

uint32_t crc32c_update_reference(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t r = ~crc;
  for (size_t i = 0; i < size; ++i) r = (r >> 8) ^ kTable[(r ^ p[i]) & 0xFFu];
  return ~r;
}

uint32_t crc32c_update(uint32_t crc, const void* data, size_t size) {
#if defined(__x86_64__)
  static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
  if (has_sse42) return crc32c_sse42(crc, static_cast<const unsigned char*>(data), size);
#endif
  return crc32c_update_reference(crc, data, size);
}

}  // namespace crfseg
