// fuzz_safetensors: tensor/safetensors.h parse_safetensors() on arbitrary
// bytes: the 8-byte header length, the strict JSON parser (strings, escapes,
// UTF-8, numbers, nesting), the header layout (dtype, shape, data_offsets,
// __metadata__), the tiling checks of the data buffer and the optional
// crfseg.crc32c checksum. Seeds carry no checksum, so mutated files are not
// all stopped at the CRC.
//
//   scripts/fuzz.sh 60 fuzz_safetensors  corpus: fuzz/corpus/fuzz_safetensors, dictionary fuzz/dict/safetensors.dict
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_check.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfseg;
  try {
    const SafetensorsFile file = parse_safetensors(data, size, "fuzz-input");
    FUZZ_REQUIRE(file.metadata.count(kSafetensorsChecksumKey) == 0, "checksum entry left in the metadata");
    // Every accepted byte of tensor data lies inside the input.
    size_t bytes = 0;
    for (const auto& [name, t] : file.tensors) {
      FUZZ_REQUIRE(t.defined(), "undefined tensor");
      FUZZ_REQUIRE(t.device().is_cpu(), "tensor not on the CPU");
      FUZZ_REQUIRE(t.is_contiguous(), "tensor not contiguous");
      FUZZ_REQUIRE(t.numel() >= 0, "negative numel");
      bytes += static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
      FUZZ_REQUIRE(bytes <= size, "tensors hold more bytes than the input");
      FUZZ_REQUIRE(file.contains(name) && file.at(name).numel() == t.numel(), "tensor not found by its name");
    }
  } catch (const Error&) {
  }
  return 0;
}
